//! `palisadectl`: operate a Palisade mesh.

use clap::{Parser, Subcommand};
use palisade_control_plane::ctl::{self, ConnectArgs};

#[derive(Debug, Parser)]
#[command(name = "palisadectl", version, about)]
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
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Token(command) => ctl::token::run(&cli.connect, command).await,
    }
}
