//! Table-driven semantics of the policy language: what each request is decided, by which
//! rule or default, and why.

use std::net::IpAddr;

use palisade_api::policy::{DecidedBy, Decision, PolicySet, Reason, RequestFacts, ServicePolicy};
use palisade_spiffe::{SpiffeId, TrustDomain};

const TD: &str = "palisade.local";

fn compile(yaml: &str) -> ServicePolicy {
    let set = PolicySet::from_sources([("test.yaml", yaml)]).unwrap_or_else(|e| panic!("{e}"));
    set.compile_service(&TrustDomain::new(TD).unwrap(), "shop", "payments")
}

struct Req<'a> {
    from: Option<&'a str>,
    ip: &'a str,
    method: &'a str,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
}

const fn req<'a>(from: &'a str, method: &'a str, path: &'a str) -> Req<'a> {
    Req {
        from: Some(from),
        ip: "10.1.2.3",
        method,
        path,
        headers: &[],
    }
}

fn decide<'p>(policy: &'p ServicePolicy, r: &Req<'_>) -> Decision<'p> {
    let id = r.from.map(|f| SpiffeId::parse(f).unwrap());
    let mut headers = http::HeaderMap::new();
    for (k, v) in r.headers {
        headers.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let ip: IpAddr = r.ip.parse().unwrap();
    policy.evaluate(&RequestFacts {
        peer: id.as_ref(),
        peer_ip: ip,
        method: r.method,
        path: r.path,
        headers: &headers,
    })
}

/// The decider as a short string: the rule's name, or `default`.
fn decider(d: &DecidedBy<'_>) -> String {
    match d {
        DecidedBy::Rule(r) => r
            .name
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}#{}", r.policy, r.index)),
        DecidedBy::Default => "default".into(),
    }
}

const ORDERS: &str = "spiffe://palisade.local/ns/shop/sa/orders";
const BILLING: &str = "spiffe://palisade.local/ns/shop/sa/billing";
const ADMIN: &str = "spiffe://palisade.local/ns/ops/sa/admin";
const FOREIGN: &str = "spiffe://other.org/ns/shop/sa/orders";

const PAYMENTS: &str = r#"
apiVersion: palisade.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: payments
  namespace: shop
spec:
  targetService: payments
  rules:
    - name: orders-charges
      action: allow
      callers:
        - spiffeId: spiffe://palisade.local/ns/shop/sa/orders
      routes:
        - methods: [POST]
          paths: ["/v1/charges"]
        - methods: [GET]
          paths: ["/v1/charges/{id}"]
    - name: ops-read-anything
      action: allow
      callers:
        - namespace: ops
      routes:
        - methods: [GET]
    - name: billing-refunds
      action: allow
      callers:
        - namespace: shop
          serviceAccount: billing
      routes:
        - paths: ["/v1/refunds/{*rest}"]
    - name: no-internal
      action: deny
      routes:
        - paths: ["/internal/{*rest}"]
    - name: office-network
      action: allow
      callers:
        - cidr: 192.168.0.0/16
      routes:
        - methods: [GET]
          paths: ["/health"]
"#;

