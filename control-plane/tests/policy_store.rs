//! The policy store end to end: `--policy-dir` loaded and watched, per-service snapshots
//! on the watch stream, WAF policies, and the admin policy check endpoint.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use palisade_api::policy::DefaultAction;
use palisade_api::wire::{
    codes, ConfigSnapshot, PolicyCheckRequest, PolicyCheckResponse, PATH_ADMIN_POLICY_CHECK,
};
use palisade_control_plane::admin::client_config_from_dir;
use palisade_control_plane::client::ApiClient;
use palisade_control_plane::{RunningControlPlane, ServeError};
use palisade_waf::{Mode, WafSettings};

const MESH: &str = "\
apiVersion: palisade.dev/v1alpha1
kind: MeshConfig
metadata:
  name: mesh
spec:
  defaultAction: deny
";

fn allow_policy(name: &str, ns: &str, service: &str, caller_sa: &str) -> String {
    format!(
        "\
apiVersion: palisade.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: {name}
  namespace: {ns}
spec:
  targetService: {service}
  rules:
    - name: callers
      action: allow
      callers:
        - spiffeId: spiffe://example.org/ns/{ns}/sa/{caller_sa}
      routes:
        - methods: [POST]
          paths: [\"/v1/charges\"]
"
    )
}

const WAF: &str = "\
apiVersion: palisade.dev/v1alpha1
kind: WafPolicy
metadata:
  name: payments-waf
  namespace: shop
spec:
  targetService: payments
  mode: detect
  paranoia: 2
  exclusions:
    - rules: [4201]
      args: [note]
";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// A policy directory: mesh default deny; shop/payments callable by orders; shop/orders
/// callable by web; other/payments callable by batch; a WafPolicy for shop/payments.
fn policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "mesh.yaml", MESH);
    write(
        dir.path(),
        "payments.yaml",
        &allow_policy("payments-callers", "shop", "payments", "orders"),
    );
    write(
        dir.path(),
        "orders.yaml",
        &allow_policy("orders-callers", "shop", "orders", "web"),
    );
    write(
        dir.path(),
        "other.yaml",
        &allow_policy("payments-callers", "other", "payments", "batch"),
    );
    write(dir.path(), "waf.yaml", WAF);
    dir
}

async fn start_with_policy(data: &Path, policies: &Path) -> RunningControlPlane {
    let mut cfg = config(data, Duration::from_secs(3600));
    cfg.policy_dir = Some(policies.to_owned());
    cfg.keepalive = Duration::from_secs(60);
    start(cfg).await.unwrap()
}

fn policy_names(snapshot: &ConfigSnapshot) -> Vec<String> {
    let auth = snapshot
        .authorization
        .as_ref()
        .expect("authorization is always sent");
    auth.policies
        .iter()
        .map(|p| format!("{}/{}->{}", p.namespace, p.name, p.target_service))
        .collect()
}

#[tokio::test]
async fn each_watcher_receives_its_own_services_policies_only() {
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir();
    let cp = start_with_policy(data.path(), policies.path()).await;

    let payments = first_svid(&cp, "shop", "payments").await;
    let (status, mut body, driver) = open_watch(&cp, &payments, "payments").await;
    assert_eq!(status, StatusCode::OK);
    let snap = next_snapshot(&mut body, &mut Vec::new()).await;
    assert_eq!(policy_names(&snap), ["shop/payments-callers->payments"]);
    let auth = snap.authorization.as_ref().unwrap();
    assert_eq!(auth.mesh.default_action, DefaultAction::Deny);
    let waf = snap.waf.as_ref().unwrap();
    assert_eq!(
        (waf.mode, waf.paranoia, waf.threshold),
        (Mode::Detect, 2, 5)
    );
    assert_eq!(waf.exclusions[0].rules, vec![4201]);
    driver.abort();

    // Same namespace, another service: its own policy and the WAF defaults.
    let orders = first_svid(&cp, "shop", "orders").await;
    let (_, mut body, driver) = open_watch(&cp, &orders, "orders").await;
    let snap = next_snapshot(&mut body, &mut Vec::new()).await;
    assert_eq!(policy_names(&snap), ["shop/orders-callers->orders"]);
    assert_eq!(snap.waf, Some(WafSettings::default()));
    driver.abort();

    // The namespace is the SVID's: `other/payments` gets other's policy and no WAF policy.
    let other = first_svid(&cp, "other", "payments").await;
    let (_, mut body, driver) = open_watch(&cp, &other, "payments").await;
    let snap = next_snapshot(&mut body, &mut Vec::new()).await;
    assert_eq!(policy_names(&snap), ["other/payments-callers->payments"]);
    assert_eq!(snap.waf, Some(WafSettings::default()));
    driver.abort();

    // A service no policy targets gets the mesh settings and no policies.
    let ledger = first_svid(&cp, "other", "ledger").await;
    let (_, mut body, driver) = open_watch(&cp, &ledger, "ledger").await;
    let snap = next_snapshot(&mut body, &mut Vec::new()).await;
    assert!(policy_names(&snap).is_empty());
    assert_eq!(
        snap.authorization.unwrap().mesh.default_action,
        DefaultAction::Deny
    );
    driver.abort();
    cp.shutdown().await;
}

