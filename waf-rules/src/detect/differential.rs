//! The detectors against their reference versions (`reference`, the code before the fast
//! paths): every function must return exactly the same on every string of the CRS
//! regression corpus, the benign corpora and the rule examples (raw and as the rules'
//! transformations leave them), every prefix and suffix of the short ones, and many
//! generated values: random bytes, prose with SQL and markup spliced in, keyword salads.

use std::path::{Path, PathBuf};

use super::reference::{sqli as old_sqli, xss as old_xss};
use super::{sqli, xss};
use crate::transform::Transform;

/// Compares every detector function on `v`; panics with the value on a difference.
fn same(v: &[u8]) {
    let show = || String::from_utf8_lossy(v).into_owned();
    for keywords in [true, false] {
        assert_eq!(
            sqli::sqli(v, keywords),
            old_sqli::sqli(v, keywords),
            "sqli({:?}, {keywords})",
            show()
        );
    }
    assert_eq!(xss::xss(v), old_xss::xss(v), "xss({:?})", show());
}

/// Compares the word functions on every word of `v` and at every word boundary.
fn same_words(v: &[u8]) {
    let mut i = 0;
    while i < v.len() {
        let start = i;
        while i < v.len() && !v[i].is_ascii_whitespace() && !b"'\"(),;=".contains(&v[i]) {
            i += 1;
        }
        if i > start {
            let word = &v[start..i];
            assert_eq!(
                sqli::word_class(word),
                old_sqli::word_class(word),
                "word_class({:?})",
                String::from_utf8_lossy(word)
            );
            assert_eq!(
                sqli::keyword_stands_alone(v, start, i),
                old_sqli::keyword_stands_alone(v, start, i)
            );
        }
        i += 1;
    }
}

/// Deterministic xorshift: the test needs no dependency and fails the same way each run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The value, its transformations as the SQL and XSS rules chain them (each step kept),
/// and its parameter values when it looks like a query string or form body.
fn variants(raw: &[u8], out: &mut Vec<Vec<u8>>) {
    out.push(raw.to_vec());
    let chains: [&[Transform]; 3] = [
        &[
            Transform::UrlDecode,
            Transform::FoldUnicode,
            Transform::RemoveNulls,
        ],
        &[
            Transform::UrlDecode,
            Transform::HtmlEntityDecode,
            Transform::JsDecode,
            Transform::FoldUnicode,
            Transform::RemoveNulls,
        ],
        &[Transform::UrlDecode, Transform::Base64Text],
    ];
    let mut parts: Vec<&[u8]> = Vec::new();
    for piece in raw.split(|&b| b == b'&' || b == b'?') {
        parts.push(piece);
        if let Some(eq) = piece.iter().position(|&b| b == b'=') {
            parts.push(&piece[eq + 1..]);
        }
    }
    for part in std::iter::once(raw).chain(parts.iter().copied()) {
        for chain in chains {
            let mut cur = part.to_vec();
            for t in chain {
                let mut next = Vec::new();
                if t.apply(&cur, &mut next) {
                    cur = next;
                    out.push(cur.clone());
                }
            }
        }
        if part.len() != raw.len() {
            out.push(part.to_vec());
        }
    }
}

/// Every string scalar of a YAML document (CRS tests hold requests in `data`, `uri`,
/// headers and base64 `encoded_request`).
fn yaml_strings(v: &serde_yaml::Value, out: &mut Vec<Vec<u8>>) {
    use base64::Engine as _;
    match v {
        serde_yaml::Value::String(s) => {
            out.push(s.as_bytes().to_vec());
            let cleaned: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(cleaned) {
                out.extend(raw.split(|&b| b == b'\n').map(<[u8]>::to_vec));
                out.push(raw);
            }
        }
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|i| yaml_strings(i, out)),
        serde_yaml::Value::Mapping(map) => map.iter().for_each(|(k, v)| {
            yaml_strings(k, out);
            yaml_strings(v, out);
        }),
        serde_yaml::Value::Tagged(t) => yaml_strings(&t.value, out),
        _ => {}
    }
}

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, ext, out);
        } else if ext.is_empty() || path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// Strings of the CRS corpus, the rule files and the benign corpora.
fn corpus_strings() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut strings = Vec::new();
    let mut yamls = Vec::new();
    files_under(
        &root.join("../../shared/corpora/crs-regression"),
        "yaml",
        &mut yamls,
    );
    assert!(
        yamls.len() > 100,
        "the CRS corpus (../shared/corpora/crs-regression) is missing"
    );
    files_under(&root.join("rules"), "yaml", &mut yamls);
    for path in &yamls {
        let text = std::fs::read_to_string(path).expect("readable YAML");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            if let Ok(v) = <serde_yaml::Value as serde::Deserialize>::deserialize(doc) {
                yaml_strings(&v, &mut strings);
            }
        }
    }
    let mut texts = Vec::new();
    files_under(&root.join("tests/benign"), "", &mut texts);
    for path in &texts {
        let bytes = std::fs::read(path).expect("readable corpus file");
        strings.extend(bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec));
    }
    strings
}

