//! Replays the OWASP CRS regression corpus (`../shared/corpora/crs-regression`, not part
//! of this repository) through the engine and compares, per attack class (folder), the
//! share of attack cases we block and of benign cases we pass with the floors recorded in
//! `corpus_floors.json`. Our rule ids differ from CRS's, so a case counts by class: a
//! request CRS expects one of its rules to flag is an attack, one whose listed rule must
//! stay silent is benign. Cases judged only by status or log regex are not counted.
//!
//! Run with `cargo test -p palisade-waf --test crs_corpus -- --nocapture` to see the table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use palisade_waf::raw::{parse, OwnedRequest};
use palisade_waf::{Action, Engine, RuleSet, WafSettings};
use serde_yaml::Value;

mod common;
use common::VerdictLog;

#[derive(Default, Clone)]
struct Tally {
    attacks: usize,
    blocked: usize,
    benign: usize,
    passed: usize,
    /// Raw requests our parser refused (a real listener answers them with 400); counted
    /// as blocked attacks or failed benign cases.
    unparseable: usize,
    /// For blocked attack cases: how many each of our attack classes (rule tags) took part
    /// in, so the table shows which classes (NoSQL, deserialization, CRLF...) do the work.
    by_tag: BTreeMap<String, usize>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora/crs-regression")
}

fn floors() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus_floors.json");
    let text = std::fs::read_to_string(&path).expect("tests/corpus_floors.json is readable");
    serde_json::from_str(&text).expect("tests/corpus_floors.json is valid JSON")
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn non_empty_list(v: Option<&Value>) -> bool {
    v.and_then(Value::as_sequence)
        .is_some_and(|s| !s.is_empty())
}

/// Builds the request of one stage; `Err` when the stage holds an unparseable raw request.
fn request_of(input: &Value) -> Result<OwnedRequest, String> {
    if let Some(enc) = str_of(input, "encoded_request") {
        let cleaned: String = enc.chars().filter(|c| !c.is_whitespace()).collect();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(cleaned)
            .map_err(|e| e.to_string())?;
        return parse(&raw).map_err(|e| e.to_string());
    }
    let mut req = OwnedRequest {
        method: str_of(input, "method").unwrap_or("GET").to_string(),
        target: str_of(input, "uri").unwrap_or("/").to_string(),
        ..OwnedRequest::default()
    };
    if let Some(map) = input.get("headers").and_then(Value::as_mapping) {
        for (k, v) in map {
            let name = k.as_str().unwrap_or_default().to_string();
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => String::new(),
            };
            req.headers.push((name, value.into_bytes()));
        }
    }
    if let Some(data) = input.get("data") {
        req.body = match data {
            Value::String(s) => s.clone().into_bytes(),
            Value::Sequence(lines) => lines
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\r\n")
                .into_bytes(),
            _ => Vec::new(),
        };
    }
    // The proxy's HTTP stack removes chunked framing before the WAF sees a body; a replay
    // must do the same (CRS 920181 sends `7\r\nfoo=bar\r\n0\r\n\r\n`).
    let chunked = req.headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(v)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    if chunked {
        if let Some(body) = dechunk(&req.body) {
            req.body = body;
        }
    }
    Ok(req)
}

