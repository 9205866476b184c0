//! The inbound side: other proxies call this workload over mTLS.
//!
//! Per connection: TCP accept → first byte peeked (TLS or plaintext, within the handshake
//! timeout) → TLS 1.3 with a required client SVID → ALPN h2 or http/1.1 → the peer's
//! SPIFFE ID attached to every request → [`stack`] → the local app.
//!
//! Plaintext is refused with a short HTTP/1.1 answer saying why (so a person testing with
//! curl learns what is wrong), unless permissive mode is on, in which case its requests
//! carry [`PeerIdentity::Unauthenticated`] and later layers decide what they may do.

mod forward;

pub use forward::AppForwarder;

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use palisade_spiffe::tls::{peer_spiffe_id, server_config};
use palisade_spiffe::ClientAuth;
use std::convert::Infallible;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use http::Response;
use tower::layer::util::Identity;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use crate::body::{self, ProxyBody};
use crate::config::ProxyConfig;
use crate::drain::Watch;
use crate::enforcement::Enforcement;
use crate::headers::new_request_id;
use crate::layers::{
    AuthorizationLayer, ClientAddr, HttpService, PeerIdentity, PeerIdentityLayer, RequestIdLayer,
    RequestMetricsLayer, WafLayer,
};
use crate::metrics::{Direction, HandshakeFailure, Metrics};
use crate::run::ProxyIdentity;
use crate::server::{http_builder, serve_connection};

/// The first byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

const PLAINTEXT_REFUSAL: &str =
    "this port accepts only mutual TLS from a mesh proxy holding a valid SVID.\n";

/// The answer to a plaintext client: raw HTTP/1.1, since no HTTP server runs for it.
fn plaintext_refusal() -> Vec<u8> {
    let id = new_request_id();
    let id = id.to_str().unwrap_or("0");
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
         connection: close\r\nx-request-id: {id}\r\ncontent-length: {}\r\n\r\n{PLAINTEXT_REFUSAL}",
        PLAINTEXT_REFUSAL.len()
    )
    .into_bytes()
}

/// The inbound request stack, outermost first:
///
/// 1. [`RequestIdLayer`]: every answer, even a deny, carries an `x-request-id`.
/// 2. [`RequestMetricsLayer`]: counts what the caller finally saw, denies included.
/// 3. [`PeerIdentityLayer`]: `x-palisade-peer-id` from the TLS peer only.
/// 4. `filters`: authorization (issue 4) and then the WAF (issue 7), in that order, so
///    that a caller who may not call the route is refused before its payload is
///    inspected. They answer with [`crate::body::local_response`].
/// 5. [`AppForwarder`]: the local app.
pub fn stack_with<L>(forward: AppForwarder, metrics: Arc<Metrics>, filters: L) -> HttpService
where
    L: Layer<AppForwarder>,
    L::Service: Service<Request<ProxyBody>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as Service<Request<ProxyBody>>>::Future: Send + 'static,
{
    HttpService::new(
        ServiceBuilder::new()
            .layer(RequestIdLayer)
            .layer(RequestMetricsLayer::new(Direction::Inbound, metrics))
            .layer(PeerIdentityLayer)
            .layer(filters)
            .service(forward),
    )
}

/// The filters of a proxy: [`AuthorizationLayer`] then [`WafLayer`].
pub type Filters =
    tower::layer::util::Stack<WafLayer, tower::layer::util::Stack<AuthorizationLayer, Identity>>;

/// Authorization, then the WAF, both reading `enforcement`.
pub fn filters(enforcement: Arc<Enforcement>, metrics: Arc<Metrics>) -> Filters {
    ServiceBuilder::new()
        .layer(AuthorizationLayer::new(
            enforcement.clone(),
            metrics.clone(),
        ))
        .layer(WafLayer::new(enforcement, metrics))
        .into_inner()
}

/// The full inbound stack: [`stack_with`] and [`filters`].
pub fn stack(
    forward: AppForwarder,
    metrics: Arc<Metrics>,
    enforcement: Arc<Enforcement>,
) -> HttpService {
    let filters = filters(enforcement, metrics.clone());
    stack_with(forward, metrics, filters)
}

/// Everything an inbound listener needs; cheap to share between connections.
pub struct Inbound {
    tls: TlsAcceptor,
    http: auto::Builder<TokioExecutor>,
    stack: HttpService,
    metrics: Arc<Metrics>,
    permissive: bool,
    handshake_timeout: Duration,
    idle_timeout: Duration,
}

