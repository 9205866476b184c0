//! `palisade-proxy`: parses the command line (every flag also from `PALISADE_<FLAG>`),
//! builds the [`ProxyConfig`], and runs the proxy until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use palisade_proxy::{run, MeshState, ProxyConfig, ProxyIdentity};
use palisade_spiffe::svid::shared_bundle;
use palisade_spiffe::{SvidStore, TrustBundle, TrustDomain};

/// Palisade's sidecar proxy: mTLS, layer-7 authorization, WAF and forwarding.
///
/// Deliberately not `Debug`: it holds the join token, which must never reach a log.
#[derive(Parser)]
#[command(name = "palisade-proxy", version)]
struct Cli {
    /// The control plane's URL, such as https://127.0.0.1:7000.
    #[arg(long, env = "PALISADE_CONTROL_PLANE")]
    control_plane: String,
    /// The trust bundle (PEM) used to verify the control plane and the first peers.
    #[arg(long, env = "PALISADE_TRUST_BUNDLE")]
    trust_bundle: PathBuf,
    /// The SPIFFE trust domain.
    #[arg(long, env = "PALISADE_TRUST_DOMAIN", default_value = "palisade.local")]
    trust_domain: String,
    /// This workload's namespace.
    #[arg(long, env = "PALISADE_NAMESPACE")]
    namespace: String,
    /// This workload's service account.
    #[arg(long, env = "PALISADE_SERVICE_ACCOUNT")]
    service_account: String,
    /// The service this workload serves, as other workloads name it.
    #[arg(long, env = "PALISADE_SERVICE")]
    service: String,
    /// The one-time join token for the first SVID (never logged).
    #[arg(long, env = "PALISADE_JOIN_TOKEN", hide_env_values = true)]
    join_token: String,
    /// mTLS listener for other proxies.
    #[arg(long, env = "PALISADE_INBOUND", default_value = "0.0.0.0:4143")]
    inbound: SocketAddr,
    /// The local application (plain HTTP).
    #[arg(long, env = "PALISADE_APP", default_value = "127.0.0.1:8080")]
    app: SocketAddr,
    /// Plain HTTP listener for the app's outgoing calls.
    #[arg(long, env = "PALISADE_OUTBOUND", default_value = "127.0.0.1:4140")]
    outbound: SocketAddr,
    /// Health and metrics listener.
    #[arg(long, env = "PALISADE_ADMIN", default_value = "127.0.0.1:4191")]
    admin: SocketAddr,
    /// Also accept plaintext on the inbound listener, marked unauthenticated (migration only).
    #[arg(long, env = "PALISADE_PERMISSIVE")]
    permissive: bool,
    /// How long in-flight requests may take to finish after SIGTERM, such as `10s`.
    #[arg(long, env = "PALISADE_DRAIN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
}

impl Cli {
    fn config(&self) -> ProxyConfig {
        let mut config = ProxyConfig::new(self.inbound, self.outbound, self.admin, self.app);
        config.permissive = self.permissive;
        config.drain_timeout = self.drain_timeout;
        config
    }
}

/// Resolves on SIGTERM (what Kubernetes sends) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the proxy");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let config = cli.config();
    let trust_domain = TrustDomain::new(&cli.trust_domain).with_context(|| {
        format!(
            "--trust-domain `{}` is not a valid trust domain",
            cli.trust_domain
        )
    })?;
    let pem = std::fs::read(&cli.trust_bundle).with_context(|| {
        format!(
            "cannot read the trust bundle {}",
            cli.trust_bundle.display()
        )
    })?;
    let bundle = TrustBundle::from_pem(trust_domain, &pem).with_context(|| {
        format!(
            "the trust bundle {} is not usable",
            cli.trust_bundle.display()
        )
    })?;
    // The identity client installs the SVID here and keeps it renewed; until one is
    // installed every handshake fails and /ready says why (fail closed).
    let identity = ProxyIdentity {
        svids: SvidStore::new(),
        bundle: shared_bundle(bundle),
    };
    let state: Arc<MeshState> = MeshState::new();
    tracing::info!(
        control_plane = %cli.control_plane,
        namespace = %cli.namespace,
        service_account = %cli.service_account,
        service = %cli.service,
        "starting the proxy"
    );
    run(config, identity, state, shutdown_signal()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_design_flags_into_a_config() {
        let cli = Cli::try_parse_from([
            "palisade-proxy",
            "--control-plane",
            "https://127.0.0.1:7000",
            "--trust-bundle",
            "bundle.pem",
            "--namespace",
            "shop",
            "--service-account",
            "orders",
            "--service",
            "orders",
            "--join-token",
            "secret",
            "--inbound",
            "127.0.0.1:4143",
            "--app",
            "127.0.0.1:8081",
            "--outbound",
            "127.0.0.1:4140",
            "--admin",
            "127.0.0.1:4191",
            "--permissive",
            "--drain-timeout",
            "3s",
        ])
        .unwrap();
        let config = cli.config();
        assert_eq!(config.app, "127.0.0.1:8081".parse().unwrap());
        assert!(config.permissive);
        assert_eq!(config.drain_timeout, Duration::from_secs(3));

        let missing = Cli::try_parse_from(["palisade-proxy", "--service", "orders"]);
        assert!(missing.is_err());

        // Every flag also comes from PALISADE_<FLAG>; this is the only test of this
        // binary, so setting the process environment races with nothing.
        for (name, value) in [
            ("PALISADE_CONTROL_PLANE", "https://127.0.0.1:7000"),
            ("PALISADE_TRUST_BUNDLE", "bundle.pem"),
            ("PALISADE_NAMESPACE", "shop"),
            ("PALISADE_SERVICE_ACCOUNT", "orders"),
            ("PALISADE_SERVICE", "orders"),
            ("PALISADE_JOIN_TOKEN", "secret"),
            ("PALISADE_APP", "127.0.0.1:9090"),
            ("PALISADE_PERMISSIVE", "true"),
        ] {
            std::env::set_var(name, value);
        }
        let config = Cli::try_parse_from(["palisade-proxy"]).unwrap().config();
        assert_eq!(config.app, "127.0.0.1:9090".parse().unwrap());
        assert!(config.permissive);
        assert_eq!(config.drain_timeout, Duration::from_secs(10));
    }
}
