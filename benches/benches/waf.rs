//! WAF engine micro-benchmarks: benign 1 KB GET, benign 4 KB JSON POST (an order, also
//! with `charset=utf-8`, and a catalog page of English descriptions, repeated or unique),
//! a malicious request, and prefilter throughput, at paranoia 1 and 2 with the full base
//! rule set; for scale, the time to parse the JSON bodies into `serde_json::Value`; and
//! the stages of an inspection timed one at a time (`waf/stages`).
//!
//! `cargo bench -p palisade-benches --bench waf`
//!
//! For load-independent instruction counts of one inspection, set `WAF_ONE` to `get`,
//! `json`, `json_charset`, `catalog`, `catalog_unique`, `bad` or `text` (the 64 KiB prose
//! body): the bench then runs only that
//! inspection (at paranoia 1, or `WAF_ONE_PARANOIA`) `WAF_ONE_RUNS` times (default 5) and
//! exits, e.g. under
//! `valgrind --tool=callgrind --toggle-collect='*Engine*inspect*' target/release/deps/waf-*`.
//! The steady-state cost of one inspection is the difference between runs of 11 and 1
//! inspections, divided by 10 (the first inspection also warms the regexes' caches).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use palisade_waf::{stages, Action, Engine, Request, RuleSet, WafSettings};

const HEADERS: &[(&str, &[u8])] = &[
    ("host", b"shop.example.com"),
    ("user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0 Safari/537.36"),
    ("accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
    ("accept-language", b"en-US,en;q=0.9,de;q=0.8"),
    ("accept-encoding", b"gzip, deflate, br"),
    ("referer", b"https://shop.example.com/catalog/shoes?color=blue&size=42"),
    ("cookie", b"session=4f9c2a7e1b8d4c3f9a0e6b5d2c1f8e7a; theme=dark; consent=analytics%2Cads"),
    ("x-request-id", b"550e8400-e29b-41d4-a716-446655440000"),
    ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
];

/// The Content-Type most JSON clients send: its charset takes rule 1018's allow list.
const JSON_UTF8: &[u8] = b"application/json; charset=utf-8";

/// Inspections run under `WAF_ONE` unless `WAF_ONE_RUNS` says otherwise (the first one
/// warms lazily built state, such as the regexes' DFA caches).
const ONE_RUNS: usize = 5;

/// A ~1 KB benign GET (request line and headers).
fn get_target() -> String {
    let mut t = String::from("/catalog/search?q=running+shoes+for+women&brand=acme&size=38&color=dark+blue&sort=price_asc&page=2&per_page=48&utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale_2024&ref=homepage-banner");
    t.push_str("&filters=waterproof%2Clightweight%2Cbreathable&min_price=20&max_price=150&currency=EUR&lang=en-GB");
    t
}

/// A benign JSON API document of about 4 KB (items are added until it reaches 4000 bytes).
fn json_body() -> Vec<u8> {
    let mut items = Vec::new();
    loop {
        let i = items.len();
        let doc = serde_json::json!({
            "order": {
                "id": "ORD-2024-000123",
                "customer": {"name": "Ana O'Neil", "email": "ana+shop@example.com", "phone": "+44 20 7946 0958"},
                "shipping": {"street": "221B Baker Street", "city": "London", "zip": "NW1 6XE", "country": "GB"},
                "items": items,
                "comment": "Union was a great select of workers; I'd select the blue ones from the list."
            }
        });
        let body = serde_json::to_vec(&doc).unwrap_or_default();
        if body.len() >= 4000 {
            return body;
        }
        items.push(serde_json::json!({
            "sku": format!("SKU-2024-{i:04}"),
            "name": format!("Trail runner model {i}, women's edition"),
            "qty": i % 3 + 1,
            "price": 49.9 + i as f64,
            "tags": ["outdoor", "running", format!("size-{}", 36 + i % 8)],
            "note": format!("Delivery {i}: please don't ring the bell; leave it at the door if we're out.")
        }));
    }
}

/// Product descriptions in plain English: the everyday words (`for`, `and`, `select`,
/// `not`) wake the SQL and shell rules' literals, so prose-heavy API documents cost more
/// per byte than `json_body`'s order.
const DESCRIPTIONS: &[&str] = &[
    "Lightweight trail shoe for long runs on rocky ground and wet grass.",
    "Our best seller for the winter season, now available in three new colours.",
    "Breathable mesh upper with a reinforced toe cap and a grippy outsole.",
    "Please note that sizes run small, so order one size up if you are between sizes.",
    "Free returns within 30 days if the product is unused and in its original box.",
    "Designed in Portland and made from recycled materials where possible.",
    "Customers who bought this item also bought socks and a water bottle.",
    "Not suitable for road running or for use in snow and ice.",
    "The sole is made of natural rubber and the laces are made of cotton.",
    "Select your size and colour, then add the item to your basket to continue.",
];

/// A benign catalog page of about 4 KB: products with an English description and summary.
/// With `unique`, each text ends with the product's number, so no value repeats within
/// the page (as on a real catalog, where the engine's skipping of repeated values does
/// not help); otherwise the ten descriptions recur.
fn catalog_body(unique: bool) -> Vec<u8> {
    let mut products = Vec::new();
    loop {
        let body =
            serde_json::to_vec(&serde_json::json!({ "products": products })).unwrap_or_default();
        if body.len() >= 4000 {
            return body;
        }
        let i = products.len();
        let text = |at: usize| match unique {
            true => format!("{} Model {i}.", DESCRIPTIONS[at % DESCRIPTIONS.len()]),
            false => DESCRIPTIONS[at % DESCRIPTIONS.len()].to_string(),
        };
        products.push(serde_json::json!({
            "id": i,
            "title": format!("Trail runner {i}"),
            "description": text(i),
            "summary": text(i * 3 + 1),
        }));
    }
}

fn request<'a>(
    method: &'a str,
    target: &'a str,
    ct: Option<&'a [u8]>,
    body: &'a [u8],
) -> Request<'a> {
    let mut req = Request::new(method, target).body(body);
    for (n, v) in HEADERS {
        req = req.header(n, v);
    }
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    req
}