impl Inbound {
    /// The inbound side with the full stack ([`stack`]: authorization and the WAF from
    /// `enforcement`) in front of `config.app`.
    pub fn new(
        config: &ProxyConfig,
        identity: &ProxyIdentity,
        metrics: Arc<Metrics>,
        enforcement: Arc<Enforcement>,
    ) -> Arc<Self> {
        let forward = AppForwarder::new(config.app, &config.timeouts);
        let stack = stack(forward, metrics.clone(), enforcement);
        Self::with_stack(config, identity, metrics, stack)
    }

    /// The inbound side with a caller-built stack (authorization and WAF wiring, tests).
    pub fn with_stack(
        config: &ProxyConfig,
        identity: &ProxyIdentity,
        metrics: Arc<Metrics>,
        stack: HttpService,
    ) -> Arc<Self> {
        let tls = server_config(
            identity.svids.clone(),
            identity.bundle.clone(),
            ClientAuth::Required,
        );
        Arc::new(Self {
            tls: TlsAcceptor::from(Arc::new(tls)),
            http: http_builder(&config.limits, &config.timeouts),
            stack,
            metrics,
            permissive: config.permissive,
            handshake_timeout: config.timeouts.tls_handshake,
            idle_timeout: config.timeouts.idle,
        })
    }
}

/// Accepts inbound connections until shutdown is signaled. Connections already open keep
/// their own watch and finish draining on their own.
pub async fn serve(listener: TcpListener, inbound: Arc<Inbound>, watch: Watch) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = watch.signaled() => break,
        };
        match accepted {
            Ok((tcp, remote)) => {
                let inbound = inbound.clone();
                let watch = watch.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    handle(tcp, remote, inbound, watch).await;
                });
            }
            Err(error) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(%error, "inbound accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    tracing::info!("inbound listener stopped accepting");
}

async fn handle(tcp: TcpStream, remote: std::net::SocketAddr, inbound: Arc<Inbound>, watch: Watch) {
    let _open = inbound.metrics.open_connection(Direction::Inbound);
    let mut first = [0u8; 1];
    let is_tls = match tokio::time::timeout(inbound.handshake_timeout, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => first[0] == TLS_HANDSHAKE_RECORD,
        Ok(_) => return,
        Err(_) => {
            inbound
                .metrics
                .handshake(Direction::Inbound, Err(HandshakeFailure::Timeout));
            return;
        }
    };
    if !is_tls {
        if inbound.permissive {
            tracing::debug!(%remote, "plaintext connection accepted (permissive mode)");
            serve_http(tcp, remote, PeerIdentity::Unauthenticated, &inbound, watch).await;
        } else {
            inbound
                .metrics
                .handshake(Direction::Inbound, Err(HandshakeFailure::Plaintext));
            tracing::warn!(%remote, event = "tls_failure", reason = "plaintext", "refused a plaintext connection on the mTLS port");
            let mut tcp = tcp;
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                tcp.write_all(&plaintext_refusal()).await?;
                tcp.shutdown().await
            })
            .await;
        }
        return;
    }
    let accepted = tokio::time::timeout(inbound.handshake_timeout, inbound.tls.accept(tcp)).await;
    let tls = match accepted {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            let failure = HandshakeFailure::classify(&error);
            inbound.metrics.handshake(Direction::Inbound, Err(failure));
            tracing::warn!(%remote, event = "tls_failure", reason = failure.reason(), %error, "inbound TLS handshake failed");
            return;
        }
        Err(_) => {
            inbound
                .metrics
                .handshake(Direction::Inbound, Err(HandshakeFailure::Timeout));
            tracing::warn!(%remote, event = "tls_failure", reason = "timeout", "inbound TLS handshake timed out");
            return;
        }
    };
    // The verifier already checked the chain; no ID here would be a verifier bug: refuse.
    let Some(peer) = peer_spiffe_id(tls.get_ref().1.peer_certificates()) else {
        inbound
            .metrics
            .handshake(Direction::Inbound, Err(HandshakeFailure::BadCertificate));
        return;
    };
    inbound.metrics.handshake(Direction::Inbound, Ok(()));
    serve_http(
        tls,
        remote,
        PeerIdentity::Authenticated(Arc::new(peer)),
        &inbound,
        watch,
    )
    .await;
}

async fn serve_http<I>(
    io: I,
    remote: std::net::SocketAddr,
    peer: PeerIdentity,
    inbound: &Inbound,
    watch: Watch,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stack = inbound.stack.clone();
    let service = move |request: Request<Incoming>| {
        let mut request = request.map(body::boxed);
        request.extensions_mut().insert(peer.clone());
        request.extensions_mut().insert(ClientAddr(remote));
        stack.clone().oneshot(request)
    };
    serve_connection(&inbound.http, io, service, watch, inbound.idle_timeout).await;
}
