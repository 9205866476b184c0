//! Metrics after real traffic: a control plane with its metrics listener and three real
//! proxies; requests through the mesh (allowed, denied, to an unknown service), a
//! plaintext connection to an mTLS port, a refused join token and a broken then a good
//! policy change; then every `/metrics` is scraped over HTTP and the series that must
//! have moved are checked with their labels.

use std::path::Path;
use std::time::Duration;

use palisade_e2e::proxies::{free_port, payments_admits_orders, request, send, MeshProxy};
use palisade_e2e::test_helpers::TestControlPlane;
use palisade_proxy::identity::{bootstrap, IdentityError};
use palisade_proxy::test_helpers::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ORDERS_ID: &str = "spiffe://mesh.test/ns/shop/sa/orders";
const PAYMENTS_ID: &str = "spiffe://mesh.test/ns/shop/sa/payments";

fn write_policy(dir: &Path, text: &str) {
    let staged = dir.join(".payments.yaml.tmp");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, dir.join("payments.yaml")).unwrap();
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let (status, headers, body) = send(addr, request("GET", "metrics", "/metrics", None, ""))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        headers[http::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{headers:?}"
    );
    body
}

/// The value of the series `name{labels}` exactly (labels in exposition order).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn assert_value(text: &str, series: &str, check: impl Fn(f64) -> bool, what: &str) {
    match value(text, series) {
        Some(v) if check(v) => {}
        other => panic!("`{series}` should be {what}, is {other:?}; metrics:\n{text}"),
    }
}