#[test]
fn routes_callers_and_precedence() {
    let p = compile(PAYMENTS);
    let cases: &[(&str, Req<'_>, bool, &str, Reason)] = &[
        (
            "exact id, exact path",
            req(ORDERS, "POST", "/v1/charges"),
            true,
            "orders-charges",
            Reason::AllowRuleMatched,
        ),
        (
            "exact id, param path",
            req(ORDERS, "GET", "/v1/charges/ch_123"),
            true,
            "orders-charges",
            Reason::AllowRuleMatched,
        ),
        (
            "query string is ignored",
            req(ORDERS, "GET", "/v1/charges/ch_1?expand=x"),
            true,
            "orders-charges",
            Reason::AllowRuleMatched,
        ),
        (
            "method not in route",
            req(ORDERS, "DELETE", "/v1/charges/ch_1"),
            false,
            "default",
            Reason::NotAllowedByPolicy,
        ),
        (
            "method of the other route",
            req(ORDERS, "GET", "/v1/charges"),
            false,
            "default",
            Reason::NotAllowedByPolicy,
        ),
        (
            "param needs a segment",
            req(ORDERS, "GET", "/v1/charges/"),
            false,
            "default",
            Reason::NotAllowedByPolicy,
        ),
        (
            "param is one segment",
            req(ORDERS, "GET", "/v1/charges/a/b"),
            false,
            "default",
            Reason::NotAllowedByPolicy,
        ),
        (
            "trailing slash differs",
            req(ORDERS, "POST", "/v1/charges/"),
            false,
            "default",
            Reason::NotAllowedByPolicy,
        ),
        (
            "other caller",
            req(BILLING, "POST", "/v1/charges"),
            false,
            "default",
            Reason::NotAllowedByPolicy,
        ),
        (
            "same path, other trust domain",
            req(FOREIGN, "POST", "/v1/charges"),
            false,
            "default",
            Reason::NotAllowedByPolicy,
        ),
        (
            "namespace, any path with GET",
            req(ADMIN, "GET", "/anything/at/all"),
            true,
            "ops-read-anything",
            Reason::AllowRuleMatched,
        ),
        (
            "namespace, not POST",
            req(ADMIN, "POST", "/v1/charges"),
            false,
            "default",
            Reason::NotAllowedByPolicy,
        ),
        (
            "namespace + service account, catch-all",
            req(BILLING, "PUT", "/v1/refunds/r1/items/2"),
            true,
            "billing-refunds",
            Reason::AllowRuleMatched,
        ),
        (
            "catch-all matches an empty rest",
            req(BILLING, "PUT", "/v1/refunds/"),
            true,
            "billing-refunds",
            Reason::AllowRuleMatched,
        ),
        (
            "catch-all needs its slash",
            req(BILLING, "PUT", "/v1/refunds"),
            false,
            "default",
            Reason::NotAllowedByPolicy,
        ),
        (
            "service account of another namespace",
            req(
                "spiffe://palisade.local/ns/other/sa/billing",
                "PUT",
                "/v1/refunds/x",
            ),
            false,
            "default",
            Reason::NotAllowedByPolicy,
        ),
        (
            "deny wins over an allow on the same path",
            req(ADMIN, "GET", "/internal/metrics"),
            false,
            "no-internal",
            Reason::DenyRuleMatched,
        ),
        (
            "deny without callers denies everyone",
            req(ORDERS, "POST", "/internal/x"),
            false,
            "no-internal",
            Reason::DenyRuleMatched,
        ),
        (
            "ambiguous paths are refused",
            req(ADMIN, "GET", "/v1/../internal/x"),
            false,
            "default",
            Reason::AmbiguousPath,
        ),
        (
            "encoded letter cannot dodge a deny",
            req(ADMIN, "GET", "/%69nternal/metrics"),
            false,
            "default",
            Reason::AmbiguousPath,
        ),
        (
            "encoded slash is refused",
            req(ADMIN, "GET", "/internal%2fx"),
            false,
            "default",
            Reason::AmbiguousPath,
        ),
    ];
    for (what, r, allowed, by, reason) in cases {
        let d = decide(&p, r);
        assert_eq!(d.allowed, *allowed, "{what}: {d}");
        assert_eq!(decider(&d.decided_by), *by, "{what}: {d}");
        assert_eq!(d.reason, *reason, "{what}: {d}");
        assert!(
            d.audit.is_none(),
            "{what}: no audit rules, no audit verdict"
        );
    }
}

#[test]
fn cidrs_match_the_peer_address() {
    let p = compile(PAYMENTS);
    let inside = Req {
        ip: "192.168.7.9",
        ..req(BILLING, "GET", "/health")
    };
    let outside = Req {
        ip: "10.0.0.1",
        ..req(BILLING, "GET", "/health")
    };
    let v6 = Req {
        ip: "::1",
        ..req(BILLING, "GET", "/health")
    };
    let unauthenticated = Req {
        from: None,
        ip: "192.168.7.9",
        ..req(BILLING, "GET", "/health")
    };
    assert!(decide(&p, &inside).allowed);
    assert!(!decide(&p, &outside).allowed);
    assert!(!decide(&p, &v6).allowed);
    // A CIDR alone names callers by address, with or without an SVID.
    assert!(decide(&p, &unauthenticated).allowed);
}

#[test]
fn wildcards_and_authentication_flags() {
    let p = compile(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: w, namespace: shop}
spec:
  targetService: payments
  rules:
    - name: shop-wildcard
      action: allow
      callers: ["spiffe://palisade.local/ns/shop/sa/*"]
      routes: [{paths: ["/shop"]}]
    - name: anyone-with-svid
      action: allow
      callers: [{authenticated: true}]
      routes: [{paths: ["/mesh"]}]
    - name: plaintext
      action: allow
      callers: [{unauthenticated: true}]
      routes: [{paths: ["/public"]}]
    - name: implicit-callers
      action: allow
      routes: [{paths: ["/implicit"]}]
"#,
    );
    let cases: &[(&str, Option<&str>, &str, bool)] = &[
        ("wildcard sa", Some(ORDERS), "/shop", true),
        ("wildcard other ns", Some(ADMIN), "/shop", false),
        ("wildcard other td", Some(FOREIGN), "/shop", false),
        ("authenticated any td", Some(FOREIGN), "/mesh", true),
        ("authenticated needs svid", None, "/mesh", false),
        ("unauthenticated only", None, "/public", true),
        (
            "unauthenticated excludes svid holders",
            Some(ORDERS),
            "/public",
            false,
        ),
        (
            "omitted callers on allow: any svid",
            Some(ADMIN),
            "/implicit",
            true,
        ),
        (
            "omitted callers on allow: not plaintext",
            None,
            "/implicit",
            false,
        ),
    ];
    for (what, from, path, allowed) in cases {
        let d = decide(
            &p,
            &Req {
                from: *from,
                ..req(ORDERS, "GET", path)
            },
        );
        assert_eq!(d.allowed, *allowed, "{what}: {d}");
    }
}

