//! `palisade-control-plane`: the certificate authority, SVID issuance, policy store and
//! config distribution for a Palisade mesh.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use palisade_control_plane::server::{check_ttl, MIN_CLI_SVID_TTL};
use palisade_control_plane::state::{self, DataDir};
use palisade_control_plane::{start, ServeConfig};

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
    /// CA rotation without outage, in three steps (see docs/identity.md).
    #[command(subcommand)]
    Ca(CaCommand),
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
    /// Serve `/metrics`, `/live` and `/ready` over plain HTTP on this address (for
    /// example 127.0.0.1:7444); off when unset. Bind it to a loopback or pod-internal
    /// address: it is not authenticated.
    #[arg(long, env = "PALISADE_METRICS")]
    metrics: Option<SocketAddr>,
    /// Lifetime of issued SVIDs, from 1m to 24h.
    #[arg(long, env = "PALISADE_SVID_TTL", default_value = "1h")]
    svid_ttl: humantime::Duration,
    #[command(flatten)]
    ca: OperatorCa,
}

/// An operator-supplied CA instead of a generated one.
#[derive(Debug, clap::Args)]
struct OperatorCa {
    /// The CA certificate, PEM (with --ca-key).
    #[arg(long, env = "PALISADE_CA_CERT", requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The CA's PKCS#8 private key, PEM (with --ca-cert).
    #[arg(long, env = "PALISADE_CA_KEY", requires = "ca_cert")]
    ca_key: Option<PathBuf>,
}

impl OperatorCa {
    fn pair(&self) -> Option<(PathBuf, PathBuf)> {
        self.ca_cert.clone().zip(self.ca_key.clone())
    }
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Step 1: add a new root to the trust bundle; signing stays with the current root.
    PrepareRotation {
        #[arg(long, env = "PALISADE_DATA_DIR")]
        data_dir: PathBuf,
        #[command(flatten)]
        ca: OperatorCa,
    },
    /// Step 2: sign with the new root (once every proxy has the two-root bundle).
    Rotate {
        #[arg(long, env = "PALISADE_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Step 3: drop the old root (once every SVID it signed has expired).
    RetireOld {
        #[arg(long, env = "PALISADE_DATA_DIR")]
        data_dir: PathBuf,
        /// Retire even though SVIDs signed by the old root are still valid.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Ca(command) => ca(command),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    check_ttl(args.svid_ttl.into(), MIN_CLI_SVID_TTL).context("--svid-ttl")?;
    let mut config = ServeConfig::new(args.data_dir, args.listen, &args.trust_domain);
    config.svid_ttl = args.svid_ttl.into();
    config.policy_dir = args.policy_dir;
    config.metrics = args.metrics;
    config.ca = args.ca.pair();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let running = start(config).await?;
        tracing::info!(event = "listening", addr = %running.local_addr(), "listening");
        shutdown_signal().await;
        tracing::info!(event = "shutting_down", "shutting down");
        running.shutdown().await;
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

fn ca(command: CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::PrepareRotation { data_dir, ca } => {
            let pair = ca.pair();
            let operator = pair.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
            let name = state::prepare_rotation(&DataDir::new(&data_dir), operator)?;
            println!("added root `{name}` to {}; signing is unchanged. Wait until every proxy has the new bundle (one config push, or one SVID lifetime), then run `ca rotate`", data_dir.join(state::BUNDLE_FILE).display());
        }
        CaCommand::Rotate { data_dir } => {
            let name = state::rotate(&DataDir::new(&data_dir))?;
            println!("now signing with root `{name}`; the old root stays trusted. After the longest SVID lifetime, run `ca retire-old`");
        }
        CaCommand::RetireOld { data_dir, force } => {
            let name = state::retire_old(&DataDir::new(&data_dir), force)?;
            println!("retired root `{name}`; the trust bundle now holds only the new root");
        }
    }
    Ok(())
}
