//! A decision does not allocate: the proxy calls `evaluate` once per request.
//!
//! This test binary installs a counting allocator (per thread, so the harness's own
//! threads do not disturb it) and counts allocations across many decisions.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;

use palisade_api::policy::{PolicySet, RequestFacts};
use palisade_spiffe::{SpiffeId, TrustDomain};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn decisions_do_not_allocate() {
    let yaml = r#"
apiVersion: palisade.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec:
  targetService: payments
  mode: enforce
  rules:
    - {name: exact, action: allow, callers: ["spiffe://palisade.local/ns/shop/sa/orders"], routes: [{methods: [GET], paths: ["/v1/charges/{id}"]}]}
    - {name: wildcard, action: allow, callers: ["spiffe://palisade.local/ns/ops/sa/*"], routes: [{paths: ["/v1/{*rest}"]}]}
    - {name: ns, action: allow, callers: [{namespace: web}], headers: [{name: x-tenant, regex: "[a-z]+"}]}
    - {name: cidr, action: deny, mode: audit, callers: [{cidr: 10.0.0.0/8}]}
    - {name: admin, action: deny, routes: [{paths: ["/admin/{*rest}"]}]}
"#;
    let set = PolicySet::from_sources([("p.yaml", yaml)]).unwrap();
    let policy = set.compile_service(
        &TrustDomain::new("palisade.local").unwrap(),
        "shop",
        "payments",
    );
    let peers: Vec<SpiffeId> = [
        "spiffe://palisade.local/ns/shop/sa/orders",
        "spiffe://palisade.local/ns/ops/sa/admin",
        "spiffe://palisade.local/ns/web/sa/frontend",
        "spiffe://other.org/ns/shop/sa/orders",
    ]
    .iter()
    .map(|p| SpiffeId::parse(p).unwrap())
    .collect();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-tenant", http::HeaderValue::from_static("acme"));
    let ip: IpAddr = "10.1.2.3".parse().unwrap();
    let paths = [
        "/v1/charges/ch_1",
        "/v1/a/b",
        "/admin/x",
        "/",
        "/v1/../admin",
        "/%61dmin/x",
    ];
    let run = |count: &mut usize| {
        for peer in &peers {
            for path in paths {
                for method in ["GET", "POST"] {
                    let d = policy.evaluate(&RequestFacts {
                        peer: Some(peer),
                        peer_ip: ip,
                        method,
                        path,
                        headers: &headers,
                    });
                    *count += usize::from(d.allowed);
                }
            }
        }
    };
    // Warm up: the regex engine fills its per-thread cache on first use.
    let mut allowed = 0;
    run(&mut allowed);
    let before = allocations();
    for _ in 0..100 {
        run(&mut allowed);
    }
    assert_eq!(allocations() - before, 0, "decisions allocated");
    // The counter does count.
    let probe = allocations();
    std::hint::black_box(vec![0u8; 16]);
    assert!(allocations() > probe);
    assert!(allowed > 0);
}
