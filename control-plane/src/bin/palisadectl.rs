//! `palisadectl`: operate a Palisade mesh.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palisade_control_plane::ctl::{self, ConnectArgs};

#[derive(Debug, Parser)]
#[command(name = "palisadectl", version, about = "Operate a Palisade mesh")]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join tokens: the one-time credential of a workload's first SVID.
    #[command(subcommand)]
    Token(ctl::token::TokenCommand),
    /// Checks policy files and explains decisions.
    #[command(subcommand)]
    Policy(ctl::policy::PolicyCommand),
    /// Runs raw HTTP requests through the WAF and explains what fired.
    Waf(ctl::waf::WafArgs),
    /// Runs the local mesh demo on embedded defaults (control plane, two services, sidecars).
    Demo(ctl::demo::DemoArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Token(command) => ctl::token::run(&cli.connect, command)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Policy(command) => {
            let mut out = Vec::new();
            let code = ctl::policy::run(&cli.connect, command, &mut out).await;
            std::io::Write::write_all(&mut std::io::stdout().lock(), &out)?;
            code
        }
        Command::Waf(args) => {
            ctl::waf::run(&args, &mut std::io::stdout().lock()).map(|()| ExitCode::SUCCESS)
        }
        Command::Demo(args) => ctl::demo::run(args).await,
    }
}
