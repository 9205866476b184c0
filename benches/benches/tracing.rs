//! The cost of trace export on the request path.
//!
//! `end_to_end`: one proxied request through a real Palisade chain in this process (app
//! client → `orders` outbound → mTLS → `payments` inbound → app), over one HTTP/1.1
//! keep-alive connection, in three configurations measured in alternation (two rounds):
//! - `export_off`: no tracing (the default);
//! - `export_discard`: spans created, propagated, ended and queued, then dropped unencoded
//!   by the export thread (`Tracing::discarding`) — the request path's own span work,
//!   without any export;
//! - `export_otlp`: the real OTLP/gRPC exporter, to an endpoint on a thread and runtime of
//!   its own that only counts bytes (a collector runs elsewhere in a deployment; decoding
//!   here would bill the collector's work to the proxy).
//!
//! Each configuration gets its own control plane and pair of proxies (started, measured,
//! stopped) against one app, so they differ only in `ProxyConfig::tracing`. The group
//! `proxied_request_http1_keepalive_app_traceparent` repeats all of it with the app
//! sending a `traceparent` of its own in every configuration.
//!
//! `span_path`: the per-request span work alone, as the metrics layer does it for one
//! request (start from the incoming `traceparent`, rewrite it, record the facts, end and
//! queue), with the discarding export thread: inbound with a sampled parent, inbound with
//! an unsampled parent, outbound starting a new trace.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, StatusCode};
use palisade_e2e::otlp::CountingOtlpEndpoint;
use palisade_e2e::proxies::{free_port, http1, payments_admits_orders, read, request, MeshProxy};
use palisade_e2e::test_helpers::TestControlPlane;
use palisade_proxy::metrics::Direction;
use palisade_proxy::telemetry::Tracing;
use palisade_proxy::test_helpers::TestApp;

#[derive(Clone, Copy)]
enum Export {
    Off,
    Discard,
    Otlp,
}

impl Export {
    fn name(self) -> &'static str {
        match self {
            Self::Off => "export_off",
            Self::Discard => "export_discard",
            Self::Otlp => "export_otlp",
        }
    }
}

/// The app's own `traceparent`, for the `_app_traceparent` group.
const APP_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn end_to_end(c: &mut Criterion) {
    end_to_end_group(c, false);
    end_to_end_group(c, true);
}

