//! The data path end to end on loopback: an app client → outbound proxy ("orders") →
//! mTLS/HTTP/2 → inbound proxy ("payments") → the test app, with real sockets, real TLS,
//! and real hyper HTTP/1.1 and HTTP/2 clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_api::wire::{ConfigSnapshot, Endpoint};
use palisade_proxy::admin::{self, Admin};
use palisade_proxy::body::{self as proxy_body, ProxyBody};
use palisade_proxy::drain::{self, Signal};
use palisade_proxy::inbound::{self, Inbound};
use palisade_proxy::metrics::Metrics;
use palisade_proxy::outbound::{self, Outbound};
use palisade_proxy::test_helpers::{TestApp, TestCa};
use palisade_proxy::{Enforcement, MeshState, ProxyConfig, ProxyIdentity};
use palisade_spiffe::tls::client_config;
use palisade_spiffe::ServerIdentity;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ORDERS_ID: &str = "spiffe://td/ns/shop/sa/orders";
const PAYMENTS_ID: &str = "spiffe://td/ns/shop/sa/payments";

struct Mesh {
    ca: TestCa,
    orders: ProxyIdentity,
    payments: ProxyIdentity,
    app: TestApp,
    inbound: SocketAddr,
    outbound: SocketAddr,
    admin: SocketAddr,
    state: Arc<MeshState>,
    enforcement: Arc<Enforcement>,
    signal: Signal,
}

fn config(app: SocketAddr, permissive: bool, tune: fn(&mut ProxyConfig)) -> ProxyConfig {
    let unused: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut config = ProxyConfig::new(unused, unused, unused, app);
    config.permissive = permissive;
    config.timeouts.endpoint_ejection = Duration::from_secs(30);
    tune(&mut config);
    config
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

fn snapshot(endpoints: &[(&str, SocketAddr, &str)]) -> ConfigSnapshot {
    let mut snapshot = ConfigSnapshot {
        version: 1,
        ..Default::default()
    };
    for (service, addr, id) in endpoints {
        snapshot
            .endpoints
            .entry(service.to_string())
            .or_default()
            .push(Endpoint {
                addr: addr.to_string(),
                spiffe_id: id.to_string(),
            });
    }
    snapshot
}

/// Payments' enforcement with the mesh default (any caller of the trust domain, or in
/// permissive mode every caller) and the default WAF settings, as the control plane sends
/// them for a service without policy.
fn enforcement(permissive: bool) -> Arc<Enforcement> {
    let enforcement =
        Enforcement::new(palisade_spiffe::TrustDomain::new("td").unwrap(), "payments").unwrap();
    let mut authorization = palisade_api::wire::ServiceAuthorization::default();
    if permissive {
        authorization.mesh.default_action = palisade_api::policy::DefaultAction::AllowAll;
    }
    enforcement.apply(&ConfigSnapshot {
        authorization: Some(authorization),
        ..Default::default()
    });
    enforcement
}

/// Starts payments' inbound proxy in front of the test app and orders' outbound proxy,
/// with payments registered at its inbound address under its own SPIFFE ID.
async fn mesh_with(permissive: bool, tune: fn(&mut ProxyConfig)) -> Mesh {
    let ca = TestCa::new("td");
    let app = TestApp::start().await;
    let (signal, watch) = drain::channel();
    let metrics = Metrics::new();

    let payments = ca.identity("shop", "payments");
    let (inbound_listener, inbound_addr) = listener().await;
    let enforcement = enforcement(permissive);
    let inbound = Inbound::new(
        &config(app.addr, permissive, tune),
        &payments,
        metrics.clone(),
        enforcement.clone(),
    );
    tokio::spawn(inbound::serve(inbound_listener, inbound, watch.clone()));

    let orders = ca.identity("shop", "orders");
    let state = MeshState::new();
    state.apply(&snapshot(&[("payments", inbound_addr, PAYMENTS_ID)]));
    let (outbound_listener, outbound_addr) = listener().await;
    let outbound = Outbound::new(
        &config(app.addr, false, tune),
        &orders,
        state.clone(),
        metrics.clone(),
    );
    tokio::spawn(outbound::serve(outbound_listener, outbound, watch.clone()));

    let (admin_listener, admin_addr) = listener().await;
    let admin = Arc::new(Admin {
        metrics,
        svids: orders.svids.clone(),
        state: state.clone(),
        enforcement: enforcement.clone(),
    });
    tokio::spawn(admin::serve(admin_listener, admin, watch));

    Mesh {
        ca,
        orders,
        payments,
        app,
        inbound: inbound_addr,
        outbound: outbound_addr,
        admin: admin_addr,
        state,
        enforcement,
        signal,
    }
}

async fn mesh() -> Mesh {
    mesh_with(false, |_| {}).await
}

async fn h1<B>(addr: SocketAddr, request: Request<B>) -> Response<Incoming>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender.send_request(request).await.unwrap()
}

