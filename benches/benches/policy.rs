//! One authorization decision against 10, 1,000 and 10,000 rules.
//!
//! Rules are spread over routes as a real service's would be (one route and one caller
//! per rule, a catch-all deny every hundred rules), plus two worst cases with every rule
//! on one route: distinct exact callers (hash lookups) and wildcard callers (a linear
//! scan, the one shape whose cost grows with the rule count). Target: < 1 µs per
//! decision at 10,000 rules spread over routes.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use palisade_api::policy::{PolicySet, RequestFacts, ServicePolicy};
use palisade_spiffe::{SpiffeId, TrustDomain};

const RULES_PER_POLICY: usize = 100;

fn policy_header(n: usize) -> String {
    format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: p{n}\n  namespace: shop\nspec:\n  targetService: payments\n  rules:\n"
    )
}

/// `rules` rules; rule `i` lets `ns/ns{i%50}/sa/sa{i}` call `GET|POST /api/v1/r{i}/{id}`,
/// and every hundredth rule denies `/admin{i}/{*rest}`.
fn spread(rules: usize) -> String {
    let mut y = String::new();
    for i in 0..rules {
        if i % RULES_PER_POLICY == 0 {
            if i > 0 {
                y.push_str("---\n");
            }
            y.push_str(&policy_header(i / RULES_PER_POLICY));
        }
        if i % 100 == 99 {
            y.push_str(&format!(
                "    - action: deny\n      routes: [{{paths: [\"/admin{i}/{{*rest}}\"]}}]\n"
            ));
        } else {
            let method = if i % 2 == 0 { "GET" } else { "POST" };
            y.push_str(&format!(
                "    - action: allow\n      callers: [\"spiffe://palisade.local/ns/ns{}/sa/sa{i}\"]\n      routes: [{{methods: [{method}], paths: [\"/api/v1/r{i}/{{id}}\"]}}]\n",
                i % 50
            ));
        }
    }
    y
}

/// Every rule on `GET /api/v1/charges/{id}`; callers exact or wildcard.
fn one_route(rules: usize, wildcard: bool) -> String {
    let mut y = String::new();
    for i in 0..rules {
        if i % RULES_PER_POLICY == 0 {
            if i > 0 {
                y.push_str("---\n");
            }
            y.push_str(&policy_header(i / RULES_PER_POLICY));
        }
        let caller = if wildcard {
            format!("spiffe://palisade.local/ns/ns{i}/sa/*")
        } else {
            format!("spiffe://palisade.local/ns/ns{}/sa/sa{i}", i % 50)
        };
        y.push_str(&format!(
            "    - action: allow\n      callers: [\"{caller}\"]\n      routes: [{{methods: [GET], paths: [\"/api/v1/charges/{{id}}\"]}}]\n"
        ));
    }
    y
}

fn compile(yaml: &str) -> ServicePolicy {
    let set = PolicySet::from_sources([("bench.yaml", yaml)]).unwrap_or_else(|e| panic!("{e}"));
    set.compile_service(
        &TrustDomain::new("palisade.local").unwrap(),
        "shop",
        "payments",
    )
}

fn decide(c: &mut Criterion) {
    let headers = http::HeaderMap::new();
    let ip: IpAddr = "10.0.0.7".parse().unwrap();
    let mut group = c.benchmark_group("policy_decision");
    for rules in [10usize, 1_000, 10_000] {
        let policy = compile(&spread(rules));
        // A caller in the middle of the rule list, on its own route: allowed.
        let i = (rules / 2) & !1;
        let peer =
            SpiffeId::parse(&format!("spiffe://palisade.local/ns/ns{}/sa/sa{i}", i % 50)).unwrap();
        let path = format!("/api/v1/r{i}/ch_123");
        let facts = RequestFacts {
            peer: Some(&peer),
            peer_ip: ip,
            method: "GET",
            path: &path,
            headers: &headers,
        };
        assert!(policy.evaluate(&facts).allowed);
        group.bench_with_input(BenchmarkId::new("spread_allow", rules), &facts, |b, f| {
            b.iter(|| black_box(policy.evaluate(black_box(f))).allowed)
        });
        // Same caller on a route nobody allows: default deny.
        let other = "/api/v2/unknown/x";
        let facts = RequestFacts {
            path: other,
            ..facts
        };
        assert!(!policy.evaluate(&facts).allowed);
        group.bench_with_input(
            BenchmarkId::new("spread_default_deny", rules),
            &facts,
            |b, f| b.iter(|| black_box(policy.evaluate(black_box(f))).allowed),
        );
    }
    for rules in [10usize, 1_000, 10_000] {
        for wildcard in [false, true] {
            let policy = compile(&one_route(rules, wildcard));
            let i = rules - 1;
            let peer = if wildcard {
                SpiffeId::parse(&format!("spiffe://palisade.local/ns/ns{i}/sa/anyone")).unwrap()
            } else {
                SpiffeId::parse(&format!("spiffe://palisade.local/ns/ns{}/sa/sa{i}", i % 50))
                    .unwrap()
            };
            let facts = RequestFacts {
                peer: Some(&peer),
                peer_ip: ip,
                method: "GET",
                path: "/api/v1/charges/ch_1",
                headers: &headers,
            };
            assert!(policy.evaluate(&facts).allowed);
            let name = if wildcard {
                "one_route_wildcard_callers"
            } else {
                "one_route_exact_callers"
            };
            group.bench_with_input(BenchmarkId::new(name, rules), &facts, |b, f| {
                b.iter(|| black_box(policy.evaluate(black_box(f))).allowed)
            });
        }
    }
    group.finish();
}

fn compile_once_per_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_compile");
    group.sample_size(10);
    let yaml = spread(10_000);
    let set = PolicySet::from_sources([("bench.yaml", yaml.as_str())]).unwrap();
    let td = TrustDomain::new("palisade.local").unwrap();
    group.bench_function("parse_and_check_10000_rules", |b| {
        b.iter(|| PolicySet::from_sources([("bench.yaml", black_box(yaml.as_str()))]).is_ok())
    });
    group.bench_function("compile_10000_rules", |b| {
        b.iter(|| black_box(set.compile_service(&td, "shop", "payments")))
    });
    group.finish();
}

criterion_group!(benches, decide, compile_once_per_update);
criterion_main!(benches);
