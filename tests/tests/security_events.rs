//! Security events as a SIEM receives them: the log output of a real mesh (control
//! plane, two proxies), formatted as the proxy binary formats it (its `JsonLines`, which
//! writes the control plane's flattened `tracing` JSON byte for byte), captured, and
//! checked line by line: every line is one JSON object, and
//! each event documented in docs/observability.md carries its documented fields. Secrets
//! (join tokens, query strings) never appear.
//!
//! This file installs the process-wide subscriber, so it holds a single test.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_e2e::proxies::{free_port, payments_admits_orders, request, send, MeshProxy};
use palisade_e2e::test_helpers::TestControlPlane;
use palisade_proxy::identity::bootstrap;
use palisade_proxy::test_helpers::TestApp;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .expect("the log is UTF-8")
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line)
                    .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"))
            })
            .collect()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn write_policy(dir: &Path, text: &str) {
    let staged = dir.join(".payments.yaml.tmp");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, dir.join("payments.yaml")).unwrap();
}

/// Every event named `name` in `lines`; at least one must exist, and each must carry
/// `fields` (plus the envelope every line has).
fn assert_event<'a>(lines: &'a [Value], name: &str, fields: &[&str]) -> Vec<&'a Value> {
    let found: Vec<&Value> = lines.iter().filter(|line| line["event"] == name).collect();
    assert!(!found.is_empty(), "no `{name}` event in the log");
    for event in &found {
        for field in ["timestamp", "level", "target", "message"]
            .iter()
            .chain(fields)
        {
            assert!(
                event.get(*field).is_some(),
                "`{name}` lacks the field `{field}`: {event}"
            );
        }
    }
    found
}

#[tokio::test]
async fn security_events_are_json_lines_with_the_documented_fields() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .json()
        .event_format(palisade_proxy::logfmt::JsonLines::default())
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(move || writer.clone())
        .init();

    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policies");
    std::fs::create_dir(&policy_dir).unwrap();
    write_policy(&policy_dir, &payments_admits_orders(&["/search"]));
    let cp = TestControlPlane::start_with(|config| config.policy_dir = Some(policy_dir.clone()))
        .await
        .unwrap();
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

    // An allowed call, a denied route with a secret in its query, an injection.
    let (status, _, _) = send(
        orders.outbound,
        request("GET", "payments", "/search?q=shoes", None, ""),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let (status, _, _) = send(
        orders.outbound,
        request("GET", "payments", "/admin?api_key=s3cr3t-value", None, ""),
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    let (status, _, _) = send(
        orders.outbound,
        request(
            "GET",
            "payments",
            "/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--",
            None,
            "",
        ),
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    // Plaintext on the mTLS port.
    let mut plain = tokio::net::TcpStream::connect(payments.inbound)
        .await
        .unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut sink)).await;
    // A join token used twice: issued, then refused; it must never be logged.
    let token = cp.token("shop", "reports").unwrap();
    let config = cp
        .identity_config_with_token("shop", "reports", &token)
        .unwrap();
    bootstrap(config.clone()).await.unwrap();
    bootstrap(config).await.unwrap_err();
    // A broken policy change.
    write_policy(&policy_dir, "kind: [not a policy");
    let deadline = tokio::time::Instant::now() + within;
    while !capture.text().contains("policy_rejected") && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let lines = capture.lines();
    let issued = assert_event(
        &lines,
        "svid_issued",
        &[
            "spiffe_id",
            "serial",
            "not_after_unix",
            "issuer",
            "credential",
        ],
    );
    assert!(
        issued.iter().any(|e| e["credential"]
            .as_str()
            .is_some_and(|c| c.starts_with("join_token:"))
            && e.get("peer_addr").is_some()),
        "an issuance through the API names its credential and peer: {issued:?}"
    );
    let refused = assert_event(
        &lines,
        "svid_refused",
        &["code", "reason", "peer_addr", "peer_spiffe_id"],
    );
    assert!(
        refused.iter().any(|e| e["code"] == "token_used"),
        "{refused:?}"
    );
    assert_event(
        &lines,
        "svid_installed",
        &["spiffe_id", "serial", "not_after"],
    );
    let denies = assert_event(
        &lines,
        "authz_deny",
        &[
            "request_id",
            "peer",
            "service",
            "method",
            "path",
            "decided_by",
            "reason",
            "mode",
        ],
    );
    assert!(
        denies.iter().any(|e| e["path"] == "/admin"
            && e["peer"] == "spiffe://mesh.test/ns/shop/sa/orders"
            && e["service"] == "payments"),
        "{denies:?}"
    );
    assert_event(
        &lines,
        "waf_match",
        &[
            "request_id",
            "service",
            "rule_id",
            "match_target",
            "fragment",
            "score",
            "action",
            "mode",
            "rule_message",
        ],
    );
    let verdicts = assert_event(
        &lines,
        "waf_verdict",
        &[
            "request_id",
            "service",
            "path",
            "action",
            "mode",
            "score",
            "threshold",
        ],
    );
    assert!(
        verdicts.iter().any(|e| e["action"] == "block"),
        "{verdicts:?}"
    );
    let tls = assert_event(&lines, "tls_failure", &["reason", "remote"]);
    assert!(tls.iter().any(|e| e["reason"] == "plaintext"), "{tls:?}");
    assert_event(
        &lines,
        "policy_applied",
        &["policy_dir", "version", "digest", "files", "policies"],
    );
    assert_event(
        &lines,
        "policy_rejected",
        &["policy_dir", "problems", "diagnostics", "version_in_force"],
    );
    let access = assert_event(
        &lines,
        "access",
        &[
            "request_id",
            "direction",
            "method",
            "path",
            "status",
            "peer",
            "service",
            "duration_ms",
        ],
    );
    assert!(
        access.iter().any(|e| e["direction"] == "inbound"
            && e["status"] == 200
            && e["path"] == "/search"
            && e["service"] == "payments"),
        "{access:?}"
    );
    assert!(
        access
            .iter()
            .any(|e| e["direction"] == "outbound" && e["status"] == 403),
        "{access:?}"
    );

    let text = capture.text();
    // serde_json keeps the last of duplicate keys; a SIEM may keep either.
    for line in text.lines() {
        for key in [
            "\"timestamp\":",
            "\"level\":",
            "\"target\":",
            "\"message\":",
        ] {
            assert!(
                line.matches(key).count() <= 1,
                "a field collides with the envelope key {key}: {line}"
            );
        }
    }
    assert!(!text.contains(&token), "a join token was logged");
    assert!(
        !text.contains("s3cr3t-value"),
        "a query string secret was logged"
    );
    assert!(!text.contains("PRIVATE KEY"), "a private key was logged");

    payments.shutdown().await;
    orders.shutdown().await;
    cp.shutdown().await;
}