async fn h2<B>(addr: SocketAddr, request: Request<B>) -> Response<Incoming>
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender.send_request(request).await.unwrap()
}

fn get(host: &str, path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header(header::HOST, host)
        .body(Empty::new())
        .unwrap()
}

async fn text(response: Response<Incoming>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

async fn json(response: Response<Incoming>) -> Value {
    serde_json::from_str(&text(response).await).unwrap()
}

#[tokio::test]
async fn http1_and_http2_reach_the_app_through_both_proxies() {
    let mesh = mesh().await;

    let response = h1(mesh.outbound, get("payments", "/v1/charges?x=1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let echo = json(response).await;
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/v1/charges");
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["headers"]["x-palisade-peer-id"], ORDERS_ID);
    assert_eq!(echo["headers"]["host"], "payments");
    assert!(echo["headers"]["x-request-id"]
        .as_str()
        .is_some_and(|id| id.len() == 32));

    let request = Request::post("http://payments.shop.svc.cluster.local/upload")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let response = h2(mesh.outbound, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let echo = json(response).await;
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body_len"], 5);
    assert_eq!(echo["headers"]["x-palisade-peer-id"], ORDERS_ID);
    assert_eq!(mesh.app.requests(), 2);

    // Both calls shared one pooled, multiplexed mTLS connection between the proxies.
    let metrics = text(h1(mesh.admin, get("admin", "/metrics")).await).await;
    assert!(
        metrics.contains(r#"tls_handshakes_total{direction="outbound",result="ok"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_peer_id_header_cannot_be_spoofed() {
    let mesh = mesh_with(true, |_| {}).await;
    let spoofed = "spiffe://td/ns/admin/sa/root";

    let request = Request::get("/")
        .header(header::HOST, "payments")
        .header("x-palisade-peer-id", spoofed)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let echo = json(h1(mesh.outbound, request).await).await;
    assert_eq!(echo["headers"]["x-palisade-peer-id"], ORDERS_ID);

    // Permissive mode: plaintext straight to the inbound port is accepted, unauthenticated,
    // and a claimed identity is dropped rather than passed on.
    let request = Request::get("/")
        .header(header::HOST, "payments")
        .header("x-palisade-peer-id", spoofed)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = h1(mesh.inbound, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let echo = json(response).await;
    assert!(
        echo["headers"].get("x-palisade-peer-id").is_none(),
        "{echo}"
    );
}

#[tokio::test]
async fn grpc_unary_and_bidirectional_streaming_keep_trailers() {
    let mesh = mesh().await;
    let tcp = TcpStream::connect(mesh.outbound).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake::<_, _, ProxyBody>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(connection);

    // Unary.
    let request = Request::post("http://payments/grpc.Payments/Charge")
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .body(proxy_body::boxed(Full::new(Bytes::from_static(
            b"\0\0\0\0\x02hi",
        ))))
        .unwrap();
    let mut unary = sender.clone();
    let response = unary.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let collected = response.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(&collected.to_bytes()[..], b"\0\0\0\0\x02hi");

    // Streaming: each message is echoed back before the next one is sent, so nothing
    // on the way may wait for the end of the request.
    let (mut tx, channel) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(1);
    let request = Request::post("http://payments/grpc.Payments/Stream")
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .body(proxy_body::boxed(channel))
        .unwrap();
    let mut streaming = sender.clone();
    let response = tokio::spawn(async move { streaming.send_request(request).await.unwrap() });
    tx.send_data(Bytes::from_static(b"message-0"))
        .await
        .unwrap();
    let mut body = response.await.unwrap().into_body();
    for i in 0..3 {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a streamed message must come back before the request ends")
            .unwrap()
            .unwrap();
        assert_eq!(
            frame.into_data().unwrap(),
            format!("message-{i}").as_bytes()
        );
        if i < 2 {
            tx.send_data(Bytes::from(format!("message-{}", i + 1)))
                .await
                .unwrap();
        }
    }
    drop(tx);
    let trailers = loop {
        let frame = body.frame().await.unwrap().unwrap();
        if let Ok(trailers) = frame.into_trailers() {
            break trailers;
        }
    };
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "ok");
}

#[tokio::test]
async fn a_10_mb_body_streams_without_being_buffered_whole() {
    let mesh = mesh().await;
    const CHUNK: usize = 64 * 1024;
    const TOTAL: usize = 10 * 1024 * 1024;
    let (mut tx, channel) =
        http_body_util::channel::Channel::<Bytes, std::convert::Infallible>::new(2);
    let request = Request::post("/count")
        .header(header::HOST, "payments")
        .body(channel)
        .unwrap();
    let outbound = mesh.outbound;
    let response = tokio::spawn(async move { h1(outbound, request).await });
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    for _ in 0..16 {
        tx.send_data(chunk.clone()).await.unwrap();
    }
    // Half the body is still unsent: the app must already be reading.
    assert!(
        mesh.app.wait_for_bytes(1, Duration::from_secs(5)).await,
        "the app saw no byte before the client finished sending: a proxy buffers the body"
    );
    for _ in 16..TOTAL / CHUNK {
        tx.send_data(chunk.clone()).await.unwrap();
    }
    drop(tx);
    let response = response.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, TOTAL.to_string());
}

#[tokio::test]
async fn plaintext_to_the_inbound_port_is_refused() {
    let mesh = mesh().await;
    let mut tcp = TcpStream::connect(mesh.inbound).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: payments\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("mutual TLS"), "{answer}");
    assert!(answer.contains("x-request-id: "), "{answer}");
    assert_eq!(mesh.app.requests(), 0);
    let metrics = text(h1(mesh.admin, get("admin", "/metrics")).await).await;
    assert!(
        metrics.contains(r#"tls_handshakes_total{direction="inbound",result="plaintext"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let mesh = mesh().await;
    let stranger = TestCa::new("td");
    // The stranger trusts our CA for the server side, so only the client SVID is at fault.
    let tls = client_config(
        Some(stranger.svid_store("shop", "orders")),
        mesh.ca.bundle(),
        ServerIdentity::AnyInTrustDomain,
    );
    let mut tls = tls;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = TcpStream::connect(mesh.inbound).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("payments").unwrap();
    let refused = async {
        let tls = connector.connect(name, tcp).await?;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        sender
            .send_request(get("payments", "/"))
            .await
            .map_err(std::io::Error::other)
    };
    let result = tokio::time::timeout(Duration::from_secs(5), refused)
        .await
        .unwrap();
    assert!(result.is_err(), "a foreign client certificate was accepted");
    assert_eq!(mesh.app.requests(), 0);
    let expected = r#"tls_handshakes_total{direction="inbound",result="unknown_issuer"} 1"#;
    assert!(
        metrics_soon_contain(mesh.admin, expected).await,
        "{expected}"
    );
}

/// The server records a failed handshake just after the client saw it fail.
async fn metrics_soon_contain(admin: SocketAddr, expected: &str) -> bool {
    for _ in 0..50 {
        if text(h1(admin, get("admin", "/metrics")).await)
            .await
            .contains(expected)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn outbound_refuses_a_destination_whose_identity_is_not_registered() {
    let mesh = mesh().await;
    // payments' real proxy listens there, but the registry says a different workload does.
    mesh.state.apply(&snapshot(&[(
        "payments",
        mesh.inbound,
        "spiffe://td/ns/shop/sa/impostor-check",
    )]));
    let response = h1(mesh.outbound, get("payments", "/")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("x-request-id"));
    let body = text(response).await;
    assert!(
        body.contains("only `spiffe://td/ns/shop/sa/impostor-check` is registered"),
        "{body}"
    );
    assert!(body.contains(PAYMENTS_ID), "{body}");
    assert_eq!(mesh.app.requests(), 0);
    let metrics = text(h1(mesh.admin, get("admin", "/metrics")).await).await;
    assert!(
        metrics
            .contains(r#"tls_handshakes_total{direction="outbound",result="peer_id_mismatch"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_request_with_200_kb_of_headers_gets_431() {
    let mesh = mesh().await;
    let big = "a".repeat(200 * 1024);
    let mut tcp = TcpStream::connect(mesh.outbound).await.unwrap();
    let request = format!("GET / HTTP/1.1\r\nhost: payments\r\nx-big: {big}\r\n\r\n");
    let _ = tcp.write_all(request.as_bytes()).await;
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 431"), "{first}");

    // Too many headers, each small, is refused the same way.
    let mut tcp = TcpStream::connect(mesh.outbound).await.unwrap();
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let request = format!("GET / HTTP/1.1\r\nhost: payments\r\n{many}\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 431"));

    // The proxy still serves.
    assert_eq!(
        h1(mesh.outbound, get("payments", "/")).await.status(),
        StatusCode::OK
    );
    assert_eq!(mesh.app.requests(), 1);
}

#[tokio::test]
async fn drain_completes_an_in_flight_request_then_stops_accepting() {
    let mesh = mesh().await;
    let outbound = mesh.outbound;
    let in_flight =
        tokio::spawn(async move { h1(outbound, get("payments", "/slow?ms=400")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    mesh.signal
        .drain(Duration::from_secs(5))
        .await
        .expect("drained before the deadline");
    let response = in_flight.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "slow done");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        TcpStream::connect(mesh.outbound).await.is_err(),
        "still accepting after drain"
    );
}

#[tokio::test]
async fn an_unknown_service_gets_503_with_a_request_id() {
    let mesh = mesh().await;
    let request = Request::get("/")
        .header(header::HOST, "nowhere:8080")
        .header("x-request-id", "client-id-1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = h1(mesh.outbound, request).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["x-request-id"], "client-id-1");
    let body = text(response).await;
    assert!(
        body.contains("no mesh service is named `nowhere`"),
        "{body}"
    );

    let request = Request::get("/")
        .header(header::HOST, "nowhere")
        .header("x-request-id", "bad id with spaces")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = h1(mesh.outbound, request).await;
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32);
}

#[tokio::test]
async fn a_failing_endpoint_is_skipped_and_ejected() {
    let mesh = mesh().await;
    let (dead, dead_addr) = listener().await;
    drop(dead);
    mesh.state.apply(&snapshot(&[
        ("payments", dead_addr, PAYMENTS_ID),
        ("payments", mesh.inbound, PAYMENTS_ID),
    ]));
    for _ in 0..10 {
        let response = h1(mesh.outbound, get("payments", "/")).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(mesh.app.requests(), 10);
    let service = mesh.state.service("payments").unwrap();
    let dead = service
        .endpoints
        .iter()
        .find(|e| e.addr == dead_addr.to_string())
        .unwrap();
    assert!(dead.is_ejected());
}

#[tokio::test]
async fn admin_reports_liveness_readiness_and_metrics() {
    let mesh = mesh().await;
    assert_eq!(
        h1(mesh.admin, get("admin", "/live")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        h1(mesh.admin, get("admin", "/ready")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        h1(mesh.outbound, get("payments", "/")).await.status(),
        StatusCode::OK
    );
    let metrics = text(h1(mesh.admin, get("admin", "/metrics")).await).await;
    for expected in [
        format!(
            r#"palisade_proxy_requests_total{{direction="inbound",status_class="2xx",peer="{ORDERS_ID}"}} 1"#
        ),
        format!(
            r#"palisade_proxy_requests_total{{direction="outbound",status_class="2xx",peer="{PAYMENTS_ID}"}} 1"#
        ),
        r#"palisade_proxy_tls_handshakes_total{direction="inbound",result="ok"} 1"#.to_owned(),
        r#"palisade_proxy_tls_handshakes_total{direction="outbound",result="ok"} 1"#.to_owned(),
        "palisade_proxy_svid_not_after_seconds ".to_owned(),
    ] {
        assert!(
            metrics.contains(&expected),
            "missing {expected} in\n{metrics}"
        );
    }
    assert!(!metrics.contains("palisade_proxy_svid_not_after_seconds 0\n"));

    // Without configuration the proxy is live but not ready, and says why.
    let unconfigured = Arc::new(Admin {
        metrics: Metrics::new(),
        svids: mesh.ca.svid_store("shop", "orders"),
        state: MeshState::new(),
        enforcement: mesh.enforcement.clone(),
    });
    assert!(unconfigured
        .readiness()
        .unwrap_err()
        .contains("no configuration"));
    let no_svid = Admin {
        metrics: Metrics::new(),
        svids: palisade_spiffe::SvidStore::new(),
        state: mesh.state.clone(),
        enforcement: mesh.enforcement.clone(),
    };
    assert!(no_svid.readiness().unwrap_err().contains("no SVID"));
    // Endpoints alone are not enough: without an authorization policy every inbound
    // request would be refused.
    let no_policy = Admin {
        metrics: Metrics::new(),
        svids: mesh.ca.svid_store("shop", "orders"),
        state: mesh.state.clone(),
        enforcement: Enforcement::new(palisade_spiffe::TrustDomain::new("td").unwrap(), "x")
            .unwrap(),
    };
    assert!(no_policy
        .readiness()
        .unwrap_err()
        .contains("no authorization policy"));
}

#[tokio::test]
async fn an_http1_upgrade_passes_through_both_proxies() {
    let mesh = mesh().await;
    let mut tcp = TcpStream::connect(mesh.outbound).await.unwrap();
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nhost: payments\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "connection closed inside the response head: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for message in [&b"ping"[..], b"second message"] {
        tcp.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed, message);
    }
}

/// Reads until the peer closes or `within` passes; true if it closed.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut sink = [0u8; 1024];
    let reading = async {
        loop {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, reading).await.is_ok()
}

#[tokio::test]
async fn slow_silent_and_idle_clients_are_disconnected() {
    let mesh = mesh_with(false, |config| {
        config.timeouts.request_header = Duration::from_millis(300);
        config.timeouts.tls_handshake = Duration::from_millis(300);
        config.timeouts.idle = Duration::from_millis(300);
    })
    .await;

    // A request head that never completes (slowloris).
    let mut tcp = TcpStream::connect(mesh.outbound).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: payments\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut tcp, Duration::from_secs(3)).await);

    // A client that connects to the mTLS port and never says a word.
    let mut tcp = TcpStream::connect(mesh.inbound).await.unwrap();
    assert!(closed_within(&mut tcp, Duration::from_secs(3)).await);

    // A keep-alive connection left idle after a request.
    let mut tcp = TcpStream::connect(mesh.outbound).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: payments\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    tcp.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let started = std::time::Instant::now();
    assert!(closed_within(&mut tcp, Duration::from_secs(3)).await);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn http2_limits_are_advertised_and_rapid_reset_closes_the_connection() {
    let mesh = mesh().await;
    let tcp = TcpStream::connect(mesh.outbound).await.unwrap();
    let (client, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let mut client = client.ready().await.unwrap();
    let request = Request::get("http://payments/").body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = tokio::select! {
        response = response => response.unwrap(),
        _ = &mut connection => panic!("the connection ended before the response"),
    };
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(connection.max_concurrent_send_streams(), 100);

    // Open and immediately cancel streams, far past the pending-accept reset limit.
    for _ in 0..60 {
        let request = Request::get("http://payments/slow?ms=2000")
            .body(())
            .unwrap();
        match client.send_request(request, false) {
            Ok((_, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
            Err(_) => break,
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), &mut connection).await;
    let error = ended
        .expect("the server kept a rapid-reset connection open")
        .unwrap_err();
    assert_eq!(
        error.reason(),
        Some(h2::Reason::ENHANCE_YOUR_CALM),
        "{error}"
    );
}

#[tokio::test]
async fn a_burst_of_requests_opens_one_connection_between_the_proxies() {
    let mesh = mesh().await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let outbound = mesh.outbound;
        calls.spawn(async move { h1(outbound, get("payments", "/slow?ms=50")).await.status() });
    }
    while let Some(status) = calls.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }
    let metrics = text(h1(mesh.admin, get("admin", "/metrics")).await).await;
    assert!(
        metrics.contains(r#"tls_handshakes_total{direction="outbound",result="ok"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn svid_rotation_under_load_loses_no_request() {
    let mesh = mesh().await;
    let before = mesh.payments.svids.info().unwrap().serial_hex;
    for i in 0..60 {
        if i == 20 {
            let (chain, key) = mesh.ca.issue("shop", "payments");
            mesh.payments.svids.install(chain, key).unwrap();
            let (chain, key) = mesh.ca.issue("shop", "orders");
            mesh.orders.svids.install(chain, key).unwrap();
        }
        let response = h1(mesh.outbound, get("payments", "/")).await;
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
    }
    assert_eq!(mesh.app.requests(), 60);

    // New handshakes present the new SVID, without any config being rebuilt.
    let after = mesh.payments.svids.info().unwrap().serial_hex;
    assert_ne!(before, after);
    let tls = client_config(
        Some(mesh.orders.svids.clone()),
        mesh.ca.bundle(),
        ServerIdentity::AnyInTrustDomain,
    );
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = TcpStream::connect(mesh.inbound).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("payments").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let leaf = &stream.get_ref().1.peer_certificates().unwrap()[0];
    assert_eq!(
        palisade_spiffe::tls::svid_info(leaf).unwrap().serial_hex,
        after
    );
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_peer_is_replaced() {
    let mesh = mesh_with(false, |config| {
        config.timeouts.idle = Duration::from_millis(200)
    })
    .await;
    assert_eq!(
        h1(mesh.outbound, get("payments", "/")).await.status(),
        StatusCode::OK
    );
    // payments' inbound closes the idle mesh connection; the next call reconnects.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        h1(mesh.outbound, get("payments", "/")).await.status(),
        StatusCode::OK
    );
    let metrics = text(h1(mesh.admin, get("admin", "/metrics")).await).await;
    assert!(
        metrics.contains(r#"tls_handshakes_total{direction="outbound",result="ok"} 2"#),
        "{metrics}"
    );
}

/// A stand-in for authorization: denies `/admin…`, passes everything else on.
#[derive(Clone)]
struct DenyAdmin<S>(S);

impl<S> tower::Service<Request<ProxyBody>> for DenyAdmin<S>
where
    S: tower::Service<
            Request<ProxyBody>,
            Response = Response<ProxyBody>,
            Error = std::convert::Infallible,
        > + Send,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = palisade_proxy::layers::ResponseFuture;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ProxyBody>) -> Self::Future {
        let peer = request
            .extensions()
            .get::<palisade_proxy::layers::PeerIdentity>()
            .and_then(|peer| peer.spiffe_id())
            .map(|id| id.to_string());
        if request.uri().path().starts_with("/admin") {
            let message = format!("{} may not call this route", peer.unwrap_or_default());
            return Box::pin(async move {
                Ok(proxy_body::local_response(StatusCode::FORBIDDEN, message))
            });
        }
        Box::pin(self.0.call(request))
    }
}

#[tokio::test]
async fn filters_plug_in_between_identity_and_the_app() {
    let ca = TestCa::new("td");
    let app = TestApp::start().await;
    let (_signal, watch) = drain::channel();
    let metrics = Metrics::new();
    let config = config(app.addr, false, |_| {});
    let payments = ca.identity("shop", "payments");
    let stack = inbound::stack_with(
        inbound::AppForwarder::new(app.addr, &config.timeouts),
        metrics.clone(),
        tower::layer::layer_fn(DenyAdmin),
    );
    let (inbound_listener, inbound_addr) = listener().await;
    let inbound = Inbound::with_stack(&config, &payments, metrics.clone(), stack);
    tokio::spawn(inbound::serve(inbound_listener, inbound, watch.clone()));
    let state = MeshState::new();
    state.apply(&snapshot(&[("payments", inbound_addr, PAYMENTS_ID)]));
    let (outbound_listener, outbound_addr) = listener().await;
    let outbound = Outbound::new(&config, &ca.identity("shop", "orders"), state, metrics);
    tokio::spawn(outbound::serve(outbound_listener, outbound, watch));

    let response = h1(outbound_addr, get("payments", "/admin/users")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(
        text(response).await,
        format!("{ORDERS_ID} may not call this route\n")
    );
    assert_eq!(app.requests(), 0);
    let response = h1(outbound_addr, get("payments", "/public")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.requests(), 1);
}
