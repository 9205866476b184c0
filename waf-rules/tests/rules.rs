//! The base rule set: it compiles, every rule's own examples hold, and the files on disk
//! are the ones embedded in the binary.

use palisade_waf::RuleSet;

#[test]
fn embedded_rules_compile_and_examples_hold() {
    let set = RuleSet::embedded().expect("embedded rules compile");
    assert!(set.len() >= 30, "only {} rules", set.len());
    let failures = set.check_examples();
    let report: Vec<String> = failures.iter().map(ToString::to_string).collect();
    assert!(
        report.is_empty(),
        "rule examples disagree:\n{}",
        report.join("\n")
    );
}

#[test]
fn rules_dir_matches_embedded_set() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
    let from_dir = RuleSet::load_dir(dir).expect("rules dir loads");
    let embedded = RuleSet::embedded().expect("embedded rules compile");
    let ids = |s: &RuleSet| {
        let mut v: Vec<u32> = s.rules().iter().map(|r| r.id).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(
        ids(&from_dir),
        ids(&embedded),
        "a file in rules/ is not embedded (ruleset.rs)"
    );
}

#[test]
fn every_rule_has_examples_and_a_tag() {
    let set = RuleSet::embedded().expect("embedded rules compile");
    for r in set.rules() {
        assert!(!r.tags.is_empty(), "rule {} has no tag", r.id);
    }
}

#[test]
fn broken_rule_dir_is_refused_with_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "rules:\n  - id: 5\n    message: x\n    severity: critical\n    targets: [args]\n    operator: {regex: '[unclosed'}\n",
    )
    .expect("write");
    let err = RuleSet::load_dir(dir.path())
        .expect_err("bad regex refused")
        .to_string();
    assert!(
        err.contains("bad.yaml:2: rule 5: field `operator.regex`"),
        "{err}"
    );
    let empty = tempfile::tempdir().expect("tempdir");
    let err = RuleSet::load_dir(empty.path())
        .expect_err("empty dir refused")
        .to_string();
    assert!(err.contains("no rule files"), "{err}");
}
