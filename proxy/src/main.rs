//! `palisade-proxy`: parses the command line (every flag also from `PALISADE_<FLAG>`),
//! builds the [`ProxyConfig`], and runs the proxy until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use palisade_proxy::control::{spawn_watch, ControlPlaneAddr, WatchConfig};
use palisade_proxy::identity::{bootstrap, load_bundle_file, IdentityConfig};
use palisade_proxy::{run, Enforcement, MeshState, ProxyConfig, ProxyIdentity};
use palisade_spiffe::TrustDomain;

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
    /// The SPIFFE trust domain; by default the one the trust bundle's roots name.
    #[arg(long, env = "PALISADE_TRUST_DOMAIN")]
    trust_domain: Option<String>,
    /// This workload's namespace.
    #[arg(long, env = "PALISADE_NAMESPACE")]
    namespace: String,
    /// This workload's service account.
    #[arg(long, env = "PALISADE_SERVICE_ACCOUNT")]
    service_account: String,
    /// The service this workload serves, as other workloads name it. The control plane
    /// lets a workload speak only for the service its service account names, so this
    /// defaults to, and must equal, `--service-account`.
    #[arg(long, env = "PALISADE_SERVICE")]
    service: Option<String>,
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
    /// The address other proxies reach the inbound listener at, registered with the
    /// control plane; by default the inbound address itself.
    #[arg(long, env = "PALISADE_ADVERTISE_ADDR")]
    advertise_addr: Option<SocketAddr>,
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
    /// The service to register and watch: the service account's, which is the only one
    /// the control plane accepts from this workload (refused here, before any token is
    /// spent, rather than by the control plane after).
    fn service(&self) -> anyhow::Result<&str> {
        match &self.service {
            Some(service) if *service != self.service_account => anyhow::bail!(
                "--service `{service}` differs from --service-account `{}`: a workload may only \
                 register and watch the service its service account names; omit --service or \
                 give the workload the service account `{service}`",
                self.service_account
            ),
            _ => Ok(&self.service_account),
        }
    }

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
        .event_format(palisade_proxy::logfmt::JsonLines::default())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let service = cli.service()?.to_owned();
    let mut config = cli.config();
    // Off unless OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set (docs/observability.md).
    config.tracing = palisade_proxy::telemetry::Tracing::from_env(&service)?;
    let configured_domain = cli
        .trust_domain
        .as_deref()
        .map(TrustDomain::new)
        .transpose()
        .context("--trust-domain is not a valid SPIFFE trust domain")?;
    let (trust_domain, bundle) = load_bundle_file(&cli.trust_bundle, configured_domain.as_ref())?;
    // The WAF's rule set is compiled before anything listens: a proxy without its WAF
    // must not serve (fail closed).
    let enforcement = Enforcement::new(trust_domain.clone(), &service)
        .context("compiling the WAF's embedded rule set")?;
    let control_plane = ControlPlaneAddr::parse(&cli.control_plane)
        .with_context(|| format!("--control-plane `{}`", cli.control_plane))?;
    let advertise = cli.advertise_addr.unwrap_or(cli.inbound);
    let watch_config = WatchConfig::new(&service, Some(advertise.to_string()))?;
    tracing::info!(
        control_plane = %control_plane,
        trust_domain = %trust_domain,
        namespace = %cli.namespace,
        service_account = %cli.service_account,
        service = %service,
        "starting the proxy; asking the control plane for an SVID"
    );
    // The first SVID is a precondition for everything else: without it no handshake can
    // succeed, so the proxy fails fast with the control plane's reason instead of serving.
    let identity = bootstrap(IdentityConfig::new(
        control_plane,
        trust_domain,
        bundle,
        &cli.namespace,
        &cli.service_account,
        cli.join_token.clone(),
    ))
    .await
    .context("obtaining the first SVID")?;
    tracing::info!(spiffe_id = %identity.id, "SVID installed");

    let (stop_background, background_stopped) = tokio::sync::watch::channel(());
    let stopped = move || {
        let mut receiver = background_stopped.clone();
        async move {
            let _ = receiver.changed().await;
        }
    };
    let renewal = identity.spawn_renewal(stopped());
    let state: Arc<MeshState> = MeshState::new();
    let watched_state = state.clone();
    let watched_enforcement = enforcement.clone();
    let watch = spawn_watch(
        identity.control_plane().clone(),
        watch_config,
        move |snapshot| {
            watched_enforcement.apply(&snapshot);
            watched_state.apply(&snapshot);
        },
        stopped(),
    );
    let proxy_identity = ProxyIdentity {
        svids: identity.svids.clone(),
        bundle: identity.bundle.clone(),
    };
    let tracing_export = config.tracing.clone();
    let served = run(
        config,
        proxy_identity,
        state,
        enforcement,
        shutdown_signal(),
    )
    .await;
    let _ = stop_background.send(());
    let _ = renewal.await;
    let _ = watch.task.await;
    if let Some(tracing_export) = tracing_export {
        // Exporting the last spans waits on the collector (bounded by its timeout): off
        // the async workers.
        let _ = tokio::task::spawn_blocking(move || tracing_export.shutdown()).await;
    }
    served?;
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

        assert_eq!(cli.service().unwrap(), "orders");

        let missing = Cli::try_parse_from(["palisade-proxy", "--service", "orders"]);
        assert!(missing.is_err());

        let mut other = cli;
        other.service = None;
        assert_eq!(
            other.service().unwrap(),
            "orders",
            "defaults to the account"
        );
        other.service = Some("payments".into());
        let refused = other.service().unwrap_err().to_string();
        assert!(refused.contains("service account"), "{refused}");

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
