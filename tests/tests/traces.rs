//! Traces across the mesh: two real proxies export OTLP/gRPC to a test receiver speaking
//! the real protocol; one request from the app with a W3C `traceparent` yields an
//! outbound span and an inbound span in the app's trace, the inbound one the child of the
//! outbound one, carrying direction, peer, service, decision, WAF score and status.

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use palisade_e2e::otlp::OtlpReceiver;
use palisade_e2e::proxies::{free_port, payments_admits_orders, request, send, MeshProxy};
use palisade_e2e::test_helpers::TestControlPlane;
use palisade_proxy::telemetry::{ExportConfig, Sampler, Tracing};
use palisade_proxy::test_helpers::TestApp;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const APP_SPAN_ID: &str = "00f067aa0ba902b7";

/// Export to `receiver` recording every request, whether or not the app traces it.
fn recording_all(receiver: &OtlpReceiver, service: &str) -> Tracing {
    let always = Sampler::from_vars(Some("parentbased_always_on"), None).unwrap();
    let config = ExportConfig::for_endpoint(&receiver.endpoint())
        .unwrap()
        .with_sampler(always);
    Tracing::otlp(config, service).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
}

fn string(value: &str) -> Option<AnyValue> {
    Some(AnyValue::StringValue(value.to_owned()))
}

/// A control plane admitting `orders` to `payments`, the test app behind `payments`, and
/// both proxies exporting as `tracing(service)` makes them, configured and ready.
struct TracedMesh {
    cp: TestControlPlane,
    payments: MeshProxy,
    orders: MeshProxy,
    payments_tracing: Tracing,
    orders_tracing: Tracing,
    _app: TestApp,
    _dir: tempfile::TempDir,
}

impl TracedMesh {
    async fn start(tracing: impl Fn(&str) -> Tracing) -> TracedMesh {
        let dir = tempfile::tempdir().unwrap();
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir(&policy_dir).unwrap();
        std::fs::write(
            policy_dir.join("payments.yaml"),
            payments_admits_orders(&["/v1/charges/{id}"]),
        )
        .unwrap();
        let cp =
            TestControlPlane::start_with(|config| config.policy_dir = Some(policy_dir.clone()))
                .await
                .unwrap();
        let app = TestApp::start().await;
        let (payments_tracing, orders_tracing) = (tracing("payments"), tracing("orders"));
        let payments = MeshProxy::start_traced(
            &cp,
            "shop",
            "payments",
            "payments",
            app.addr,
            Some(payments_tracing.clone()),
        )
        .await
        .unwrap();
        let orders = MeshProxy::start_traced(
            &cp,
            "shop",
            "orders",
            "orders",
            free_port().unwrap(),
            Some(orders_tracing.clone()),
        )
        .await
        .unwrap();
        let within = Duration::from_secs(10);
        assert!(payments.wait_configured(&[], within).await);
        assert!(orders.wait_configured(&["payments"], within).await);
        TracedMesh {
            cp,
            payments,
            orders,
            payments_tracing,
            orders_tracing,
            _app: app,
            _dir: dir,
        }
    }

    /// Exports what both proxies have queued (blocking calls, off the runtime's threads).
    async fn flush(&self) {
        let (a, b) = (self.payments_tracing.clone(), self.orders_tracing.clone());
        tokio::task::spawn_blocking(move || {
            a.flush();
            b.flush();
        })
        .await
        .unwrap();
    }

    async fn shutdown(self) {
        self.payments.shutdown().await;
        self.orders.shutdown().await;
        self.cp.shutdown().await;
        let (a, b) = (self.payments_tracing, self.orders_tracing);
        tokio::task::spawn_blocking(move || {
            a.shutdown();
            b.shutdown();
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_proxies_export_spans_of_the_apps_trace() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let mesh = TracedMesh::start(|service| recording_all(&receiver, service)).await;

    let mut call = request("GET", "payments", "/v1/charges/ch_1", None, "");
    call.headers_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{APP_SPAN_ID}-01").parse().unwrap(),
    );
    let (status, _, body) = send(mesh.orders.outbound, call).await.unwrap();
    assert_eq!(status, 200, "{body}");
    // A call without a traceparent starts a trace of its own, still shared by both.
    let (status, _, body) = send(
        mesh.orders.outbound,
        request("GET", "payments", "/v1/charges/ch_2", None, ""),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let spans = loop {
        mesh.flush().await;
        let spans = receiver.spans();
        if spans.len() >= 4 || tokio::time::Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let in_app_trace: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    let outbound = in_app_trace
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap_or_else(|| panic!("no outbound span in the app's trace: {spans:#?}"));
    let inbound = in_app_trace
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| panic!("no inbound span in the app's trace: {spans:#?}"));
    assert_eq!(hex(&outbound.parent_span_id), APP_SPAN_ID);
    assert_eq!(
        inbound.parent_span_id, outbound.span_id,
        "the inbound span is the child of the outbound one"
    );
    assert_eq!(
        attribute(outbound, "palisade.direction"),
        string("outbound")
    );
    assert_eq!(
        attribute(outbound, "palisade.peer"),
        string("spiffe://mesh.test/ns/shop/sa/payments")
    );
    assert_eq!(attribute(outbound, "palisade.service"), string("payments"));
    assert_eq!(attribute(inbound, "palisade.direction"), string("inbound"));
    assert_eq!(
        attribute(inbound, "palisade.peer"),
        string("spiffe://mesh.test/ns/shop/sa/orders")
    );
    assert_eq!(attribute(inbound, "palisade.service"), string("payments"));
    assert_eq!(
        attribute(inbound, "palisade.authz.decision"),
        string("allow")
    );
    assert_eq!(
        attribute(inbound, "palisade.waf.score"),
        Some(AnyValue::IntValue(0))
    );
    assert_eq!(
        attribute(inbound, "http.response.status_code"),
        Some(AnyValue::IntValue(200))
    );

    let others: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) != TRACE_ID)
        .collect();
    assert_eq!(others.len(), 2, "{spans:#?}");
    assert_eq!(others[0].trace_id, others[1].trace_id, "{others:#?}");

    mesh.shutdown().await;
}

/// Export on with the default sampler: a call the app traces is recorded by both proxies;
/// of the calls it does not trace, about one in a hundred is, always by both proxies in
/// one trace, and the others reach the app without a `traceparent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_untraced_calls_are_sampled_alike_by_both_proxies() {
    const CALLS: usize = 300;
    let receiver = OtlpReceiver::start().await.unwrap();
    let mesh =
        TracedMesh::start(|service| Tracing::with_endpoint(&receiver.endpoint(), service).unwrap())
            .await;