/// Polls the control plane's metrics until `series` satisfies `check`.
async fn eventually_value(
    addr: std::net::SocketAddr,
    series: &str,
    check: impl Fn(f64) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(addr).await;
        if value(&text, series).is_some_and(&check) || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_move_with_real_traffic_on_proxies_and_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policies");
    std::fs::create_dir(&policy_dir).unwrap();
    write_policy(&policy_dir, &payments_admits_orders(&["/v1/charges/{id}"]));
    let cp = TestControlPlane::start_with(|config| {
        config.policy_dir = Some(policy_dir.clone());
        config.metrics = Some(([127, 0, 0, 1], 0).into());
    })
    .await
    .unwrap();
    let cp_metrics = cp.metrics_addr().expect("the metrics listener is on");
    let app = TestApp::start().await;
    let payments = MeshProxy::start(&cp, "shop", "payments", "payments", app.addr)
        .await
        .unwrap();
    let orders = MeshProxy::start(&cp, "shop", "orders", "orders", free_port().unwrap())
        .await
        .unwrap();
    let within = Duration::from_secs(10);
    assert!(payments.wait_configured(&[], within).await);
    assert!(orders.wait_configured(&["payments"], within).await);

    // Two allowed calls, one denied route, one unknown service.
    for id in ["ch_1", "ch_2"] {
        let (status, _, body) = send(
            orders.outbound,
            request("GET", "payments", &format!("/v1/charges/{id}"), None, ""),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let (status, _, _) = send(
        orders.outbound,
        request("GET", "payments", "/admin?token=s3cret", None, ""),
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    let (status, _, _) = send(orders.outbound, request("GET", "nowhere", "/x", None, ""))
        .await
        .unwrap();
    assert_eq!(status, 503);
    // Plaintext on the mTLS port is a handshake failure with a reason.
    let mut plain = tokio::net::TcpStream::connect(payments.inbound)
        .await
        .unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: payments\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut sink)).await;

    let text = scrape(orders.admin).await;
    let out_ok = format!(
        r#"palisade_proxy_request_duration_seconds_count{{direction="outbound",status_class="2xx",peer="{PAYMENTS_ID}",service="payments"}}"#
    );
    assert_value(&text, &out_ok, |v| v == 2.0, "2");
    let out_ok_slow_bucket = format!(
        r#"palisade_proxy_request_duration_seconds_bucket{{le="+Inf",direction="outbound",status_class="2xx",peer="{PAYMENTS_ID}",service="payments"}}"#
    );
    assert_value(&text, &out_ok_slow_bucket, |v| v == 2.0, "2");
    let out_sum = format!(
        r#"palisade_proxy_request_duration_seconds_sum{{direction="outbound",status_class="2xx",peer="{PAYMENTS_ID}",service="payments"}}"#
    );
    assert_value(
        &text,
        &out_sum,
        |v| v > 0.0 && v < 20.0,
        "a plausible duration",
    );
    let out_denied = format!(
        r#"palisade_proxy_request_duration_seconds_count{{direction="outbound",status_class="4xx",peer="{PAYMENTS_ID}",service="payments"}}"#
    );
    assert_value(&text, &out_denied, |v| v == 1.0, "1");
    assert_value(
        &text,
        r#"palisade_proxy_request_duration_seconds_count{direction="outbound",status_class="5xx",peer="none",service="unknown"}"#,
        |v| v == 1.0,
        "1 (an unknown destination is labelled `unknown`, never by its host)",
    );
    assert!(
        !text.contains("nowhere"),
        "a raw host became a label:\n{text}"
    );
    assert_value(
        &text,
        r#"palisade_proxy_requests_total{direction="outbound",status_class="2xx",peer="spiffe://mesh.test/ns/shop/sa/payments"}"#,
        |v| v == 2.0,
        "2",
    );
    assert_value(
        &text,
        r#"palisade_proxy_tls_handshakes_total{direction="outbound",result="ok"}"#,
        |v| v >= 1.0,
        "at least 1",
    );

    let text = scrape(payments.admin).await;
    let in_ok = format!(
        r#"palisade_proxy_request_duration_seconds_count{{direction="inbound",status_class="2xx",peer="{ORDERS_ID}",service="payments"}}"#
    );
    assert_value(&text, &in_ok, |v| v == 2.0, "2");
    let in_denied = format!(
        r#"palisade_proxy_request_duration_seconds_count{{direction="inbound",status_class="4xx",peer="{ORDERS_ID}",service="payments"}}"#
    );
    assert_value(&text, &in_denied, |v| v == 1.0, "1");
    assert!(
        !text.contains("/admin"),
        "a raw path became a label:\n{text}"
    );
    assert_value(
        &text,
        r#"palisade_proxy_authz_decisions_total{result="deny"}"#,
        |v| v == 1.0,
        "1",
    );
    assert_value(
        &text,
        r#"palisade_proxy_tls_handshakes_total{direction="inbound",result="plaintext"}"#,
        |v| v == 1.0,
        "1",
    );
    assert_value(
        &text,
        r#"palisade_proxy_tls_handshakes_total{direction="inbound",result="ok"}"#,
        |v| v >= 1.0,
        "at least 1",
    );
    assert_value(
        &text,
        "palisade_proxy_svid_not_after_seconds",
        |v| v > 1.7e9,
        "a Unix time",
    );

    // The control plane: two issuances, two watchers, a refusal, policy and CA gauges.
    let series_refused = r#"palisade_control_plane_svids_refused_total{reason="token_unknown"}"#;
    let text = scrape(cp_metrics).await;
    assert_value(
        &text,
        "palisade_control_plane_svids_issued_total",
        |v| v == 2.0,
        "2",
    );
    assert_eq!(value(&text, series_refused), None, "{text}");
    assert_value(
        &text,
        "palisade_control_plane_connected_proxies",
        |v| v == 2.0,
        "2",
    );
    let version_before = value(&text, "palisade_control_plane_policy_version").unwrap_or(0.0);
    assert!(
        version_before > 1.7e12,
        "policy_version is applied-at millis:\n{text}"
    );
    assert!(
        text.lines().any(|line| line
            .starts_with(r#"palisade_control_plane_ca_root_not_after_seconds{root=""#)
            && line.contains(r#"signing="true"} "#)),
        "{text}"
    );
    assert_value(
        &text,
        "palisade_control_plane_policy_rejections_total",
        |v| v == 0.0,
        "0",
    );

    let bogus = cp
        .identity_config_with_token("shop", "orders", "not-a-token")
        .unwrap();
    let error = bootstrap(bogus).await.unwrap_err();
    assert!(matches!(error, IdentityError::Control(_)), "{error}");
    let text = scrape(cp_metrics).await;
    assert_value(&text, series_refused, |v| v == 1.0, "1");
    assert_value(
        &text,
        "palisade_control_plane_svids_issued_total",
        |v| v == 2.0,
        "still 2",
    );

    // A broken change is refused and counted; a good one is pushed to both watchers.
    write_policy(&policy_dir, "kind: [not a policy");
    let text = eventually_value(
        cp_metrics,
        "palisade_control_plane_policy_rejections_total",
        |v| v == 1.0,
    )
    .await;
    assert_value(
        &text,
        "palisade_control_plane_policy_rejections_total",
        |v| v == 1.0,
        "1",
    );
    let pushes_before = value(
        &text,
        "palisade_control_plane_policy_push_duration_seconds_count",
    )
    .unwrap_or(0.0);
    write_policy(
        &policy_dir,
        &payments_admits_orders(&["/v1/charges/{id}", "/v2"]),
    );
    let text = eventually_value(cp_metrics, "palisade_control_plane_policy_version", |v| {
        v > version_before
    })
    .await;
    assert_value(
        &text,
        "palisade_control_plane_policy_version",
        |v| v > version_before,
        "newer",
    );
    let text = eventually_value(
        cp_metrics,
        "palisade_control_plane_policy_push_duration_seconds_count",
        |v| v >= pushes_before + 2.0,
    )
    .await;
    assert_value(
        &text,
        "palisade_control_plane_policy_push_duration_seconds_count",
        |v| v >= pushes_before + 2.0,
        "one more push per watcher",
    );
    assert_value(
        &text,
        r#"palisade_control_plane_policy_push_duration_seconds_bucket{le="+Inf"}"#,
        |v| v >= 2.0,
        "at least 2",
    );

    let (status, _, _) = send(cp_metrics, request("GET", "metrics", "/ready", None, ""))
        .await
        .unwrap();
    assert_eq!(status, 200);

    payments.shutdown().await;
    orders.shutdown().await;
    cp.shutdown().await;
}