/// `app_traceparent`: the app sends its own `traceparent` in every configuration (an app
/// that already traces), so export off forwards it unchanged and export on replaces it;
/// the difference is then the proxies' tracing work alone. Without it, export on adds a
/// header export off does not carry, and its cost on the mTLS hop (HPACK) and in the app
/// counts too.
fn end_to_end_group(c: &mut Criterion, app_traceparent: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the bench's tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary policy directory");
    let policy_dir = dir.path().join("policies");
    std::fs::create_dir(&policy_dir).expect("creating the policy directory");
    std::fs::write(
        policy_dir.join("payments.yaml"),
        payments_admits_orders(&["/v1/charges/{id}"]),
    )
    .expect("writing the policy");
    let endpoint = CountingOtlpEndpoint::start().expect("the counting OTLP endpoint");
    let app = rt.block_on(TestApp::start());

    let group_name = if app_traceparent {
        "proxied_request_http1_keepalive_app_traceparent"
    } else {
        "proxied_request_http1_keepalive"
    };
    let mut group = c.benchmark_group(group_name);
    // Set when an OTLP configuration was measured (a filter may leave it out).
    let otlp_measured = std::cell::Cell::new(false);
    // `PALISADE_TRACING_BENCH=keepalive/export_otlp/1` (say) sets up only the
    // configurations whose full name contains it: under callgrind, starting the others'
    // control planes and proxies would take minutes (criterion's own filter skips only
    // the measuring).
    let only = std::env::var("PALISADE_TRACING_BENCH").unwrap_or_default();
    for round in 1..=2 {
        for export in [Export::Off, Export::Discard, Export::Otlp] {
            if !format!("{group_name}/{}/{round}", export.name()).contains(&only) {
                continue;
            }
            // A control plane per configuration: one shared by successive pairs would keep
            // the stopped `payments` proxies' endpoints registered (their SPIFFE ID is
            // still watching), and `orders` would spend requests on refused connections.
            let cp = rt
                .block_on(TestControlPlane::start_with(|config| {
                    config.policy_dir = Some(policy_dir.clone())
                }))
                .expect("the control plane");
            let tracing = |service: &str| match export {
                Export::Off => None,
                Export::Discard => {
                    Some(Tracing::discarding(service).expect("a discarding export thread"))
                }
                Export::Otlp => Some(
                    Tracing::with_endpoint(&endpoint.endpoint(), service)
                        .expect("an OTLP exporter to the endpoint"),
                ),
            };
            let (payments_tracing, orders_tracing) = (tracing("payments"), tracing("orders"));
            let (payments, orders, mut sender) = rt.block_on(async {
                let payments = MeshProxy::start_traced(
                    &cp,
                    "shop",
                    "payments",
                    "payments",
                    app.addr,
                    payments_tracing.clone(),
                )
                .await
                .expect("the payments proxy");
                let orders = MeshProxy::start_traced(
                    &cp,
                    "shop",
                    "orders",
                    "orders",
                    free_port().expect("a free port"),
                    orders_tracing.clone(),
                )
                .await
                .expect("the orders proxy");
                let within = Duration::from_secs(10);
                assert!(payments.wait_configured(&[], within).await);
                assert!(orders.wait_configured(&["payments"], within).await);
                let sender = http1(orders.outbound).await.expect("a client connection");
                (payments, orders, sender)
            });
            group.bench_function(format!("{}/{round}", export.name()), |b| {
                otlp_measured.set(otlp_measured.get() || matches!(export, Export::Otlp));
                b.iter(|| {
                    rt.block_on(async {
                        sender.ready().await.expect("the connection stays open");
                        let mut call = request("GET", "payments", "/v1/charges/ch_1", None, "");
                        if app_traceparent {
                            call.headers_mut()
                                .insert("traceparent", HeaderValue::from_static(APP_TRACEPARENT));
                        }
                        let response = sender
                            .send_request(call)
                            .await
                            .expect("a response through both proxies");
                        let (status, _, body) = read(response).await.expect("the response body");
                        assert_eq!(status, 200, "{body}");
                    })
                })
            });
            rt.block_on(async {
                payments.shutdown().await;
                orders.shutdown().await;
                cp.shutdown().await;
            });
            for t in [payments_tracing, orders_tracing].into_iter().flatten() {
                t.shutdown();
            }
        }
    }
    group.finish();
    assert!(
        !otlp_measured.get() || endpoint.bytes() > 0,
        "OTLP export was on but the endpoint received nothing"
    );
}

fn span_path(c: &mut Criterion) {
    let tracing = Tracing::discarding("payments").expect("a discarding export thread");
    let method = http::Method::GET;
    // Inbound, as `payments` sees it: a sampled parent from the calling proxy; then the
    // same with the parent not sampled (what `OTEL_TRACES_SAMPLER` ratios leave behind).
    for (name, traceparent) in [
        (
            "span_path/inbound_request",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        (
            "span_path/inbound_request_unsampled",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("payments"));
        headers.insert("traceparent", HeaderValue::from_static(traceparent));
        c.bench_function(name, |b| {
            b.iter(|| {
                let span = tracing.start(Direction::Inbound, &method, &mut headers);
                if let Some(facts) = span.facts() {
                    facts.set_authz("allow");
                    facts.set_waf_score(0);
                }
                span.finish(
                    "spiffe://mesh.test/ns/shop/sa/orders",
                    "payments",
                    StatusCode::OK,
                );
            })
        });
    }
    // Outbound, as `orders` sees the bench's app: no `traceparent`, so a new trace (the
    // header the previous iteration added is removed first).
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("payments"));
    c.bench_function("span_path/outbound_new_trace", |b| {
        b.iter(|| {
            headers.remove("traceparent");
            let span = tracing.start(Direction::Outbound, &method, &mut headers);
            span.finish(
                "spiffe://mesh.test/ns/shop/sa/payments",
                "payments",
                StatusCode::OK,
            );
        })
    });
    tracing.shutdown();
}

criterion_group!(benches, span_path, end_to_end);
criterion_main!(benches);