#[tokio::test]
async fn without_a_policy_dir_every_service_gets_the_defaults() {
    let data = tempfile::tempdir().unwrap();
    let cp = start_cp(data.path()).await;
    let web = first_svid(&cp, "shop", "web").await;
    let (_, mut body, driver) = open_watch(&cp, &web, "web").await;
    let snap = next_snapshot(&mut body, &mut Vec::new()).await;
    let auth = snap.authorization.unwrap();
    assert_eq!(auth.mesh.default_action, DefaultAction::AllowAuthenticated);
    assert!(auth.policies.is_empty());
    assert_eq!(snap.waf, Some(WafSettings::default()));
    driver.abort();
    let (status, _, driver) = open_watch(&cp, &web, "Web!").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    driver.abort();
    cp.shutdown().await;
}

#[tokio::test]
async fn changes_reach_an_open_watch_within_a_second_and_broken_ones_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir();
    let cp = start_with_policy(data.path(), policies.path()).await;
    let payments = first_svid(&cp, "shop", "payments").await;
    let (_, mut body, driver) = open_watch(&cp, &payments, "payments").await;
    let mut pending = Vec::new();
    let first = next_snapshot(&mut body, &mut pending).await;

    // A valid change (a second policy for shop/payments) reaches the watch within 1 s.
    let changed_at = Instant::now();
    write(
        policies.path(),
        "payments-batch.yaml",
        &allow_policy("payments-batch", "shop", "payments", "batch"),
    );
    let snap = next_snapshot(&mut body, &mut pending).await;
    assert!(
        changed_at.elapsed() < Duration::from_secs(1),
        "applied after {:?}",
        changed_at.elapsed()
    );
    assert_eq!(
        policy_names(&snap),
        [
            "shop/payments-batch->payments",
            "shop/payments-callers->payments"
        ]
    );
    // So does a WAF change.
    write(
        policies.path(),
        "waf.yaml",
        &WAF.replace("paranoia: 2", "paranoia: 3"),
    );
    let snap = next_snapshot(&mut body, &mut pending).await;
    assert_eq!(snap.waf.as_ref().unwrap().paranoia, 3);
    assert!(snap.version > first.version);

    // Broken changes: a WAF paranoia out of range and an unknown rule id; a YAML typo
    // in an authorization policy. Nothing is pushed; the last good set stays in force.
    write(
        policies.path(),
        "waf.yaml",
        &WAF.replace("paranoia: 2", "paranoia: 9")
            .replace("[4201]", "[4299999]"),
    );
    write(policies.path(), "payments-batch.yaml", "kind: [\n");
    let nothing = next_snapshot_within(&mut body, &mut pending, Duration::from_millis(1200)).await;
    assert!(nothing.is_none(), "a broken change was pushed: {nothing:?}");
    let in_force = check(
        &cp,
        &request(
            Some("spiffe://example.org/ns/shop/sa/batch"),
            "payments.shop",
            "POST",
            "/v1/charges",
        ),
    )
    .await;
    assert!(in_force.allowed, "{in_force:?}");

    // The fix applies.
    write(policies.path(), "waf.yaml", WAF);
    std::fs::remove_file(policies.path().join("payments-batch.yaml")).unwrap();
    let fixed = next_snapshot(&mut body, &mut pending).await;
    assert_eq!(policy_names(&fixed), ["shop/payments-callers->payments"]);
    assert_eq!(fixed.waf.as_ref().unwrap().paranoia, 2);
    assert!(fixed.version > snap.version);
    driver.abort();
    cp.shutdown().await;
}

#[tokio::test]
async fn a_broken_policy_dir_refuses_the_start_with_every_problem() {
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir();
    write(
        policies.path(),
        "payments.yaml",
        &allow_policy("payments-callers", "shop", "payments", "orders")
            .replace("methods: [POST]", "methods: [post]"),
    );
    write(
        policies.path(),
        "waf.yaml",
        &WAF.replace("[4201]", "[4299999]"),
    );
    let mut cfg = config(data.path(), Duration::from_secs(3600));
    cfg.policy_dir = Some(policies.path().to_owned());
    let err = start(cfg).await.unwrap_err();
    assert!(matches!(err, ServeError::Policy { .. }), "{err}");
    assert!(
        !data.path().join("bundle.pem").exists(),
        "nothing is written before the policy is checked"
    );
    let text = err.to_string();
    let payments = policies.path().join("payments.yaml").display().to_string();
    let waf = policies.path().join("waf.yaml").display().to_string();
    assert!(text.contains(&format!("{payments}:14:")), "{text}");
    assert!(text.contains("`post` is not an HTTP method"), "{text}");
    assert!(text.contains(&format!("{waf}:11:")), "{text}");
    assert!(text.contains("no WAF rule has id 4299999"), "{text}");
    assert!(text.contains("has 2 problem(s)"), "{text}");
}