#[test]
fn same_results_on_the_corpora() {
    let mut checked = 0usize;
    let mut flagged = 0usize;
    let mut values = Vec::new();
    for s in corpus_strings() {
        values.clear();
        variants(&s, &mut values);
        for v in &values {
            same(v);
            same_words(v);
            checked += 1;
            flagged += usize::from(sqli::sqli(v, true).is_some() || xss::xss(v).is_some());
        }
        // Every prefix and suffix of the shorter values: unterminated strings, comments
        // and tags, and shapes cut at every token.
        if s.len() <= 160 {
            for cut in 0..=s.len() {
                same(&s[..cut]);
                same(&s[cut..]);
            }
        }
    }
    assert!(checked > 20_000, "only {checked} corpus values");
    assert!(flagged > 1_000, "only {flagged} corpus values flagged");
}

/// Pieces that tokenize to every class and open every context: quotes, escapes, comments,
/// operators, keywords of every class in both cases, markup and schemes.
const PIECES: &[&str] = &[
    "'",
    "\"",
    "`",
    "\\",
    "\\'",
    "''",
    "\"\"",
    " ",
    "  ",
    "\t",
    "\n",
    "\u{a0}",
    "\0",
    "\x0b",
    "(",
    ")",
    ",",
    ";",
    "=",
    "<",
    ">",
    "!",
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    "~",
    "|",
    "&",
    ":",
    "||",
    "&&",
    "--",
    "#",
    "/*",
    "*/",
    "/*!",
    "/*!50000",
    "@",
    "@@version",
    "1",
    "0x1f",
    "3.14",
    ".5",
    "1e5",
    "or",
    "OR",
    "Or",
    "and",
    "AND",
    "xor",
    "not",
    "union",
    "UNION",
    "UnIoN",
    "select",
    "SELECT",
    "all",
    "ALL",
    "distinct",
    "insert",
    "update",
    "delete",
    "drop",
    "create",
    "alter",
    "truncate",
    "exec",
    "execute",
    "declare",
    "shutdown",
    "waitfor",
    "intersect",
    "except",
    "from",
    "where",
    "like",
    "ilike",
    "rlike",
    "glob",
    "regexp",
    "notnull",
    "isnull",
    "is",
    "in",
    "into",
    "null",
    "true",
    "false",
    "between",
    "collate",
    "div",
    "mod",
    "sounds",
    "similar",
    "set",
    "table",
    "then",
    "top",
    "values",
    "when",
    "else",
    "end",
    "case",
    "as",
    "having",
    "group",
    "order",
    "offset",
    "limit",
    "procedure",
    "database",
    "delay",
    "information_schema",
    "INFORMATION_SCHEMA",
    "sleep",
    "version",
    "users",
    "door",
    "outdoor",
    "selection",
    "ordering",
    "a",
    "x",
    "_",
    "$",
    "é",
    "ü",
    "name.col",
    "tbl.col1",
    "it's",
    "don't",
    "we're",
    "O'Neil",
    "women's",
    "<script>",
    "</script>",
    "<img",
    "src=x",
    "onerror=alert(1)",
    "onload",
    " on",
    "=alert(1)>",
    "javascript:",
    "java\tscript:",
    "JavaScript:",
    "vbscript:",
    "livescript:",
    "data:",
    "data:text/html,",
    " data: text/HTML",
    "jav",
    "dat",
    "<svg/onload=",
    "<a href=\"",
    "style=",
    "\"expression(",
    "x:script",
    "<x:script",
    "<iframe",
    "<b>",
    "<3",
    "href=javascript:",
    "'onfocus='",
    "\"onmouseover=\"",
    "formaction=",
    "background=",
    "<div style=\"width: expression(alert(1))\">",
    "1=1",
    "'1'='1",
    "' or '",
    "\" or \"",
    "1 union select",
    "; drop table users",
    "admin'--",
];

/// Prose the benchmark's JSON body holds, and other values with apostrophes.
const PROSE: &[&str] = &[
    "Trail runner model 7, women's edition",
    "Delivery 7: please don't ring the bell; leave it at the door if we're out.",
    "Union was a great select of workers; I'd select the blue ones from the list.",
    "Ana O'Neil",
    "It's 5 o'clock and we're late",
    "Don't drop the table, Bob",
    "I'd like to select a name from the list, or not",
    "She said \"hello\" and left; it's fine: really = ok",
];

