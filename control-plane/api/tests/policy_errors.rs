//! Broken policy files: every kind of problem is reported at the right file, line, column
//! and field, with a hint.

use palisade_api::policy::{Diagnostic, PolicySet};

fn problems(files: &[(&str, &str)]) -> Vec<Diagnostic> {
    match PolicySet::from_sources(files.iter().copied()) {
        Ok(set) => panic!("expected problems, got {set:?}"),
        Err(d) => d.0,
    }
}

fn one(text: &str) -> Diagnostic {
    let mut all = problems(&[("p.yaml", text)]);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

const HEAD: &str = "apiVersion: palisade.dev/v1alpha1
kind: AuthorizationPolicy
metadata:
  name: payments
  namespace: shop
spec:
  targetService: payments
  rules:
";

/// A policy whose rules follow `HEAD` (rules start on line 9).
fn with_rules(rules: &str) -> String {
    format!("{HEAD}{rules}")
}

#[track_caller]
fn expect(d: &Diagnostic, line: usize, column: usize, path: &str, message: &str, hint: &str) {
    assert_eq!(
        (d.file.as_str(), d.line, d.column),
        ("p.yaml", line, column),
        "{d}"
    );
    assert_eq!(d.path, path, "{d}");
    assert!(d.message.contains(message), "message of {d}");
    assert!(
        d.hint.as_deref().unwrap_or("").contains(hint),
        "hint of {d}"
    );
}

#[test]
fn unknown_field_with_suggestion() {
    let d = one(&with_rules(
        "  - action: allow\n    calers:\n      - namespace: shop\n",
    ));
    expect(
        &d,
        10,
        5,
        "spec.rules[0]",
        "unknown field `calers`",
        "did you mean `callers`?",
    );
    assert_eq!(
        d.to_string(),
        "p.yaml:10:5: spec.rules[0]: unknown field `calers`\n    hint: did you mean `callers`?"
    );
}

#[test]
fn bad_path_pattern() {
    let d = one(&with_rules(
        "  - action: allow\n    routes:\n      - methods: [GET]\n        paths:\n          - /v1/ok\n          - /v1/{*rest}/x\n",
    ));
    expect(
        &d,
        12,
        9,
        "spec.rules[0].routes[0].paths[1]",
        "catch-all",
        "last segment",
    );
}

#[test]
fn pattern_without_leading_slash() {
    let d = one(&with_rules(
        "  - action: allow\n    routes: [{paths: [v1/charges]}]\n",
    ));
    expect(
        &d,
        10,
        5,
        "spec.rules[0].routes[0].paths[0]",
        "does not start with `/`",
        "`/v1/charges`",
    );
}

#[test]
fn bad_cidr() {
    let d = one(&with_rules(
        "  - action: allow\n    callers:\n      - cidr: 10.0.0.0/33\n",
    ));
    expect(
        &d,
        11,
        9,
        "spec.rules[0].callers[0].cidr",
        "not a CIDR",
        "prefix length",
    );
    let d = one(&with_rules(
        "  - action: allow\n    callers:\n      - cidr: 10.1.0.0/8\n",
    ));
    expect(
        &d,
        11,
        9,
        "spec.rules[0].callers[0].cidr",
        "not a CIDR",
        "did you mean `10.0.0.0/8`?",
    );
}

#[test]
fn bad_spiffe_ids() {
    let d = one(&with_rules(
        "  - action: allow\n    callers:\n      - spiffeId: spiffe://palisade.local/ns/shop/sa/orders\n      - spiffeId: spiffe://Palisade.local/ns/shop\n",
    ));
    expect(
        &d,
        12,
        9,
        "spec.rules[0].callers[1].spiffeId",
        "not a valid SPIFFE ID",
        "spiffe://",
    );
    let d = one(&with_rules(
        "  - action: allow\n    callers:\n      - spiffe://palisade.local/ns/sh*p/sa/x\n",
    ));
    expect(
        &d,
        11,
        7,
        "spec.rules[0].callers[0]",
        "inside a segment",
        "whole path segment",
    );
}

#[test]
fn unknown_api_version_and_kind() {
    let d = one("apiVersion: palisade.dev/v2\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec: {targetService: a, rules: []}\n");
    expect(
        &d,
        1,
        1,
        "apiVersion",
        "unknown apiVersion `palisade.dev/v2`",
        "palisade.dev/v1alpha1",
    );
    let d = one("apiVersion: palisade.dev/v1alpha1\nkind: AuthorisationPolicy\nmetadata: {name: a}\nspec: {}\n");
    expect(
        &d,
        2,
        1,
        "kind",
        "unknown kind",
        "did you mean `AuthorizationPolicy`?",
    );
}

#[test]
fn unknown_enum_values() {
    let d = one(&with_rules("  - action: permit\n"));
    expect(
        &d,
        9,
        5,
        "spec.rules[0].action",
        "unknown action `permit`",
        "allow, deny",
    );
    let d = one(&with_rules("  - action: allow\n    mode: audti\n"));
    expect(
        &d,
        10,
        5,
        "spec.rules[0].mode",
        "unknown mode `audti`",
        "did you mean `audit`?",
    );
}

#[test]
fn bad_methods_and_types() {
    let d = one(&with_rules(
        "  - action: allow\n    routes:\n      - methods: [get]\n",
    ));
    expect(
        &d,
        11,
        9,
        "spec.rules[0].routes[0].methods[0]",
        "`get` is not an HTTP method",
        "`GET`",
    );
    let d = one(&with_rules("  - action: allow\n    callers: shop\n"));
    expect(
        &d,
        10,
        5,
        "spec.rules[0].callers",
        "expected a list, found a string",
        "- item",
    );
    let d = one(&with_rules("  - action: allow\n    routes: []\n"));
    expect(
        &d,
        10,
        5,
        "spec.rules[0].routes",
        "empty list",
        "omit `routes`",
    );
}

#[test]
fn missing_fields_and_contradictions() {
    let d = one(&with_rules("  - name: no-action\n"));
    expect(
        &d,
        9,
        3,
        "spec.rules[0]",
        "missing field `action`",
        "action: allow",
    );
    let d = one(&with_rules(
        "  - action: allow\n    callers:\n      - serviceAccount: orders\n",
    ));
    expect(
        &d,
        11,
        9,
        "spec.rules[0].callers[0].serviceAccount",
        "without `namespace`",
        "add `namespace:`",
    );
    let d = one(&with_rules(
        "  - action: allow\n    callers:\n      - namespace: shop\n        unauthenticated: true\n",
    ));
    expect(
        &d,
        12,
        9,
        "spec.rules[0].callers[0].unauthenticated",
        "can never match",
        "of its own",
    );
    let d = one(&with_rules("  - action: allow\n    headers:\n      - name: x-a\n        exact: a\n        present: true\n"));
    expect(
        &d,
        11,
        7,
        "spec.rules[0].headers[0]",
        "exactly one of",
        "exact: acme",
    );
    let d = one(&with_rules(
        "  - action: allow\n    headers:\n      - name: x-a\n        regex: \"(\"\n",
    ));
    expect(
        &d,
        12,
        9,
        "spec.rules[0].headers[0].regex",
        "bad regex",
        "whole value",
    );
}

#[test]
fn bad_names() {
    let d = one("apiVersion: palisade.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: Payments_Policy\nspec: {targetService: payments, rules: []}\n");
    expect(&d, 4, 3, "metadata.name", "not a valid name", "lower-case");
    let d = one(&with_rules(
        "  - {name: a, action: allow}\n  - {name: a, action: deny}\n",
    ));
    // Keys inside a flow mapping (`{...}`) are located at their item.
    expect(
        &d,
        10,
        3,
        "spec.rules[1].name",
        "already used by spec.rules[0]",
        "its own name",
    );
}

#[test]
fn yaml_syntax_errors_carry_their_position() {
    let d = one("apiVersion: palisade.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: a\n   namespace: b\n");
    assert_eq!((d.file.as_str(), d.line), ("p.yaml", 5), "{d}");
    assert!(d.message.starts_with("YAML:"), "{d}");
    assert!(
        !d.message.contains(" at line "),
        "position is printed once: {d}"
    );
    let d = one(&with_rules("  - action: allow\n    action: deny\n"));
    assert!(d.message.contains("duplicate entry") && d.line >= 9, "{d}");
    assert!(
        d.hint.as_deref().unwrap_or("").contains("once per mapping"),
        "{d}"
    );
}

#[test]
fn documents_report_lines_of_their_own_file() {
    let good = "apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec: {defaultAction: deny}\n";
    let text = format!(
        "# leading comment\n{good}---\n{}",
        with_rules("  - action: allow\n    routes: [{paths: [\"/a/{b\"]}]\n")
    );
    let d = one(&text);
    // The second document starts on line 7; its rules[0].routes on line 7 + 9.
    expect(
        &d,
        16,
        5,
        "spec.rules[0].routes[0].paths[0]",
        "not a whole segment",
        "`/files/{name}`",
    );
}

#[test]
fn duplicates_across_files() {
    let policy = "apiVersion: palisade.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: payments\n  namespace: shop\nspec: {targetService: payments, rules: []}\n";
    let all = problems(&[("a.yaml", policy), ("b.yaml", &format!("\n\n{policy}"))]);
    assert_eq!(all.len(), 1, "{all:#?}");
    let d = &all[0];
    assert_eq!(
        (d.file.as_str(), d.line, d.path.as_str()),
        ("b.yaml", 6, "metadata.name")
    );
    assert!(d
        .message
        .contains("duplicate AuthorizationPolicy `payments` in namespace `shop`"));
    assert!(d.message.contains("the first is at a.yaml:4"), "{d}");
    // Same name in another namespace is another policy.
    let other_ns = policy.replace("namespace: shop", "namespace: ops");
    assert!(PolicySet::from_sources([("a.yaml", policy), ("b.yaml", other_ns.as_str())]).is_ok());
    let mesh =
        "apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec: {}\n";
    let all = problems(&[("a.yaml", mesh), ("b.yaml", mesh)]);
    assert!(all[0].message.contains("a second MeshConfig") && all[0].file == "b.yaml");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = with_rules(
        "  - action: allow\n    calers: []\n    routes:\n      - methods: [post]\n        paths: [\"/x/{*a}/b\"]\n  - action: nope\n",
    );
    let all = problems(&[("p.yaml", &text)]);
    let lines: Vec<(usize, &str)> = all.iter().map(|d| (d.line, d.path.as_str())).collect();
    assert_eq!(
        lines,
        [
            (10, "spec.rules[0]"),
            (12, "spec.rules[0].routes[0].methods[0]"),
            (13, "spec.rules[0].routes[0].paths[0]"),
            (14, "spec.rules[1].action"),
        ]
    );
}

#[test]
fn good_documents_survive_next_to_broken_ones_only_in_lint_output() {
    // A broken file refuses the whole set: the control plane keeps its last good one.
    let good =
        "apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec: {}\n";
    assert!(PolicySet::from_sources([("good.yaml", good), ("bad.yaml", "kind: [")]).is_err());
    assert!(PolicySet::from_sources([("good.yaml", good)]).is_ok());
}

#[test]
fn load_dir_reads_yaml_files_and_skips_hidden_ones() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "apiVersion: palisade.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec: {targetService: payments, rules: []}\n";
    std::fs::create_dir(dir.path().join("team")).unwrap();
    std::fs::write(dir.path().join("team/p.yaml"), policy).unwrap();
    std::fs::write(dir.path().join("README.md"), "not yaml").unwrap();
    std::fs::create_dir(dir.path().join("..data")).unwrap();
    std::fs::write(dir.path().join("..data/p.yaml"), policy).unwrap();
    let set = PolicySet::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((set.files, set.policies.len()), (1, 1));
    std::fs::write(dir.path().join("broken.yml"), "kind: AuthorizationPolicy\n").unwrap();
    let err = PolicySet::load_dir(dir.path()).unwrap_err();
    assert!(err.0[0].file.ends_with("broken.yml"), "{err}");
    let missing = PolicySet::load_dir(&dir.path().join("nope")).unwrap_err();
    assert!(missing.0[0].message.contains("cannot read the directory"));
}
