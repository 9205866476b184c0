//! `palisadectl`: operate a Palisade mesh.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use palisade_control_plane::ctl;

#[derive(Debug, Parser)]
#[command(name = "palisadectl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check policy files and explain decisions.
    #[command(subcommand)]
    Policy(ctl::policy::PolicyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(cmd) => ctl::policy::run(cmd, &mut std::io::stdout().lock()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("palisadectl: {e:#}");
            ExitCode::from(2)
        }
    }
}
