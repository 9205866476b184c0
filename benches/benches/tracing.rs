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
//! sending the same `traceparent` of its own on every request, and
//! `proxied_request_http1_keepalive_app_span` with the app sending a new one per request
//! (a new parent span id, as an instrumented app's client span has).
//!
//! `span_path`: the per-request span work alone, as the metrics layer does it for one
//! request (its two clock readings, start from the incoming `traceparent`, rewrite it,
//! record the facts, end and queue), with the discarding export thread: inbound with a sampled parent, inbound with
//! an unsampled parent, outbound starting a new trace.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, StatusCode};
use palisade_e2e::otlp::CountingOtlpEndpoint;
use palisade_e2e::proxies::{free_port, http1, payments_admits_orders, read, request, MeshProxy};
use palisade_e2e::test_helpers::TestControlPlane;
use palisade_proxy::metrics::Direction;
use palisade_proxy::telemetry::{Sampler, Tracing};
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

/// What the bench's app sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum App {
    /// No `traceparent`: export on adds a header export off does not carry, and its cost
    /// on the mTLS hop (HPACK) and in the app counts too.
    Untraced,
    /// [`APP_TRACEPARENT`] on every request: export off forwards it unchanged (after the
    /// first request HPACK sends it as a one-byte index), export on replaces it.
    SameTraceparent,
    /// A new parent span id on every request, as an app that traces does (each of its
    /// client calls is a span of its own): the header is new on every request in every
    /// configuration, so the difference is the proxies' tracing work alone.
    NewSpanPerRequest,
}

fn end_to_end(c: &mut Criterion) {
    end_to_end_group(c, App::Untraced);
    end_to_end_group(c, App::SameTraceparent);
    end_to_end_group(c, App::NewSpanPerRequest);
}

/// `APP_TRACEPARENT` with the parent span id `n` (never zero), as a header value.
fn app_span_traceparent(n: u64) -> HeaderValue {
    let mut value = APP_TRACEPARENT.as_bytes().to_owned();
    let hex = format!("{:016x}", n | 1 << 63);
    value[36..52].copy_from_slice(hex.as_bytes());
    HeaderValue::from_bytes(&value).expect("a valid traceparent")
}

fn end_to_end_group(c: &mut Criterion, app_sends: App) {
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

    let group_name = match app_sends {
        App::Untraced => "proxied_request_http1_keepalive",
        App::SameTraceparent => "proxied_request_http1_keepalive_app_traceparent",
        App::NewSpanPerRequest => "proxied_request_http1_keepalive_app_span",
    };
    let mut app_spans = 0u64;
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
                Export::Discard => Some(
                    Tracing::discarding(service, Sampler::default())
                        .expect("a discarding export thread"),
                ),
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
                        match app_sends {
                            App::Untraced => {}
                            App::SameTraceparent => {
                                call.headers_mut().insert(
                                    "traceparent",
                                    HeaderValue::from_static(APP_TRACEPARENT),
                                );
                            }
                            App::NewSpanPerRequest => {
                                app_spans += 1;
                                call.headers_mut()
                                    .insert("traceparent", app_span_traceparent(app_spans));
                            }
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
    let always = Sampler::from_vars(Some("parentbased_always_on"), None).expect("a sampler name");
    let tracing = Tracing::discarding("payments", always).expect("a discarding export thread");
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
                let received = Instant::now();
                let span = tracing.start(Direction::Inbound, &method, &mut headers, received);
                if let Some(facts) = span.facts() {
                    facts.set_authz("allow");
                    facts.set_waf_score(0);
                }
                span.finish(
                    "spiffe://mesh.test/ns/shop/sa/orders",
                    "payments",
                    StatusCode::OK,
                    received.elapsed(),
                );
            })
        });
    }
    // Outbound, as `orders` sees the bench's app: no `traceparent`, so a new trace,
    // recorded.
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("payments"));
    outbound_new_trace(c, "span_path/outbound_new_trace", &tracing, headers.clone());
    tracing.shutdown();
    // The same with the default sampler, for a request it does not keep (99 % of them):
    // what export on costs a request no one traces.
    let tracing =
        Tracing::discarding("orders", Sampler::default()).expect("a discarding export thread");
    let unsampled = (0u64..)
        .map(|n| HeaderValue::from_str(&format!("{n:032x}")).expect("hex is a header value"))
        .find(|id| {
            let mut headers = headers.clone();
            headers.insert("x-request-id", id.clone());
            let span = tracing.start(Direction::Outbound, &method, &mut headers, Instant::now());
            !span.is_recording()
        })
        .expect("a request id the default sampler drops");
    headers.insert("x-request-id", unsampled);
    outbound_new_trace(
        c,
        "span_path/outbound_new_trace_not_sampled",
        &tracing,
        headers,
    );
    tracing.shutdown();
}

/// One outbound request's span work with `headers`, which carry no `traceparent`: the
/// one a recorded span adds is removed before each iteration (a lookup that misses when
/// the span was not recorded).
fn outbound_new_trace(c: &mut Criterion, name: &str, tracing: &Tracing, mut headers: HeaderMap) {
    let method = http::Method::GET;
    c.bench_function(name, |b| {
        b.iter(|| {
            headers.remove("traceparent");
            let received = Instant::now();
            let span = tracing.start(Direction::Outbound, &method, &mut headers, received);
            span.finish(
                "spiffe://mesh.test/ns/shop/sa/payments",
                "payments",
                StatusCode::OK,
                received.elapsed(),
            );
        })
    });
}

criterion_group!(benches, span_path, end_to_end);
criterion_main!(benches);
