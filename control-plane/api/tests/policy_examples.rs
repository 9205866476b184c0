//! The worked examples in `deploy/local/policies/` are valid and do what `docs/policy.md`
//! says they do.

use std::net::IpAddr;
use std::path::Path;

use palisade_api::policy::{DefaultAction, PolicySet, Reason, RequestFacts};
use palisade_spiffe::{SpiffeId, TrustDomain};

fn examples() -> PolicySet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/policies");
    PolicySet::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"))
}

fn decide(
    set: &PolicySet,
    service: &str,
    from: &str,
    method: &str,
    path: &str,
) -> (bool, Reason, Option<bool>) {
    let td = TrustDomain::new("palisade.local").unwrap();
    let policy = set.compile_service(&td, "shop", service);
    let peer = SpiffeId::parse(from).unwrap();
    let ip: IpAddr = "10.1.1.1".parse().unwrap();
    let headers = http::HeaderMap::new();
    let d = policy.evaluate(&RequestFacts {
        peer: Some(&peer),
        peer_ip: ip,
        method,
        path,
        headers: &headers,
    });
    (d.allowed, d.reason, d.audit.map(|a| a.allowed))
}

#[test]
fn examples_are_valid() {
    let set = examples();
    // mesh.yaml, orders.yaml, payments.yaml and payments-waf.yaml (a WafPolicy, which
    // `PolicySet` leaves to `parse_waf_file`).
    assert_eq!(set.files, 4);
    assert_eq!(set.policies.len(), 3);
    assert_eq!(set.mesh.default_action, DefaultAction::AllowAuthenticated);
}

#[test]
fn payments_admits_orders_only() {
    let set = examples();
    let orders = "spiffe://palisade.local/ns/shop/sa/orders";
    let billing = "spiffe://palisade.local/ns/shop/sa/billing";
    assert!(decide(&set, "payments", orders, "POST", "/v1/charges").0);
    assert!(decide(&set, "payments", orders, "GET", "/v1/charges/ch_1").0);
    assert_eq!(
        decide(&set, "payments", orders, "DELETE", "/v1/charges/ch_1").1,
        Reason::NotAllowedByPolicy
    );
    assert_eq!(
        decide(&set, "payments", billing, "POST", "/v1/charges").1,
        Reason::NotAllowedByPolicy
    );
    // The refund rule is in audit mode: denied today, logged as "would allow".
    assert_eq!(
        decide(&set, "payments", billing, "POST", "/v1/charges/ch_1/refund"),
        (false, Reason::NotAllowedByPolicy, Some(true))
    );
    assert_eq!(
        decide(&set, "payments", orders, "GET", "/admin/users").1,
        Reason::DenyRuleMatched
    );
}

#[test]
fn catalog_policy_is_rolled_out_in_audit_mode() {
    let set = examples();
    let web = "spiffe://palisade.local/ns/web/sa/frontend";
    assert_eq!(
        decide(&set, "catalog", web, "GET", "/v1/items"),
        (true, Reason::DefaultAllowAuthenticated, Some(false))
    );
    let shop = "spiffe://palisade.local/ns/shop/sa/search";
    assert_eq!(
        decide(&set, "catalog", shop, "GET", "/v1/items").2,
        Some(true)
    );
}

#[test]
fn the_waf_example_is_valid() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/policies/payments-waf.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let rules = palisade_waf::RuleSet::embedded().unwrap();
    let known = palisade_api::policy::KnownRules::from_rule_set(&rules);
    let (policies, problems) =
        palisade_api::policy::parse_waf_file("payments-waf.yaml", &text, &known);
    assert!(problems.is_empty(), "{problems:?}");
    let settings = &policies[0].settings;
    assert_eq!(
        (
            policies[0].namespace.as_str(),
            policies[0].target_service.as_str()
        ),
        ("shop", "payments")
    );
    assert_eq!(settings.exclusions[0].rules, vec![4206]);
    let refund = &settings.routes["/v1/charges/{id}/refund"];
    assert_eq!((refund.mode, refund.paranoia), (None, Some(2)));
}
