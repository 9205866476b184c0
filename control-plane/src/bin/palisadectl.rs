//! `palisadectl`: operate a Palisade mesh.

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
    /// WAF tools: test requests against the rules.
    Waf(ctl::waf::WafArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Waf(args) => ctl::waf::run(&args, &mut std::io::stdout().lock()),
    }
}