#[test]
fn headers_exact_present_and_regex() {
    let p = compile(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: h, namespace: shop}
spec:
  targetService: payments
  rules:
    - name: tenant-acme
      action: allow
      callers: [{namespace: shop}]
      headers:
        - {name: x-tenant, exact: acme}
        - {name: x-request-id, regex: "[0-9a-f]{8}"}
    - name: no-debug
      action: deny
      headers: [{name: x-debug, present: true}]
"#,
    );
    let ok: &[(&str, &str)] = &[("x-tenant", "acme"), ("x-request-id", "0123abcd")];
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool, &'a str);
    let cases: &[Case<'_>] = &[
        ("all conditions hold", ok, true, "tenant-acme"),
        (
            "wrong value",
            &[("x-tenant", "evil"), ("x-request-id", "0123abcd")],
            false,
            "default",
        ),
        (
            "regex is anchored",
            &[("x-tenant", "acme"), ("x-request-id", "0123abcdX")],
            false,
            "default",
        ),
        ("missing header", &[("x-tenant", "acme")], false, "default"),
        (
            "repeated header: every value must match an allow",
            &[
                ("x-tenant", "acme"),
                ("x-tenant", "evil"),
                ("x-request-id", "0123abcd"),
            ],
            false,
            "default",
        ),
        (
            "present triggers deny",
            &[
                ("x-tenant", "acme"),
                ("x-request-id", "0123abcd"),
                ("x-debug", "1"),
            ],
            false,
            "no-debug",
        ),
        (
            "header names are case-insensitive",
            &[("X-Tenant", "acme"), ("X-Request-Id", "0123abcd")],
            true,
            "tenant-acme",
        ),
    ];
    for (what, headers, allowed, by) in cases {
        let d = decide(
            &p,
            &Req {
                headers,
                ..req(ORDERS, "GET", "/")
            },
        );
        assert_eq!(d.allowed, *allowed, "{what}: {d}");
        assert_eq!(decider(&d.decided_by), *by, "{what}: {d}");
    }
}

