//! The cost of trace export on the request path: one proxied request end to end through a
//! real Palisade chain in this process (app client → `orders` outbound → mTLS → `payments`
//! inbound → app), over one HTTP/1.1 keep-alive connection, with export off and then on
//! (OTLP/gRPC to a real receiver on 127.0.0.1), side by side in one run.
//!
//! Each side gets its own pair of proxies (started, measured, stopped) against one control
//! plane and one app, so the two differ only in `ProxyConfig::tracing`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use palisade_e2e::otlp::OtlpReceiver;
use palisade_e2e::proxies::{free_port, http1, payments_admits_orders, read, request, MeshProxy};
use palisade_e2e::test_helpers::TestControlPlane;
use palisade_proxy::telemetry::Tracing;
use palisade_proxy::test_helpers::TestApp;

fn end_to_end(c: &mut Criterion) {
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
    let (receiver, cp, app) = rt.block_on(async {
        let receiver = OtlpReceiver::start().await.expect("the OTLP receiver");
        let cp = TestControlPlane::start_with(|config| config.policy_dir = Some(policy_dir))
            .await
            .expect("the control plane");
        (receiver, cp, TestApp::start().await)
    });

    // The OTLP exporter's gRPC channel is built on, and needs, the runtime's reactor.
    let _in_runtime = rt.enter();
    let mut group = c.benchmark_group("proxied_request_http1_keepalive");
    for traced in [false, true] {
        let tracing = |service: &str| {
            traced.then(|| {
                Tracing::with_endpoint(&receiver.endpoint(), service)
                    .expect("an OTLP exporter to the receiver")
            })
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
        let name = if traced { "export_on" } else { "export_off" };
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    sender.ready().await.expect("the connection stays open");
                    let response = sender
                        .send_request(request("GET", "payments", "/v1/charges/ch_1", None, ""))
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
        });
        for t in [payments_tracing, orders_tracing].into_iter().flatten() {
            t.shutdown();
        }
        if traced {
            assert!(
                !receiver.spans().is_empty(),
                "export was on but the receiver got no span"
            );
        }
    }
    group.finish();
    rt.block_on(cp.shutdown());
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