fn bench_waf(c: &mut Criterion) {
    let engine = Engine::new(RuleSet::embedded().expect("base rules compile"));
    let get = get_target();
    let json = json_body();
    let catalog = catalog_body(false);
    let catalog_unique = catalog_body(true);
    for (what, body) in [
        ("JSON", &json),
        ("catalog", &catalog),
        ("unique catalog", &catalog_unique),
    ] {
        assert!(
            (4000..4400).contains(&body.len()),
            "{what} body is {} bytes",
            body.len()
        );
    }
    let attack = "/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--&next=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E";
    let big_text: Vec<u8> =
        "Prose with apostrophes, don't stop; SQL words like select and union in sentences. "
            .bytes()
            .cycle()
            .take(64 * 1024)
            .collect();

    // (`WAF_ONE` name, criterion name, request, verdict at paranoia 1 and 2)
    let cases = [
        (
            "get",
            "benign_get_1k",
            request("GET", &get, None, b""),
            Action::Pass,
        ),
        (
            "json",
            "benign_json_post_4k",
            request("POST", "/api/v1/orders", Some(b"application/json"), &json),
            Action::Pass,
        ),
        (
            "json_charset",
            "benign_json_post_4k_charset",
            request("POST", "/api/v1/orders", Some(JSON_UTF8), &json),
            Action::Pass,
        ),
        (
            "catalog",
            "benign_catalog_json_4k",
            request(
                "POST",
                "/api/v1/catalog",
                Some(b"application/json"),
                &catalog,
            ),
            Action::Pass,
        ),
        (
            "catalog_unique",
            "benign_catalog_unique_json_4k",
            request(
                "POST",
                "/api/v1/catalog",
                Some(b"application/json"),
                &catalog_unique,
            ),
            Action::Pass,
        ),
        (
            "bad",
            "malicious_get",
            request("GET", attack, None, b""),
            Action::Block,
        ),
    ];
    let text_req = request("POST", "/notes", Some(b"text/plain"), &big_text);

    if let Ok(which) = std::env::var("WAF_ONE") {
        let paranoia = std::env::var("WAF_ONE_PARANOIA")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let settings = WafSettings {
            body_limit: 1 << 20,
            ..WafSettings::default()
        }
        .with_paranoia(paranoia);
        let req = match cases.iter().find(|(name, ..)| *name == which) {
            Some((_, _, req, _)) => req,
            None if which == "text" => &text_req,
            None => panic!(
                "WAF_ONE={which}: expected text or one of {:?}",
                cases.map(|(name, ..)| name)
            ),
        };
        let runs = std::env::var("WAF_ONE_RUNS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(ONE_RUNS);
        for _ in 0..runs {
            black_box(engine.inspect(black_box(req), &settings, None));
        }
        return;
    }
    for paranoia in [1u8, 2] {
        let settings = WafSettings {
            body_limit: 1 << 20,
            ..WafSettings::default()
        }
        .with_paranoia(paranoia);
        let mut g = c.benchmark_group(format!("waf/paranoia{paranoia}"));
        for (_, name, req, verdict) in &cases {
            assert_eq!(
                engine.inspect(req, &settings, None).action,
                *verdict,
                "{name}"
            );
            g.bench_function(*name, |b| {
                b.iter(|| engine.inspect(black_box(req), &settings, None))
            });
        }
        g.throughput(Throughput::Bytes(big_text.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("prefilter_text_body", "64KiB"),
            &text_req,
            |b, r| b.iter(|| engine.inspect(black_box(r), &settings, None)),
        );
        g.finish();
    }
    // What the application behind the proxy spends on the same documents: parsing them
    // into `serde_json::Value`, the inspection's yardstick in BENCHMARKS.md. And what two
    // of the inspection's stages (`waf/stages`) compare with: serde_json checking the
    // document without building anything, and the aho-corasick crate's DFA reporting
    // every occurrence of the body walk's literals.
    let mut g = c.benchmark_group("waf/reference");
    let literals = stages::body_walk_literals(&RuleSet::embedded().expect("base rules"), 1);
    let crate_dfa = aho_corasick::AhoCorasick::builder()
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .ascii_case_insensitive(true)
        .build(&literals)
        .expect("the body walk's literals build a DFA");
    for (name, body) in [("4k", &json), ("catalog_unique_4k", &catalog_unique)] {
        g.bench_function(format!("serde_json_value_{name}"), |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(body)).is_ok())
        });
        g.bench_function(format!("serde_json_ignored_any_{name}"), |b| {
            b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(body)).is_ok())
        });
        g.bench_function(format!("aho_corasick_dfa_overlapping_{name}"), |b| {
            b.iter(|| crate_dfa.find_overlapping_iter(black_box(body)).count())
        });
    }
    g.finish();
    // The stages of the paranoia-1 inspection of the order and of the unique catalog, one
    // at a time: the request without its body (its headers, path and the fixed cost of an
    // inspection), reading the JSON body into values, and the automaton's walk over the
    // body. Whatever the whole inspection takes beyond their sum is the work per value.
    let mut g = c.benchmark_group("waf/stages");
    let settings = WafSettings::default();
    let no_body = request("POST", "/api/v1/orders", Some(b"application/json"), b"");
    g.bench_function("without_body", |b| {
        b.iter(|| engine.inspect(black_box(&no_body), &settings, None))
    });
    let set = RuleSet::embedded().expect("base rules compile");
    let mut walk = stages::BodyWalk::new(&set, 1).expect("the base rules have body literals");
    for (name, body) in [("4k", &json), ("catalog_unique_4k", &catalog_unique)] {
        assert!(
            stages::json_values(body) > 100,
            "{name}: the body reads as JSON"
        );
        assert!(
            walk.walk(body) > 0,
            "{name}: the walk stops at the prose's words"
        );
        g.bench_function(format!("json_values_{name}"), |b| {
            b.iter(|| stages::json_values(black_box(body)))
        });
        g.bench_function(format!("body_walk_{name}"), |b| {
            b.iter(|| walk.walk(black_box(body)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_waf);
criterion_main!(benches);