#[test]
fn repeated_header_matches_a_deny_with_any_value() {
    let p = compile(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: h, namespace: shop}
spec:
  targetService: payments
  rules:
    - {name: all, action: allow, callers: [{namespace: shop}]}
    - {name: no-evil, action: deny, headers: [{name: x-tenant, exact: evil}]}
"#,
    );
    let d = decide(
        &p,
        &Req {
            headers: &[("x-tenant", "acme"), ("x-tenant", "evil")],
            ..req(ORDERS, "GET", "/")
        },
    );
    assert!(!d.allowed, "{d}");
    assert_eq!(decider(&d.decided_by), "no-evil");
}

#[test]
fn defaults_without_policy() {
    let none =
        PolicySet::default().compile_service(&TrustDomain::new(TD).unwrap(), "shop", "payments");
    let cases: &[(&str, Option<&str>, bool, Reason)] = &[
        (
            "mesh identity",
            Some(ORDERS),
            true,
            Reason::DefaultAllowAuthenticated,
        ),
        (
            "other trust domain",
            Some(FOREIGN),
            false,
            Reason::DefaultDenyForeignTrustDomain,
        ),
        (
            "no identity",
            None,
            false,
            Reason::DefaultDenyUnauthenticated,
        ),
    ];
    for (what, from, allowed, reason) in cases {
        let d = decide(
            &none,
            &Req {
                from: *from,
                ..req(ORDERS, "GET", "/v1/../odd")
            },
        );
        assert_eq!(d.allowed, *allowed, "{what}: {d}");
        assert_eq!(d.reason, *reason, "{what}");
        assert_eq!(d.decided_by, DecidedBy::Default);
    }
    // A policy for another service does not affect this one.
    let other = compile(&PAYMENTS.replace("targetService: payments", "targetService: ledger"));
    assert_eq!(
        decide(&other, &req(BILLING, "GET", "/x")).reason,
        Reason::DefaultAllowAuthenticated
    );
}

#[test]
fn mesh_default_deny() {
    let mesh = "apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec: {defaultAction: deny}\n";
    let p = compile(mesh);
    let d = decide(&p, &req(ORDERS, "GET", "/"));
    assert!(!d.allowed);
    assert_eq!(d.reason, Reason::MeshDefaultDeny);
    // With a policy, the policy decides whatever the mesh default.
    let p = compile(&format!("{mesh}---\n{PAYMENTS}"));
    assert!(decide(&p, &req(ORDERS, "POST", "/v1/charges")).allowed);
    assert_eq!(
        decide(&p, &req(ORDERS, "GET", "/x")).reason,
        Reason::NotAllowedByPolicy
    );
}

#[test]
fn mesh_default_allow_all_admits_plaintext_callers() {
    let p = compile("apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec: {defaultAction: allowAll}\n");
    for from in [None, Some(FOREIGN), Some(ORDERS)] {
        let d = decide(
            &p,
            &Req {
                from,
                ..req(ORDERS, "GET", "/")
            },
        );
        assert!(d.allowed, "{d}");
        assert_eq!(d.reason, Reason::DefaultAllowAll);
    }
}

#[test]
fn audit_mode_per_rule() {
    let p = compile(
        r#"
apiVersion: palisade.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: a, namespace: shop}
spec:
  targetService: payments
  rules:
    - {name: shop, action: allow, callers: [{namespace: shop}]}
    - {name: trial-deny-billing, action: deny, mode: audit, callers: ["spiffe://palisade.local/ns/shop/sa/billing"]}
    - {name: trial-allow-ops, action: allow, mode: audit, callers: [{namespace: ops}]}
"#,
    );
    // An audit deny does not deny, but says it would have.
    let d = decide(&p, &req(BILLING, "GET", "/"));
    assert!(d.allowed, "{d}");
    assert_eq!(decider(&d.decided_by), "shop");
    let audit = d.audit.expect("audit verdict");
    assert!(!audit.allowed);
    assert_eq!(decider(&audit.decided_by), "trial-deny-billing");
    assert!(d.audit_disagrees());
    // An audit allow does not allow.
    let d = decide(&p, &req(ADMIN, "GET", "/"));
    assert!(!d.allowed, "{d}");
    assert_eq!(d.reason, Reason::NotAllowedByPolicy);
    assert!(d.audit.is_some_and(|a| a.allowed));
    // Agreement is reported too, but is not a disagreement.
    let d = decide(&p, &req(ORDERS, "GET", "/"));
    assert!(d.allowed && !d.audit_disagrees());
}

