//! Properties over generated policies and requests (bounded, deterministic):
//! - the compiled evaluator agrees with a naive rule-by-rule reference;
//! - hostile input (odd, huge, byte-soup paths, methods, headers) never panics and is
//!   decided quickly.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use palisade_api::policy::{
    Action, AuthorizationPolicy, DecidedBy, PathSegment, PolicySet, RequestFacts, ServicePolicy,
};
use palisade_spiffe::{SpiffeId, TrustDomain};

/// xorshift64*: a fixed seed keeps every run identical.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

const SEGMENTS: &[&str] = &["a", "b", "c"];
const PEERS: &[&str] = &[
    "spiffe://palisade.local/ns/shop/sa/orders",
    "spiffe://palisade.local/ns/shop/sa/billing",
    "spiffe://palisade.local/ns/ops/sa/admin",
    "spiffe://other.org/ns/shop/sa/orders",
];
const CALLERS: &[&str] = &[
    "- spiffeId: spiffe://palisade.local/ns/shop/sa/orders",
    "- namespace: shop",
    "- namespace: shop\n          serviceAccount: billing",
    "- spiffe://palisade.local/ns/*/sa/admin",
    "- authenticated: true",
    "- cidr: 10.0.0.0/8",
];

fn random_pattern(rng: &mut Rng) -> String {
    let len = 1 + rng.below(3);
    let mut p = String::new();
    for i in 0..len {
        p.push('/');
        match rng.below(6) {
            0 => p.push_str(&format!("{{p{i}}}")),
            1 if i + 1 == len => p.push_str("{*rest}"),
            _ => p.push_str(rng.pick(SEGMENTS)),
        }
    }
    p
}

fn random_policy(rng: &mut Rng, name: usize) -> String {
    let mut y = format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: p{name}\n  namespace: shop\nspec:\n  targetService: payments\n  rules:\n"
    );
    for _ in 0..1 + rng.below(4) {
        y.push_str(&format!(
            "    - action: {}\n",
            if rng.below(3) == 0 { "deny" } else { "allow" }
        ));
        if rng.below(4) != 0 {
            y.push_str("      callers:\n");
            for _ in 0..1 + rng.below(2) {
                y.push_str(&format!("        {}\n", rng.pick(CALLERS)));
            }
        }
        if rng.below(5) != 0 {
            y.push_str("      routes:\n");
            for _ in 0..1 + rng.below(2) {
                y.push_str("        - ");
                let mut first = true;
                if rng.below(2) == 0 {
                    y.push_str(&format!(
                        "methods: [{}]\n",
                        rng.pick(&["GET", "POST", "GET, POST"])
                    ));
                    first = false;
                }
                if first || rng.below(2) == 0 {
                    let indent = if first { "" } else { "          " };
                    y.push_str(&format!(
                        "{indent}paths: [\"{}\", \"{}\"]\n",
                        random_pattern(rng),
                        random_pattern(rng)
                    ));
                }
            }
        }
    }
    y
}

fn random_path(rng: &mut Rng) -> String {
    let len = 1 + rng.below(4);
    let mut p = String::new();
    for _ in 0..len {
        p.push('/');
        if rng.below(8) != 0 {
            p.push_str(rng.pick(SEGMENTS));
        }
    }
    p
}

/// Does `pattern` match `path`? Written from the documented semantics, independently of
/// the trie.
fn reference_path_match(pattern: &[PathSegment], path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    for (i, p) in pattern.iter().enumerate() {
        match p {
            PathSegment::CatchAll => return segments.len() > i,
            PathSegment::Param => {
                if segments.get(i).is_none_or(|s| s.is_empty()) {
                    return false;
                }
            }
            PathSegment::Static(s) => {
                if segments.get(i) != Some(&s.as_str()) {
                    return false;
                }
            }
        }
    }
    segments.len() == pattern.len()
}

fn reference_caller_match(rule: &palisade_api::policy::Rule, peer: &SpiffeId, ip: IpAddr) -> bool {
    if rule.callers.is_empty() {
        return true; // every generated peer is authenticated
    }
    let parts = peer
        .as_str()
        .starts_with("spiffe://palisade.local/")
        .then(|| peer.workload_parts())
        .flatten();
    rule.callers.iter().any(|c| {
        c.spiffe_id.as_ref().is_none_or(|p| p.matches(peer))
            && c.namespace
                .as_ref()
                .is_none_or(|ns| parts.is_some_and(|(n, _)| n == ns))
            && c.service_account
                .as_ref()
                .is_none_or(|sa| parts.is_some_and(|(_, s)| s == sa))
            && c.cidr.is_none_or(|net| net.contains(&ip))
    })
}

/// `(allowed, (policy, rule index) of the decider)`.
fn reference(
    policies: &[AuthorizationPolicy],
    peer: &SpiffeId,
    ip: IpAddr,
    method: &str,
    path: &str,
) -> (bool, Option<(String, usize)>) {
    // Generated paths are ambiguous only through empty inner segments (`//`).
    if path.contains("//") {
        return (false, None);
    }
    let mut first = [None, None];
    for p in policies {
        for (i, r) in p.rules.iter().enumerate() {
            let route_ok = r.routes.is_empty()
                || r.routes.iter().any(|route| {
                    (route.methods.is_empty() || route.methods.iter().any(|m| m == method))
                        && (route.paths.is_empty()
                            || route
                                .paths
                                .iter()
                                .any(|pp| reference_path_match(pp.segments(), path)))
                });
            if route_ok && reference_caller_match(r, peer, ip) {
                let slot = &mut first[usize::from(r.action == Action::Allow)];
                if slot.is_none() {
                    *slot = Some((p.name.clone(), i));
                }
            }
        }
    }
    match first {
        [Some(deny), _] => (false, Some(deny)),
        [None, Some(allow)] => (true, Some(allow)),
        [None, None] => (policies.is_empty(), None),
    }
}

