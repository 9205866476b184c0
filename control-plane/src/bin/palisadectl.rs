//! `palisadectl`: operate a Palisade mesh.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palisade_control_plane::ctl;

#[derive(Debug, Parser)]
#[command(name = "palisadectl", version, about = "Operate a Palisade mesh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the local mesh demo on embedded defaults (control plane, two services, sidecars).
    Demo(ctl::demo::DemoArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => ctl::demo::run(args).await,
    }
}
