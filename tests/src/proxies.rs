//! Real proxies for the end-to-end tests: each bootstrapped from a [`TestControlPlane`]
//! with a join token, renewing its SVID, watching its configuration and serving through
//! `palisade_proxy::serve` as the binary does through `run` (see `proxy/src/main.rs`), plus plain
//! HTTP/1.1 and HTTP/2 clients for the application side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_proxy::control::{spawn_watch, WatchConfig, WatchHandle, WatchStatus};
use palisade_proxy::identity::Identity;
use palisade_proxy::telemetry::Tracing;
use palisade_proxy::{serve, Enforcement, Listeners, MeshState, ProxyConfig, ProxyIdentity};
use palisade_waf::{Engine, RuleSet};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use crate::test_helpers::{eventually, TestControlPlane};

/// A policy directory file in which `payments` (namespace `shop`, trust domain
/// `mesh.test`) admits `orders` on `paths` (any method), and nobody else.
pub fn payments_admits_orders(paths: &[&str]) -> String {
    let paths = paths
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"apiVersion: palisade.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: payments-callers
  namespace: shop
spec:
  targetService: payments
  rules:
    - name: orders-can-call
      action: allow
      callers:
        - spiffeId: spiffe://mesh.test/ns/shop/sa/orders
      routes:
        - paths: [{paths}]
"#
    )
}

/// A 127.0.0.1 address nobody listens on (bound, then released): the app address of a
/// proxy whose app the test never calls. Listeners a test needs are bound on port 0 and
/// kept, as `MeshProxy::start` does, since this port could be taken again meanwhile.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// The embedded WAF rule set, compiled once per test process and on a blocking thread.
/// A debug build takes seconds to compile it (nine under load); on the runtime of a
/// `#[tokio::test]` (one thread, shared with the in-process control plane) that starved
/// the control plane's certificate renewal, and the short lifetimes of the rotation tests
/// ran out.
async fn waf_engine() -> anyhow::Result<Engine> {
    static ENGINE: OnceCell<Engine> = OnceCell::const_new();
    let engine = ENGINE
        .get_or_try_init(|| async {
            tokio::task::spawn_blocking(|| RuleSet::embedded().map(Engine::new))
                .await
                .context("the thread compiling the WAF rule set failed")?
                .context("compiling the embedded WAF rule set")
        })
        .await?;
    Ok(engine.clone())
}