    let mut sender = palisade_e2e::proxies::http1(mesh.orders.outbound)
        .await
        .unwrap();
    let mut reached_untraced = 0;
    for i in 0..CALLS {
        sender.ready().await.unwrap();
        let call = request("GET", "payments", &format!("/v1/charges/{i}"), None, "");
        let response = sender.send_request(call).await.unwrap();
        let (status, _, body) = palisade_e2e::proxies::read(response).await.unwrap();
        assert_eq!(status, 200, "{body}");
        let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
        if echo["headers"].get("traceparent").is_none() {
            reached_untraced += 1;
        }
    }
    let mut traced = request("GET", "payments", "/v1/charges/traced", None, "");
    traced.headers_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{APP_SPAN_ID}-01").parse().unwrap(),
    );
    let (status, _, body) = send(mesh.orders.outbound, traced).await.unwrap();
    assert_eq!(status, 200, "{body}");

    let mut both = [SpanKind::Client as i32, SpanKind::Server as i32];
    both.sort();
    // A span is queued as its response head passes the proxy: flush until every trace
    // has both, or for at most ten seconds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (spans, mut by_trace) = loop {
        mesh.flush().await;
        let spans = receiver.spans();
        let mut by_trace = std::collections::BTreeMap::<String, Vec<i32>>::new();
        for span in &spans {
            by_trace
                .entry(hex(&span.trace_id))
                .or_default()
                .push(span.kind);
        }
        let complete = by_trace.contains_key(TRACE_ID) && by_trace.values().all(|k| k.len() >= 2);
        if complete || tokio::time::Instant::now() > deadline {
            break (spans, by_trace);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (trace, kinds) in &mut by_trace {
        kinds.sort();
        assert_eq!(kinds, &both, "trace {trace}: {spans:#?}");
    }
    assert!(by_trace.contains_key(TRACE_ID), "{spans:#?}");
    // 1 % of 300: 3 expected; a draw of more than 15 would be a broken sampler.
    let sampled = by_trace.len() - 1;
    assert!(sampled <= 15, "{sampled} of {CALLS} untraced calls sampled");
    assert_eq!(reached_untraced, CALLS - sampled);

    mesh.shutdown().await;
}

/// A collector that accepts connections and never answers: requests through both
/// proxies still succeed at once, and the spans are counted as lost on `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_collector_neither_fails_nor_holds_up_requests() {
    // Bound and never accepted: connections complete in the kernel's backlog and every
    // export call waits for its timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let mesh = TracedMesh::start(|service| {
        let config = ExportConfig::for_endpoint(&endpoint)
            .unwrap()
            .with_sampler(Sampler::from_vars(Some("parentbased_always_on"), None).unwrap())
            .with_batching(64, 4, Duration::from_millis(20))
            .with_timeout(Duration::from_millis(300));
        Tracing::otlp(config, service).unwrap()
    })
    .await;

    const REQUESTS: u64 = 20;
    let started = std::time::Instant::now();
    for i in 0..REQUESTS {
        let call = request("GET", "payments", &format!("/v1/charges/{i}"), None, "");
        let (status, _, body) = send(mesh.orders.outbound, call).await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // Each export waits 300 ms for nothing; had a request waited on one, 20 would take
    // seconds.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");

    mesh.flush().await;
    for (proxy, tracing) in [
        (&mesh.payments, &mesh.payments_tracing),
        (&mesh.orders, &mesh.orders_tracing),
    ] {
        let lost = tracing.failed_spans().get() + tracing.dropped_spans().get();
        assert_eq!(lost, REQUESTS, "{}", proxy.service);
        let (status, _, metrics) =
            send(proxy.admin, request("GET", "metrics", "/metrics", None, ""))
                .await
                .unwrap();
        assert_eq!(status, 200);
        let failed = tracing.failed_spans().get();
        assert!(
            metrics.contains(&format!(
                "palisade_proxy_trace_spans_export_failed_total {failed}"
            )),
            "{metrics}"
        );
        assert!(
            metrics.contains("palisade_proxy_trace_spans_dropped_total "),
            "{metrics}"
        );
    }
    drop(silent);
    mesh.shutdown().await;
}