/// The payload of a chunked body, or `None` when the framing is malformed (the request
/// is then replayed as sent).
fn dechunk(mut framed: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = framed.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&framed[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        framed = &framed[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(framed.get(..size)?);
        framed = framed.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

/// `CRS_DUMP=<folder substring>` prints that class's missed attacks and blocked benign
/// cases, to study what the rules miss (never to copy corpus strings into rules).
fn dump_filter() -> Option<String> {
    std::env::var("CRS_DUMP").ok().filter(|s| !s.is_empty())
}

/// Headers every CRS test sends alike; the dump leaves them out so the header under test
/// stands out.
fn usual_header(name: &str, value: &[u8]) -> bool {
    match name.to_ascii_lowercase().as_str() {
        "host" | "accept" | "accept-encoding" | "accept-language" | "connection"
        | "content-length" => true,
        "user-agent" => value == b"OWASP CRS test agent",
        _ => false,
    }
}

fn replay(engine: &Engine, paranoia: u8, verdicts: &mut VerdictLog) -> BTreeMap<String, Tally> {
    let dump = dump_filter();
    let settings = WafSettings::default().with_paranoia(paranoia);
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut folders: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("corpus dir readable")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("REQUEST-"))
        })
        .collect();
    folders.sort();
    for folder in folders {
        let class = folder
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let tally = tallies.entry(class).or_default();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .expect("folder readable")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let Ok(doc) = serde_yaml::from_str::<Value>(&text) else {
                continue;
            };
            let tests = doc
                .get("tests")
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default();
            for test in &tests {
                let stages = test
                    .get("stages")
                    .and_then(Value::as_sequence)
                    .cloned()
                    .unwrap_or_default();
                for (stage_index, stage) in stages.iter().enumerate() {
                    // Older go-ftw files nest `input`/`output` under `stage`.
                    let stage = stage.get("stage").unwrap_or(stage);
                    let (Some(input), Some(output)) = (stage.get("input"), stage.get("output"))
                    else {
                        continue;
                    };
                    let log = output.get("log");
                    let attack = non_empty_list(log.and_then(|l| l.get("expect_ids")));
                    let benign =
                        !attack && non_empty_list(log.and_then(|l| l.get("no_expect_ids")));
                    if !attack && !benign {
                        continue;
                    }
                    let blocked = match request_of(input) {
                        Ok(req) => {
                            let v = engine.inspect(&req.view(), &settings, None);
                            verdicts.record(
                                paranoia,
                                &format!(
                                    "{}#{}/{stage_index}",
                                    file.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
                                    test.get("test_id")
                                        .map(|t| format!("{t:?}"))
                                        .unwrap_or_default()
                                ),
                                &v,
                            );
                            let blocked = v.action == Action::Block;
                            if blocked && attack {
                                let mut tags: Vec<&str> = v
                                    .matches
                                    .iter()
                                    .flat_map(|m| m.tags.iter().map(String::as_str))
                                    .collect();
                                tags.sort_unstable();
                                tags.dedup();
                                for t in tags {
                                    *tally.by_tag.entry(t.to_string()).or_default() += 1;
                                }
                            }
                            if paranoia == 1
                                && blocked != attack
                                && dump
                                    .as_deref()
                                    .is_some_and(|d| folder.to_string_lossy().contains(d))
                            {
                                let unusual: Vec<String> = req
                                    .headers
                                    .iter()
                                    .filter(|(n, v)| !usual_header(n, v))
                                    .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v)))
                                    .collect();
                                println!(
                                    "{} {} {}: {} {:?} headers {:?} body {:?} -> {:?}",
                                    if attack { "MISS" } else { "FP" },
                                    file.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
                                    test.get("test_id")
                                        .map(|t| format!("{t:?}"))
                                        .unwrap_or_default(),
                                    req.method,
                                    req.target,
                                    unusual,
                                    String::from_utf8_lossy(&req.body)
                                        .chars()
                                        .take(160)
                                        .collect::<String>(),
                                    v.matches
                                        .iter()
                                        .map(|m| (m.rule_id, m.target.clone(), m.fragment.clone()))
                                        .collect::<Vec<_>>()
                                );
                            }
                            blocked
                        }
                        Err(_) => {
                            tally.unparseable += 1;
                            true
                        }
                    };
                    if attack {
                        tally.attacks += 1;
                        tally.blocked += usize::from(blocked);
                    } else {
                        tally.benign += 1;
                        tally.passed += usize::from(!blocked);
                    }
                }
            }
        }
    }
    tallies
}

fn share(n: usize, d: usize) -> f64 {
    if d == 0 {
        1.0
    } else {
        n as f64 / d as f64
    }
}

#[test]
fn crs_corpus_meets_floors() {
    if !corpus_dir().is_dir() {
        println!(
            "NOTICE: {} is absent; CRS corpus test skipped",
            corpus_dir().display()
        );
        return;
    }
    let engine = Engine::new(RuleSet::embedded().expect("embedded rules compile"));
    let floors = floors();
    let mut failures = Vec::new();
    let mut verdicts = VerdictLog::new("crs_corpus");
    for paranoia in [1u8, 2] {
        let tallies = replay(&engine, paranoia, &mut verdicts);
        println!("\nCRS regression corpus at paranoia {paranoia}");
        println!(
            "{:<44} {:>16} {:>16} {:>6}",
            "class (folder)", "attacks blocked", "benign passed", "unparseable"
        );
        let (mut ta, mut tb, mut tn, mut tp) = (0, 0, 0, 0);
        for (class, t) in &tallies {
            ta += t.attacks;
            tb += t.blocked;
            tn += t.benign;
            tp += t.passed;
            let detect = share(t.blocked, t.attacks);
            let pass = share(t.passed, t.benign);
            println!(
                "{:<44} {:>5}/{:<5} {:>4.0}% {:>5}/{:<5} {:>4.0}% {:>6}",
                class,
                t.blocked,
                t.attacks,
                detect * 100.0,
                t.passed,
                t.benign,
                pass * 100.0,
                t.unparseable
            );
            if !t.by_tag.is_empty() {
                let classes: Vec<String> =
                    t.by_tag.iter().map(|(k, n)| format!("{k} {n}")).collect();
                println!("    blocked by class: {}", classes.join(", "));
            }
            let floor = &floors["crs"][paranoia.to_string()][class];
            for (what, got) in [("attacks_blocked", detect), ("benign_passed", pass)] {
                let min = floor[what].as_f64().unwrap_or(0.0);
                if got + 1e-9 < min {
                    failures.push(format!(
                        "paranoia {paranoia} {class}: {what} {:.3} is below the floor {min:.3}",
                        got
                    ));
                }
            }
        }
        println!(
            "{:<44} {:>5}/{:<5} {:>4.0}% {:>5}/{:<5} {:>4.0}%",
            "all",
            tb,
            ta,
            share(tb, ta) * 100.0,
            tp,
            tn,
            share(tp, tn) * 100.0
        );
    }
    assert!(
        failures.is_empty(),
        "corpus floors not met:\n{}",
        failures.join("\n")
    );
}

#[test]
fn chunked_replays_are_unframed_like_the_proxy_does() {
    assert_eq!(
        dechunk(b"7\r\nfoo=bar\r\n3;ext=1\r\n&a=\r\n0\r\n\r\n").as_deref(),
        Some(&b"foo=bar&a="[..])
    );
    assert_eq!(dechunk(b"7\r\nfoo\r\n0\r\n\r\n"), None);
    assert_eq!(dechunk(b"zz\r\n"), None);
}
