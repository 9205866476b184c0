//! `palisade-control-plane`: the certificate authority, SVID issuance, policy store and
//! config distribution for a Palisade mesh.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "palisade-control-plane", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the control plane: creates the CA on first start, reuses it afterwards.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Where the CA, the trust bundle, token hashes and the issuance log live.
    #[arg(long, env = "PALISADE_DATA_DIR")]
    data_dir: PathBuf,
    /// The HTTPS address proxies and palisadectl connect to.
    #[arg(long, env = "PALISADE_LISTEN", default_value = "127.0.0.1:7443")]
    listen: SocketAddr,
    /// A directory of policy resources (YAML), watched for changes.
    #[arg(long, env = "PALISADE_POLICY_DIR")]
    policy_dir: Option<PathBuf>,
    /// The SPIFFE trust domain of this mesh.
    #[arg(long, env = "PALISADE_TRUST_DOMAIN", default_value = "palisade.local")]
    trust_domain: String,
    /// Lifetime of issued SVIDs, from 1m to 24h.
    #[arg(long, env = "PALISADE_SVID_TTL", default_value = "1h")]
    svid_ttl: humantime::Duration,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            anyhow::bail!(
                "serving is not built yet (data dir {}, listen {}, policy dir {:?}, trust domain {}, ttl {})",
                args.data_dir.display(),
                args.listen,
                args.policy_dir,
                args.trust_domain,
                args.svid_ttl
            )
        }
    }
}
