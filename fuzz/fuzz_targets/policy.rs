//! Policy files as operators write them (authorization policies, the mesh config and
//! WAF policies, in one or two files split at a NUL byte): the set is refused with
//! diagnostics that point into a file, or accepted; an accepted set compiles for every
//! service it names, and each compiled policy decides a handful of requests, including
//! hostile paths, without a panic and the same way twice.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use palisade_api::policy::{parse_waf_file, KnownRules, PolicySet, RequestFacts};
use palisade_spiffe::{SpiffeId, TrustDomain};
use palisade_waf::RuleSet;

fn known() -> &'static KnownRules {
    static KNOWN: OnceLock<KnownRules> = OnceLock::new();
    KNOWN.get_or_init(|| KnownRules::from_rule_set(&RuleSet::embedded().expect("embedded rules")))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files: Vec<(&str, &str)> = match text.split_once('\0') {
        Some((a, b)) => vec![("a.yaml", a), ("b.yaml", b)],
        None => vec![("a.yaml", text)],
    };
    let names = |file: &str| files.iter().any(|(n, _)| *n == file);
    for (file, body) in &files {
        let (policies, problems) = parse_waf_file(file, body, known());
        for p in &problems {
            assert!(names(&p.file) && p.line >= 1 && p.column >= 1, "{p:?}");
            assert!(!p.to_string().is_empty());
        }
        for p in policies {
            assert!((1..=4).contains(&p.settings.paranoia), "{p:?}");
        }
    }
    let set = match PolicySet::from_sources(files.iter().copied()) {
        Ok(set) => set,
        Err(diagnostics) => {
            assert!(!diagnostics.0.is_empty());
            for d in &diagnostics.0 {
                assert!(names(&d.file) && d.line >= 1 && d.column >= 1, "{d:?}");
            }
            assert!(!diagnostics.to_string().is_empty());
            return;
        }
    };
    let td = TrustDomain::new("palisade.local").expect("valid trust domain");
    let peers = [
        SpiffeId::parse("spiffe://palisade.local/ns/shop/sa/orders").ok(),
        SpiffeId::parse("spiffe://other.example/ns/shop/sa/orders").ok(),
        None,
    ];
    let mut headers = http::HeaderMap::new();
    headers.insert("x-tenant", http::HeaderValue::from_static("acme"));
    let requests = [
        ("GET", "/"),
        ("POST", "/v1/charges"),
        ("POST", "/v1/charges/42?x=1"),
        ("GET", "/v1/../admin"),
        ("GET", "//v1/charges"),
        ("DELETE", "/v1/%2e%2e/admin"),
        ("PUT", "/static/a/b/c"),
    ];
    let services: Vec<(String, String)> = set
        .services()
        .into_iter()
        .map(|(ns, svc)| (ns.to_owned(), svc.to_owned()))
        .chain([("default".to_owned(), "nothing".to_owned())])
        .collect();
    for (ns, svc) in &services {
        let compiled = set.compile_service(&td, ns, svc);
        for peer in &peers {
            for (method, path) in requests {
                let facts = RequestFacts {
                    peer: peer.as_ref(),
                    peer_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
                    method,
                    path,
                    headers: &headers,
                };
                let decision = compiled.evaluate(&facts);
                assert_eq!(decision, compiled.evaluate(&facts));
                assert!(!decision.to_string().is_empty());
            }
        }
    }
});
