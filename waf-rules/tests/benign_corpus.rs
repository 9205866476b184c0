//! False positives on the project's own benign corpus (`tests/benign/`): prose with
//! apostrophes and SQL words, code and Markdown, URLs, e-mail addresses, paths, GraphQL,
//! JWTs and base64, non-English text and API-style JSON documents. Each text value is
//! sent as a query argument, a form field and a JSON field; each document as a JSON body.
//! The test fails when the share of blocked requests exceeds the ceiling recorded in
//! `corpus_floors.json` (`benign_fp_max`).

use std::path::Path;

use palisade_waf::{Action, Engine, Request, RuleSet, WafSettings};

mod common;
use common::VerdictLog;

fn benign_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/benign")
}

fn read_lines(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(benign_dir().join(name)).expect("benign corpus file");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.replace("\\n", "\n"))
        .collect()
}

fn form_encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// (description, method, target, content type, body)
type Case = (String, &'static str, String, &'static str, Vec<u8>);

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for file in [
        "prose.txt",
        "technical.txt",
        "tokens.txt",
        "more.txt",
        "graphql.txt",
        "international.txt",
    ] {
        for value in read_lines(file) {
            let enc = form_encode(&value);
            cases.push((
                format!("query {value:?}"),
                "GET",
                format!("/search?q={enc}&page=1"),
                "",
                Vec::new(),
            ));
            cases.push((
                format!("form {value:?}"),
                "POST",
                "/comments".into(),
                "application/x-www-form-urlencoded",
                format!("author=ana&comment={enc}").into_bytes(),
            ));
            let json = serde_json::json!({ "author": "ana", "text": value });
            cases.push((
                format!("json {value:?}"),
                "POST",
                "/api/notes".into(),
                "application/json",
                json.to_string().into_bytes(),
            ));
        }
    }
    for doc in read_lines("documents.jsonl") {
        cases.push((
            format!("document {doc}"),
            "POST",
            "/api/v1/items".into(),
            "application/json",
            doc.clone().into_bytes(),
        ));
    }
    cases
}

fn ceiling(paranoia: u8) -> f64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus_floors.json");
    let floors: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("floors file"))
            .expect("floors JSON");
    floors["benign_fp_max"][paranoia.to_string()]
        .as_f64()
        .expect("benign_fp_max has an entry for this paranoia level")
}

#[test]
fn benign_corpus_false_positive_rate() {
    let engine = Engine::new(RuleSet::embedded().expect("embedded rules compile"));
    let cases = cases();
    assert!(
        cases.len() > 500,
        "benign corpus too small: {}",
        cases.len()
    );
    let mut failures = Vec::new();
    let mut log = VerdictLog::new("benign_corpus");
    for paranoia in [1u8, 2] {
        let settings = WafSettings::default().with_paranoia(paranoia);
        let mut blocked = 0;
        for (index, (what, method, target, ct, body)) in cases.iter().enumerate() {
            let mut req = Request::new(method, target)
                .header("host", b"app.example.com")
                .header(
                    "user-agent",
                    b"Mozilla/5.0 (X11; Linux x86_64) Firefox/124.0",
                )
                .body(body);
            if !ct.is_empty() {
                req = req.header("content-type", ct.as_bytes());
            }
            let v = engine.inspect(&req, &settings, None);
            log.record(paranoia, &index.to_string(), &v);
            if v.action == Action::Block {
                blocked += 1;
                let why: Vec<_> = v
                    .matches
                    .iter()
                    .map(|m| (m.rule_id, m.target.as_str(), m.fragment.as_str()))
                    .collect();
                println!("FP at paranoia {paranoia}: {what} -> {why:?}");
            }
        }
        let rate = blocked as f64 / cases.len() as f64;
        let max = ceiling(paranoia);
        println!(
            "benign corpus, paranoia {paranoia}: {blocked}/{} requests blocked ({:.2}%), ceiling {:.2}%",
            cases.len(),
            rate * 100.0,
            max * 100.0
        );
        if rate > max + 1e-9 {
            failures.push(format!(
                "paranoia {paranoia}: false-positive rate {rate:.4} above {max:.4}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
