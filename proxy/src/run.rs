//! The whole proxy: three listeners and a graceful drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use palisade_spiffe::{SharedBundle, SvidStore};
use tokio::net::TcpListener;

use crate::admin::{self, Admin};
use crate::config::ProxyConfig;
use crate::drain;
use crate::enforcement::Enforcement;
use crate::inbound::{self, Inbound};
use crate::metrics::Metrics;
use crate::outbound::{self, Outbound};
use crate::state::MeshState;

/// The proxy's own identity: its current SVID (renewed in place by the identity client)
/// and the trust bundle (updated in place from the control plane).
#[derive(Clone)]
pub struct ProxyIdentity {
    pub svids: Arc<SvidStore>,
    pub bundle: SharedBundle,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr} for the {listener} listener: {source}; is the port already in use?")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Drain(#[from] drain::DrainTimeout),
}

/// The proxy's three listening sockets, bound before it serves.
pub struct Listeners {
    pub inbound: TcpListener,
    pub outbound: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds the addresses of `config`.
    pub async fn bind(config: &ProxyConfig) -> Result<Listeners, ProxyError> {
        let bind = |listener: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Bind {
                    listener,
                    addr,
                    source,
                })
        };
        Ok(Listeners {
            inbound: bind("inbound", config.inbound).await?,
            outbound: bind("outbound", config.outbound).await?,
            admin: bind("admin", config.admin).await?,
        })
    }
}

/// Runs the inbound, outbound and admin listeners until `shutdown` resolves, then stops
/// accepting and lets in-flight requests finish within `config.drain_timeout`.
/// Inbound requests are authorized and inspected with `enforcement`, which the caller
/// keeps up to date from the control plane (as it does `state`).
/// Returns [`ProxyError::Drain`] if some were still running at the deadline.
pub async fn run(
    config: ProxyConfig,
    identity: ProxyIdentity,
    state: Arc<MeshState>,
    enforcement: Arc<Enforcement>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let listeners = Listeners::bind(&config).await?;
    serve(listeners, config, identity, state, enforcement, shutdown).await
}

/// [`run`] on listeners bound by the caller, which may have let the system pick their
/// ports (port 0): tests do, so that no other process can take a port between its
/// choice and its use. `config`'s addresses should be the listeners' own, since the
/// proxy reports them.
pub async fn serve(
    listeners: Listeners,
    config: ProxyConfig,
    identity: ProxyIdentity,
    state: Arc<MeshState>,
    enforcement: Arc<Enforcement>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let Listeners {
        inbound: inbound_listener,
        outbound: outbound_listener,
        admin: admin_listener,
    } = listeners;
    let metrics = Metrics::traced(enforcement.service(), config.tracing.clone());
    let (signal, watch) = drain::channel();
    let inbound = Inbound::new(&config, &identity, metrics.clone(), enforcement.clone());
    let outbound = Outbound::new(&config, &identity, state.clone(), metrics.clone());
    let admin = Arc::new(Admin {
        metrics,
        svids: identity.svids.clone(),
        state,
        enforcement,
    });
    tokio::spawn(inbound::serve(inbound_listener, inbound, watch.clone()));
    tokio::spawn(outbound::serve(outbound_listener, outbound, watch.clone()));
    tokio::spawn(admin::serve(admin_listener, admin, watch));
    tracing::info!(
        inbound = %config.inbound,
        outbound = %config.outbound,
        admin = %config.admin,
        app = %config.app,
        permissive = config.permissive,
        "proxy listening"
    );

    shutdown.await;
    tracing::info!(deadline = ?config.drain_timeout, "shutting down: draining in-flight requests");
    signal.drain(config.drain_timeout).await?;
    tracing::info!("drained");
    Ok(())
}