#[test]
fn same_results_on_generated_values() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut v = Vec::new();
    for round in 0..400_000 {
        v.clear();
        match round % 5 {
            // Random bytes, biased towards the ones the tokenizers look at.
            0 => {
                let len = rng.below(40);
                const HOT: &[u8] =
                    b"'\"`\\ ()=<>;,:-#/*!@|&.0123456789aAoOrRsSeElLnN_$\n\t\x0b\0\xa0";
                for _ in 0..len {
                    let b = if rng.below(3) == 0 {
                        rng.next() as u8
                    } else {
                        *rng.pick(HOT)
                    };
                    v.push(b);
                }
            }
            // Pieces glued with or without spaces.
            1 => {
                for _ in 0..1 + rng.below(8) {
                    v.extend_from_slice(rng.pick(PIECES).as_bytes());
                    if rng.below(2) == 0 {
                        v.push(b' ');
                    }
                }
            }
            // Prose with pieces spliced in at random places.
            2 => {
                v.extend_from_slice(rng.pick(PROSE).as_bytes());
                for _ in 0..rng.below(4) {
                    let at = rng.below(v.len() + 1);
                    let piece = rng.pick(PIECES).as_bytes();
                    v.splice(at..at, piece.iter().copied());
                }
            }
            // Script schemes, edited a letter or two, with control bytes in them.
            3 => {
                let scheme = *rng.pick(&["javascript", "vbscript", "livescript", "data", "jar"]);
                v.extend(scheme.bytes().map(|b| {
                    if rng.below(3) == 0 {
                        b.to_ascii_uppercase()
                    } else {
                        b
                    }
                }));
                for _ in 0..rng.below(3) {
                    let at = rng.below(v.len() + 1);
                    match rng.below(4) {
                        0 if at < v.len() => {
                            v.remove(at);
                        }
                        1 if at < v.len() => v[at] = b'a' + rng.below(26) as u8,
                        2 => v.insert(at, rng.below(33) as u8),
                        _ => v.insert(at, b'a' + rng.below(26) as u8),
                    }
                }
                v.push(b':');
                let rest =
                    *rng.pick(&["alert(1)", "text/html,<b>", " \ttext/HTML", "text/htm", ""]);
                v.extend_from_slice(rest.as_bytes());
            }
            // Prose mutated byte by byte.
            _ => {
                v.extend_from_slice(rng.pick(PROSE).as_bytes());
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(v.len());
                    match rng.below(3) {
                        0 => v[at] = rng.next() as u8,
                        1 => {
                            v.remove(at);
                        }
                        _ => v.insert(at, *rng.pick(b"'\"=<:;-#(\xa0\0")),
                    }
                }
            }
        }
        same(&v);
        same_words(&v);
    }
}

#[test]
fn same_word_functions() {
    let keywords = super::reference::sqli::SQLI_REQUIRED;
    assert_eq!(super::SQLI_REQUIRED, keywords);
    assert_eq!(super::XSS_NEEDS, super::reference::xss::XSS_NEEDS);
    // Every literal and every piece, and all their case-folded and shortened forms.
    let mut words: Vec<Vec<u8>> = keywords.iter().map(|k| k.as_bytes().to_vec()).collect();
    words.extend(PIECES.iter().map(|p| p.as_bytes().to_vec()));
    for w in words.clone() {
        words.push(w.to_ascii_uppercase());
        for cut in 0..w.len() {
            words.push(w[..cut].to_vec());
            words.push(w[cut..].to_vec());
        }
    }
    // Literals are never empty (both versions panic on an empty one).
    for w in words.iter().filter(|w| !w.is_empty()) {
        assert_eq!(
            sqli::keyword_is_whole_word_only(w),
            old_sqli::keyword_is_whole_word_only(w),
            "keyword_is_whole_word_only({:?})",
            String::from_utf8_lossy(w)
        );
        assert_eq!(sqli::word_class(w), old_sqli::word_class(w));
    }
    // Every word of up to three letters, and every byte around a keyword.
    let letters = b"abcdefghijklmnopqrstuvwxyzAZ_$.0";
    for a in letters {
        for b in letters {
            for c in letters {
                for w in [&[*a][..], &[*a, *b], &[*a, *b, *c]] {
                    assert_eq!(sqli::word_class(w), old_sqli::word_class(w));
                }
            }
        }
    }
    for before in 0..=255u8 {
        for after in 0..=255u8 {
            let v = [before, b'o', b'r', after];
            assert_eq!(
                sqli::keyword_stands_alone(&v, 1, 3),
                old_sqli::keyword_stands_alone(&v, 1, 3)
            );
        }
    }
}