#[test]
fn compiled_evaluator_agrees_with_the_reference() {
    let td = TrustDomain::new("palisade.local").unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let headers = http::HeaderMap::new();
    let peers: Vec<SpiffeId> = PEERS.iter().map(|p| SpiffeId::parse(p).unwrap()).collect();
    let mut decided_by_rule = 0;
    for round in 0..150 {
        let docs: Vec<String> = (0..1 + rng.below(3))
            .map(|i| random_policy(&mut rng, i))
            .collect();
        let text = docs.join("---\n");
        let set = PolicySet::from_sources([("gen.yaml", text.as_str())])
            .unwrap_or_else(|e| panic!("round {round}: {e}\n{text}"));
        let compiled = set.compile_service(&td, "shop", "payments");
        for _ in 0..60 {
            let peer = &peers[rng.below(peers.len())];
            let ip: IpAddr = if rng.below(2) == 0 {
                "10.9.8.7".parse().unwrap()
            } else {
                "192.0.2.1".parse().unwrap()
            };
            let method = rng.pick(&["GET", "POST", "PUT"]);
            let path = random_path(&mut rng);
            let d = compiled.evaluate(&RequestFacts {
                peer: Some(peer),
                peer_ip: ip,
                method,
                path: &path,
                headers: &headers,
            });
            let (allowed, by) = reference(&set.policies, peer, ip, method, &path);
            let got_by = match d.decided_by {
                DecidedBy::Rule(r) => Some((r.policy.to_owned(), r.index)),
                DecidedBy::Default => None,
            };
            assert_eq!(
                (d.allowed, &got_by),
                (allowed, &by),
                "round {round}: {peer} {method} {path}\n{text}"
            );
            decided_by_rule += usize::from(got_by.is_some());
        }
    }
    assert!(
        decided_by_rule > 1000,
        "the generator must exercise rules, not only defaults ({decided_by_rule})"
    );
}

fn hostile_policy() -> ServicePolicy {
    let yaml = r#"
apiVersion: palisade.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: h, namespace: shop}
spec:
  targetService: payments
  rules:
    - action: allow
      callers: [{namespace: shop}, "spiffe://palisade.local/ns/*/sa/x", {cidr: "::/0"}]
      routes:
        - {methods: [GET, POST], paths: ["/", "/{a}", "/{a}/{b}/{*c}", "/x/y/z"]}
      headers: [{name: x-t, regex: "[a-z]{1,8}"}]
    - action: deny
      headers: [{name: x-d, exact: "1"}]
      routes: [{paths: ["/{*all}"]}]
"#;
    PolicySet::from_sources([("h.yaml", yaml)])
        .unwrap()
        .compile_service(
            &TrustDomain::new("palisade.local").unwrap(),
            "shop",
            "payments",
        )
}

#[test]
fn hostile_input_never_panics_and_is_decided_quickly() {
    let policy = hostile_policy();
    let peer = SpiffeId::parse("spiffe://palisade.local/ns/shop/sa/x").unwrap();
    let alphabet: &[&str] = &[
        "/", "//", "a", ".", "..", "%", "%2f", "%2E", "%5C", "%zz", "\\", "?", "#", "{", "}", "*",
        "é", "\u{0}", "\u{7f}", "\u{202e}", " ", "\t", "\r\n", "😀", "x",
    ];
    let mut rng = Rng(42);
    let mut headers = http::HeaderMap::new();
    headers.append(
        "x-t",
        http::HeaderValue::from_bytes(b"\xff\xfe abc").unwrap(),
    );
    headers.append("x-t", http::HeaderValue::from_static("ok"));
    headers.append("x-d", http::HeaderValue::from_bytes(b"\x80").unwrap());
    let ip: IpAddr = "::1".parse().unwrap();
    let started = Instant::now();
    for _ in 0..20_000 {
        let mut path = String::new();
        for _ in 0..rng.below(12) {
            path.push_str(rng.pick(alphabet));
        }
        let method = rng.pick(&["GET", "", "get", "POST\u{0}", "😀", "CONNECT"]);
        let peer = if rng.below(2) == 0 { Some(&peer) } else { None };
        let d = policy.evaluate(&RequestFacts {
            peer,
            peer_ip: ip,
            method,
            path: &path,
            headers: &headers,
        });
        if path.contains("/../") || path.contains("%2f") || path.contains('\\') {
            assert!(!d.allowed, "ambiguous path {path:?} must be denied");
        }
    }
    // Huge paths: a megabyte of segments, a megabyte without a slash.
    let deep = "/a".repeat(500_000);
    let wide = format!("/{}", "a".repeat(1_000_000));
    for path in [deep.as_str(), wide.as_str()] {
        let d = policy.evaluate(&RequestFacts {
            peer: Some(&SpiffeId::parse("spiffe://palisade.local/ns/shop/sa/y").unwrap()),
            peer_ip: ip,
            method: "GET",
            path,
            headers: &http::HeaderMap::new(),
        });
        assert!(!d.allowed);
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}