fn request(from: Option<&str>, to: &str, method: &str, path: &str) -> PolicyCheckRequest {
    PolicyCheckRequest {
        from: from.map(str::to_owned),
        to: to.into(),
        method: method.into(),
        path: path.into(),
        headers: vec![],
        peer_ip: "127.0.0.1".parse().unwrap(),
    }
}

fn admin(cp: &RunningControlPlane) -> ApiClient {
    let (tls, _) = client_config_from_dir(&cp.admin_dir()).unwrap();
    ApiClient::new(&cp.url(), tls).unwrap()
}

async fn check(cp: &RunningControlPlane, request: &PolicyCheckRequest) -> PolicyCheckResponse {
    admin(cp)
        .post_json(PATH_ADMIN_POLICY_CHECK, request)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_admin_policy_check_explains_with_the_policy_in_force() {
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir();
    let cp = start_with_policy(data.path(), policies.path()).await;
    let orders = "spiffe://example.org/ns/shop/sa/orders";

    let allowed = check(
        &cp,
        &request(Some(orders), "payments.shop", "POST", "/v1/charges"),
    )
    .await;
    assert!(allowed.allowed, "{allowed:?}");
    assert_eq!(allowed.reason_code, "allow_rule");
    assert!(
        allowed
            .decided_by
            .starts_with("allow rule shop/payments-callers rules[0] (callers) at "),
        "{allowed:?}"
    );
    assert!(allowed.decided_by.contains("payments.yaml:"), "{allowed:?}");
    assert_eq!(
        (
            allowed.service.as_str(),
            allowed.namespace.as_str(),
            allowed.policies
        ),
        ("payments", "shop", 1)
    );
    assert!(allowed.policy_version > 0);
    assert_eq!(allowed.policy_version, cp.policy().version);
    assert_eq!(cp.policy().bundle.files, 5);

    let denied = check(
        &cp,
        &request(Some(orders), "payments.shop", "GET", "/v1/charges"),
    )
    .await;
    assert!(!denied.allowed);
    assert_eq!(denied.decided_by, "the default");
    assert_eq!(denied.reason_code, "not_allowed_by_policy");

    // A service without policy: the mesh default (deny here).
    let default = check(&cp, &request(Some(orders), "ledger.shop", "GET", "/")).await;
    assert!(!default.allowed);
    assert_eq!(default.reason_code, "mesh_default_deny");

    // Bad input is a clear 400.
    let bad = post(
        &admin(&cp),
        PATH_ADMIN_POLICY_CHECK,
        &request(Some("orders"), "payments", "GET", "/"),
    )
    .await;
    let msg = assert_error(&bad, StatusCode::BAD_REQUEST, codes::INVALID_ARGUMENT);
    assert!(msg.contains("not a SPIFFE ID"), "{msg}");
    let ambiguous = post(
        &admin(&cp),
        PATH_ADMIN_POLICY_CHECK,
        &request(Some(orders), "payments", "GET", "/"),
    )
    .await;
    let msg = assert_error(&ambiguous, StatusCode::BAD_REQUEST, codes::INVALID_ARGUMENT);
    assert!(msg.contains("write `payments.NAMESPACE`"), "{msg}");

    // Only the admin credential may ask.
    let body = request(Some(orders), "payments", "POST", "/v1/charges");
    let anonymous_answer = post(&anonymous(&cp), PATH_ADMIN_POLICY_CHECK, &body).await;
    assert_error(
        &anonymous_answer,
        StatusCode::UNAUTHORIZED,
        codes::ADMIN_REQUIRED,
    );
    let workload = first_svid(&cp, "shop", "orders").await;
    let workload_answer = post(&with_svid(&cp, &workload), PATH_ADMIN_POLICY_CHECK, &body).await;
    assert_error(
        &workload_answer,
        StatusCode::FORBIDDEN,
        codes::ADMIN_REQUIRED,
    );

    // palisadectl without --policy-dir asks the control plane.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_palisadectl"));
    command
        .args(["--control-plane", &cp.url(), "--admin-dir"])
        .arg(cp.admin_dir())
        .args([
            "policy",
            "check",
            "--from",
            orders,
            "--to",
            "payments.shop",
            "POST",
            "/v1/charges",
        ]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with("ALLOW\n  service:    payments.shop (1 policy(ies))\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(in force on the control plane)"),
        "{stdout}"
    );
    cp.shutdown().await;
}