/// One sidecar proxy in this process, with its own identity and listeners.
pub struct MeshProxy {
    pub service: String,
    pub identity: Identity,
    pub inbound: SocketAddr,
    pub outbound: SocketAddr,
    pub admin: SocketAddr,
    pub state: Arc<MeshState>,
    pub enforcement: Arc<Enforcement>,
    pub watch: WatchHandle,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl MeshProxy {
    /// Starts the proxy of `service` (identity `ns/sa`) in front of the app at `app`.
    pub async fn start(
        cp: &TestControlPlane,
        namespace: &str,
        service_account: &str,
        service: &str,
        app: SocketAddr,
    ) -> anyhow::Result<Self> {
        Self::start_traced(cp, namespace, service_account, service, app, None).await
    }

    /// [`start`](Self::start), exporting a span per request to `tracing`.
    pub async fn start_traced(
        cp: &TestControlPlane,
        namespace: &str,
        service_account: &str,
        service: &str,
        app: SocketAddr,
        tracing: Option<Tracing>,
    ) -> anyhow::Result<Self> {
        // Compiled before the SVID is issued, whose test lifetime may be shorter than the
        // compilation.
        let engine = waf_engine().await?;
        let identity = cp.identity(namespace, service_account).await?;
        // Bound here, on ports the system picks, and handed to the proxy: a port chosen
        // first and bound later could be taken in between by a parallel test.
        let listeners = Listeners {
            inbound: TcpListener::bind("127.0.0.1:0").await?,
            outbound: TcpListener::bind("127.0.0.1:0").await?,
            admin: TcpListener::bind("127.0.0.1:0").await?,
        };
        let (inbound, outbound, admin) = (
            listeners.inbound.local_addr()?,
            listeners.outbound.local_addr()?,
            listeners.admin.local_addr()?,
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let enforcement = Enforcement::with_engine(cp.trust_domain(), service, engine);
        let state = MeshState::new();
        let mut watch_config = WatchConfig::new(service, Some(inbound.to_string()))?;
        watch_config.backoff_initial = Duration::from_millis(50);
        watch_config.backoff_max = Duration::from_millis(300);
        let (watched_state, watched_enforcement) = (state.clone(), enforcement.clone());
        let watch = spawn_watch(
            identity.control_plane().clone(),
            watch_config,
            move |snapshot| {
                watched_enforcement.apply(&snapshot);
                watched_state.apply(&snapshot);
            },
            until_stopped(),
        );
        let renewal = identity.spawn_renewal(until_stopped());
        let mut config = ProxyConfig::new(inbound, outbound, admin, app);
        config.tracing = tracing;
        let proxy_identity = ProxyIdentity {
            svids: identity.svids.clone(),
            bundle: identity.bundle.clone(),
        };
        let served = tokio::spawn({
            let (state, enforcement) = (state.clone(), enforcement.clone());
            let shutdown = until_stopped();
            async move {
                if let Err(error) = serve(
                    listeners,
                    config,
                    proxy_identity,
                    state,
                    enforcement,
                    shutdown,
                )
                .await
                {
                    eprintln!("proxy stopped with an error: {error}");
                }
            }
        });
        Ok(Self {
            service: service.to_owned(),
            identity,
            inbound,
            outbound,
            admin,
            state,
            enforcement,
            watch,
            stop,
            tasks: vec![renewal, served],
        })
    }

    /// Waits until the proxy has an authorization policy and knows every service in
    /// `peers` (the endpoints its outbound side resolves).
    pub async fn wait_configured(&self, peers: &[&str], within: Duration) -> bool {
        eventually(within, || {
            self.enforcement.is_configured()
                && peers.iter().all(|p| {
                    self.state
                        .service(p)
                        .is_some_and(|s| !s.endpoints.is_empty())
                })
        })
        .await
    }

    pub fn watch_connected(&self) -> bool {
        matches!(*self.watch.status().borrow(), WatchStatus::Connected)
    }

    /// Stops the listeners, the watch and renewal.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

/// An HTTP/1.1 keep-alive connection from the app to a proxy's outbound listener.
pub async fn http1(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>> {
    let tcp = TcpStream::connect(addr).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// An HTTP/2 (prior knowledge) connection from the app to a proxy's outbound listener.
pub async fn http2(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http2::SendRequest<http_body_util::Full<Bytes>>> {
    let tcp = TcpStream::connect(addr).await?;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// A request to `service` (named by the Host header) with an optional body.
pub fn request(
    method: &str,
    service: &str,
    target: &str,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> Request<http_body_util::Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(target)
        .header(http::header::HOST, service);
    if let Some(ct) = content_type {
        builder = builder.header(http::header::CONTENT_TYPE, ct);
    }
    builder
        .body(http_body_util::Full::new(body.into()))
        .expect("a valid test request")
}

/// An HTTP/2 request needs an absolute URI naming the service.
pub fn request_h2(
    method: &str,
    service: &str,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> Request<http_body_util::Full<Bytes>> {
    request(
        method,
        service,
        &format!("http://{service}{path}"),
        content_type,
        body,
    )
}

/// One request on a fresh HTTP/1.1 connection: status, headers and body text.
pub async fn send(
    addr: SocketAddr,
    request: Request<http_body_util::Full<Bytes>>,
) -> anyhow::Result<(http::StatusCode, http::HeaderMap, String)> {
    let mut sender = http1(addr).await?;
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .context("the request timed out")??;
    read(response).await
}

pub async fn read(
    response: Response<Incoming>,
) -> anyhow::Result<(http::StatusCode, http::HeaderMap, String)> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}