#[test]
fn audit_mode_per_policy() {
    let audit_policy = PAYMENTS.replace(
        "  targetService: payments\n",
        "  targetService: payments\n  mode: audit\n",
    );
    let p = compile(&audit_policy);
    // Nothing is enforced: the service behaves as if it had no policy...
    let d = decide(&p, &req(BILLING, "POST", "/v1/charges"));
    assert!(d.allowed, "{d}");
    assert_eq!(d.reason, Reason::DefaultAllowAuthenticated);
    // ...while the audit verdict is what the policy would do, default deny included.
    let audit = d.audit.expect("audit verdict");
    assert!(!audit.allowed);
    assert_eq!(audit.reason, Reason::NotAllowedByPolicy);
    let d = decide(&p, &req(ORDERS, "POST", "/v1/charges"));
    assert!(d.allowed && d.audit.is_some_and(|a| a.allowed) && !d.audit_disagrees());
    let d = decide(&p, &req(ADMIN, "GET", "/internal/x"));
    assert!(d.allowed);
    assert!(d.audit.is_some_and(|a| a.reason == Reason::DenyRuleMatched));
}

#[test]
fn first_rule_by_policy_name_decides_whatever_the_file_order() {
    let two = |first: &str, second: &str| {
        format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: {first}, namespace: shop}}\nspec:\n  targetService: payments\n  rules: [{{name: r-{first}, action: allow}}]\n---\napiVersion: palisade.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: {second}, namespace: shop}}\nspec:\n  targetService: payments\n  rules: [{{name: r-{second}, action: allow}}]\n"
        )
    };
    for yaml in [two("aaa", "bbb"), two("bbb", "aaa")] {
        let p = compile(&yaml);
        let d = decide(&p, &req(ORDERS, "GET", "/"));
        assert_eq!(decider(&d.decided_by), "r-aaa");
    }
}

#[test]
fn empty_rules_deny_everyone() {
    let p = compile("apiVersion: palisade.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: lock, namespace: shop}\nspec: {targetService: payments, rules: []}\n");
    let d = decide(&p, &req(ORDERS, "GET", "/"));
    assert!(!d.allowed);
    assert_eq!(d.reason, Reason::NotAllowedByPolicy);
}

#[test]
fn decisions_name_the_rule_and_its_source() {
    let p = compile(PAYMENTS);
    let d = decide(&p, &req(ORDERS, "GET", "/v1/charges/1"));
    let DecidedBy::Rule(rule) = d.decided_by else {
        panic!("{d}")
    };
    assert_eq!(
        (rule.namespace, rule.policy, rule.index),
        ("shop", "payments", 0)
    );
    let source = rule.source.expect("source");
    assert_eq!((source.file.as_str(), source.line), ("test.yaml", 10));
    assert_eq!(
        d.to_string(),
        "allow by rule shop/payments rules[0] (orders-charges) at test.yaml:10: an allow rule matched the caller and route, and no deny rule did"
    );
}

#[test]
fn compiled_policy_travels_as_json() {
    let set = PolicySet::from_sources([("test.yaml", PAYMENTS)]).unwrap();
    let json = serde_json::to_string(&set.policies).unwrap();
    let back: Vec<palisade_api::policy::AuthorizationPolicy> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, set.policies);
    // The wire is checked like a file: a bad pattern does not deserialize.
    let broken = json.replace("/v1/charges/{id}", "/v1/charges/{id");
    assert!(
        serde_json::from_str::<Vec<palisade_api::policy::AuthorizationPolicy>>(&broken).is_err()
    );
}
