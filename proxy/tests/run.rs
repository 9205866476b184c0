//! The whole proxy through its public entry point: three listeners up, ready, serving,
//! and a clean exit once the shutdown future resolves.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use palisade_api::wire::{ConfigSnapshot, Endpoint};
use palisade_proxy::test_helpers::{TestApp, TestCa};
use palisade_proxy::{run, Enforcement, MeshState, ProxyConfig};
use tokio::net::TcpStream;

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

async fn get(addr: SocketAddr, host: &str, path: &str) -> Option<(StatusCode, String)> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(header::HOST, host)
        .body(Empty::<Bytes>::new())
        .ok()?;
    let response = sender.send_request(request).await.ok()?;
    let status = response.status();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn run_serves_until_shutdown_then_returns() {
    let ca = TestCa::new("td");
    let app = TestApp::start().await;
    let config = ProxyConfig::new(free_port(), free_port(), free_port(), app.addr);
    let (inbound, outbound, admin) = (config.inbound, config.outbound, config.admin);
    let state = MeshState::new();
    let enforcement =
        Enforcement::new(palisade_spiffe::TrustDomain::new("td").unwrap(), "echo").unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let proxy = tokio::spawn(run(
        config,
        ca.identity("shop", "echo"),
        state.clone(),
        enforcement.clone(),
        async move {
            let _ = stopped.await;
        },
    ));

    let mut up = None;
    for _ in 0..100 {
        up = get(admin, "admin", "/ready").await;
        if up.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = up.expect("the admin listener came up");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("no configuration"), "{body}");

    // The proxy calls itself: outbound → its own inbound → the app.
    let mut snapshot = ConfigSnapshot::default();
    snapshot.endpoints.insert(
        "echo".into(),
        vec![Endpoint {
            addr: inbound.to_string(),
            spiffe_id: "spiffe://td/ns/shop/sa/echo".into(),
        }],
    );
    state.apply(&snapshot);
    enforcement.apply(&snapshot);
    let (status, body) = get(admin, "admin", "/ready").await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("no authorization policy"), "{body}");
    // Before any policy, the inbound side admits nobody (fail closed).
    let (status, body) = get(outbound, "echo", "/hello").await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("not configured yet"), "{body}");

    snapshot.authorization = Some(Default::default());
    enforcement.apply(&snapshot);
    assert_eq!(
        get(admin, "admin", "/ready").await.unwrap().0,
        StatusCode::OK
    );
    let (status, body) = get(outbound, "echo", "/hello").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("spiffe://td/ns/shop/sa/echo"), "{body}");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), proxy)
        .await
        .expect("run returned after shutdown")
        .unwrap()
        .unwrap();
    assert!(get(outbound, "echo", "/").await.is_none());
}
