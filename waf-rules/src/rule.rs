//! The rule file format (YAML) and its validation into compiled rules.

use std::collections::HashSet;

use serde::Deserialize;

use crate::error::RuleError;
use crate::request::Kind;
use crate::transform::Transform;

/// A rule file: a list of rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleFile {
    pub rules: Vec<RuleSpec>,
}

/// One rule as written in a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSpec {
    pub id: u32,
    pub message: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "default_paranoia")]
    pub paranoia: u8,
    pub severity: Severity,
    pub targets: Vec<String>,
    #[serde(default)]
    pub transforms: Vec<Transform>,
    pub operator: OperatorSpec,
    /// A condition on the whole request without which a match does not count.
    #[serde(default)]
    pub when: Option<Condition>,
    #[serde(default)]
    pub examples: Examples,
}

fn default_paranoia() -> u8 {
    1
}

/// A fact about the whole request that a rule's match may depend on: what makes a value
/// an attack is sometimes where the request came from, not the value alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The request has no `Referer`, or its host is neither the request's `Host` nor a
    /// subdomain of it (ports ignored): the request was not started from a page of the
    /// site, as a session fixation link sent by mail or placed on another site is not.
    RefererOffSite,
    /// The request carries content: a `Transfer-Encoding`, a `Content-Length` above 0,
    /// or, with neither (HTTP/2), a non-empty body.
    HasBody,
    /// `HasBody`, and sent chunked or with a `Content-Type` that is not JSON (`*/json`,
    /// `*+json`, `application/x-ndjson`): the search APIs that take a GET with a body
    /// take JSON, declared or not.
    BodyTypedNotJson,
}

/// Severity, mapped to an anomaly score as in the OWASP CRS convention.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Notice,
}

impl Severity {
    /// The anomaly score a match of this severity adds.
    pub fn score(self) -> u32 {
        match self {
            Severity::Critical => 5,
            Severity::Error => 4,
            Severity::Warning => 3,
            Severity::Notice => 2,
        }
    }
}

/// The operator: exactly one field must be set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OperatorSpec {
    /// Any of these literals occurs (ASCII case-insensitive).
    pub literals: Option<Vec<String>>,
    /// The regex matches (bytes regex; use `(?i)` for case-insensitivity).
    pub regex: Option<String>,
    /// With `regex`: literals of which at least one must occur for the regex to be run
    /// (ASCII case-insensitive). Omit for regexes with no required literal.
    pub requires: Option<Vec<String>>,
    /// With `regex`, instead of `requires`: words of which at least one must occur as a
    /// word for the regex to be run (ASCII case-insensitive): not glued to an ASCII
    /// letter, digit or `_` before it, nor to a letter or `_` after it (a digit may follow,
    /// as in `python3`). For regexes whose every match holds such a word, as a command
    /// name after a shell separator: prose holds separators, rarely the command as a word.
    pub requires_words: Option<Vec<String>>,
    /// With `regex`, alone or beside `requires`: words of which at least one must occur
    /// as a command name for the regex to be run: as a word (see `requires_words`), at
    /// the start of the value or after a shell separator (`;`, `&`, `|`, a line break, a
    /// backtick, `(`), with only blanks between, directly or behind a `/bin/`, `/sbin/`,
    /// `/usr/bin/` or `/usr/local/bin/` path. For regexes whose every match begins a
    /// command line there: prose holds `for`, `cat` and `who` as words, rarely first.
    pub requires_commands: Option<Vec<String>>,
    /// Some byte lies outside every listed inclusive range.
    pub bytes_outside: Option<Vec<[u8; 2]>>,
    /// The value is longer than this many bytes.
    pub length_over: Option<usize>,
    /// The request has more query and body arguments than this (targets are ignored).
    pub arg_count_over: Option<usize>,
    /// The value holds a `%` not followed by two hex digits (or a valid `%uXXXX`).
    pub invalid_url_encoding: Option<bool>,
    /// The value tokenizes as a meaningful SQL fragment (see `detect::sqli`).
    pub sqli: Option<bool>,
    /// The value compares two literals so that the comparison holds (see
    /// `detect::sql_tautology`).
    pub sql_tautology: Option<bool>,
    /// The value holds meaningful HTML/JS markup (see `detect::xss`).
    pub xss: Option<bool>,
}

/// Values the rule must match (`match`) and must not match (`no_match`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Examples {
    #[serde(default, rename = "match")]
    pub positive: Vec<String>,
    #[serde(default)]
    pub no_match: Vec<String>,
}

/// A rule's regex: checked when its file loads, and kept compiled from then on only if
/// paranoia 1 runs it. The regexes of the higher levels (2.2 MB of the base set's, with
/// ASCII classes) are compiled when a level that runs them is first built, so a proxy
/// that never selects paranoia 2 does not carry them.
pub(crate) struct RuleRegex {
    source: String,
    /// `None` only if the source, which compiled when its file loaded, failed to compile
    /// again (it cannot: compilation is deterministic); see [`RuleRegex::find`].
    compiled: std::sync::OnceLock<Option<regex::bytes::Regex>>,
}

impl RuleRegex {
    fn new(source: String, keep_compiled: bool) -> Result<RuleRegex, regex::Error> {
        let re = compile_regex(&source)?;
        let compiled = std::sync::OnceLock::new();
        if keep_compiled {
            let _ = compiled.set(Some(re));
        }
        Ok(RuleRegex { source, compiled })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled regex, compiled on first use.
    pub fn compile(&self) -> Option<&regex::bytes::Regex> {
        self.compiled
            .get_or_init(|| compile_regex(&self.source).ok())
            .as_ref()
    }

    /// The first match in `data`. A regex that could not be compiled matches the whole
    /// value: the WAF fails closed, never with a panic.
    pub fn find(&self, data: &[u8]) -> Option<(usize, usize)> {
        match self.compile() {
            Some(re) => re.find(data).map(|m| (m.start(), m.end())),
            None => Some((0, data.len())),
        }
    }

    #[cfg(test)]
    pub fn is_compiled(&self) -> bool {
        matches!(self.compiled.get(), Some(Some(_)))
    }
}

/// ASCII classes by default (see docs/waf.md): the rules' languages are ASCII, and the
/// Unicode tables made the base set's regexes about six times larger.
fn compile_regex(source: &str) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(source)
        .unicode(false)
        .size_limit(4 << 20)
        .build()
}

/// Where a prefilter literal's hit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Anywhere: `literals`, `requires` and the detectors' literals.
    Anywhere,
    /// As a word of its own (`requires_words`).
    Word,
    /// As a command name (`requires_commands`).
    Command,
}

/// A compiled operator.
pub(crate) enum Op {
    Literals,
    Regex { re: RuleRegex, prefiltered: bool },
    BytesOutside(Box<[bool; 256]>),
    LengthOver(usize),
    ArgCountOver(usize),
    InvalidUrlEncoding,
    Sqli,
    SqlTautology,
    Xss,
}

/// Which values a rule looks at.
#[derive(Debug, Default, Clone)]
pub(crate) struct Targets {
    /// Bit set of `Kind`s inspected in full.
    pub kinds: u32,
    /// Lowercase header names inspected individually (`header:NAME`).
    pub headers: Vec<String>,
}

impl Targets {
    pub fn covers(&self, kind: Kind, name: &str) -> bool {
        self.kinds & kind.bit() != 0
            || (kind == Kind::Header && self.headers.iter().any(|h| h.eq_ignore_ascii_case(name)))
    }

    /// Kinds touched at all, including through header names.
    pub fn kind_mask(&self) -> u32 {
        if self.headers.is_empty() {
            self.kinds
        } else {
            self.kinds | Kind::Header.bit()
        }
    }
}

/// A rule ready for the engine.
pub(crate) struct Rule {
    pub id: u32,
    pub message: std::sync::Arc<str>,
    pub tags: Vec<String>,
    pub paranoia: u8,
    pub score: u32,
    pub targets: Targets,
    pub chain: Vec<Transform>,
    pub op: Op,
    /// Literals fed to the prefilter automaton of this rule's chain, with where their
    /// hits count.
    pub literals: Vec<(String, Placement)>,
    pub when: Option<Condition>,
    pub examples: Examples,
    pub file: String,
}

fn parse_target(t: &str, out: &mut Targets) -> Result<(), String> {
    if let Some(name) = t.strip_prefix("header:") {
        if name.is_empty() {
            return Err("`header:` needs a header name, e.g. `header:user-agent`".into());
        }
        out.headers.push(name.to_ascii_lowercase());
        return Ok(());
    }
    let kinds: &[Kind] = match t {
        "path" => &[Kind::Path],
        "method" => &[Kind::Method],
        "query_raw" => &[Kind::QueryRaw],
        "query_arg_names" => &[Kind::QueryArgName],
        "query_args" => &[Kind::QueryArg],
        "body_arg_names" => &[Kind::BodyArgName],
        "body_args" => &[Kind::BodyArg],
        "arg_names" => &[Kind::QueryArgName, Kind::BodyArgName],
        "args" => &[Kind::QueryArg, Kind::BodyArg],
        "file_names" => &[Kind::FileName],
        "cookies" => &[Kind::Cookie],
        "cookie_names" => &[Kind::CookieName],
        "headers" => &[Kind::Header],
        "header_names" => &[Kind::HeaderName],
        "body_raw" => &[Kind::BodyRaw],
        _ => {
            return Err(format!(
                "unknown target `{t}`; expected one of path, method, query_raw, query_arg_names, \
                 query_args, body_arg_names, body_args, arg_names, args, file_names, cookies, \
                 cookie_names, headers, header:NAME, header_names, body_raw"
            ))
        }
    };
    for k in kinds {
        out.kinds |= k.bit();
    }
    Ok(())
}

/// 1-based line of `id: <id>` in `text`, for errors found after parsing.
fn line_of_id(text: &str, id: u32) -> usize {
    let needle = format!("id: {id}");
    text.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            l == needle || l.starts_with(&format!("{needle} "))
        })
        .map_or(0, |n| n + 1)
}

/// A detector's required literals, as the rule's own.
fn owned(literals: &[&str]) -> Vec<(String, Placement)> {
    literals
        .iter()
        .map(|l| (l.to_string(), Placement::Anywhere))
        .collect()
}

/// Parses one rule file. `file` names it in errors.
pub(crate) fn parse_file(file: &str, text: &str) -> Result<Vec<Rule>, RuleError> {
    let parsed: RuleFile = serde_yaml::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        RuleError::Syntax {
            file: file.to_string(),
            line,
            column,
            message: e.to_string(),
        }
    })?;
    let mut rules = Vec::with_capacity(parsed.rules.len());
    let mut seen = HashSet::new();
    for spec in parsed.rules {
        let id = spec.id;
        let invalid = |field: &'static str, message: String| RuleError::Invalid {
            file: file.to_string(),
            line: line_of_id(text, id),
            id,
            field,
            message,
        };
        if !seen.insert(id) {
            return Err(RuleError::DuplicateId {
                id,
                first: file.to_string(),
                second: file.to_string(),
            });
        }
        rules.push(compile(spec, file, &invalid)?);
    }
    Ok(rules)
}

fn compile(
    spec: RuleSpec,
    file: &str,
    invalid: &dyn Fn(&'static str, String) -> RuleError,
) -> Result<Rule, RuleError> {
    if !(1..=4).contains(&spec.paranoia) {
        return Err(invalid(
            "paranoia",
            format!("must be 1 to 4, got {}", spec.paranoia),
        ));
    }
    if spec.message.trim().is_empty() {
        return Err(invalid("message", "must not be empty".into()));
    }
    let mut targets = Targets::default();
    for t in &spec.targets {
        parse_target(t, &mut targets).map_err(|m| invalid("targets", m))?;
    }
    let o = spec.operator;
    let set = [
        o.literals.is_some(),
        o.regex.is_some(),
        o.bytes_outside.is_some(),
        o.length_over.is_some(),
        o.arg_count_over.is_some(),
        o.invalid_url_encoding == Some(true),
        o.sqli == Some(true),
        o.sql_tautology == Some(true),
        o.xss == Some(true),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if set != 1 {
        return Err(invalid(
            "operator",
            format!(
                "set exactly one of literals, regex, bytes_outside, length_over, \
                 arg_count_over, invalid_url_encoding, sqli, sql_tautology, xss (found {set})"
            ),
        ));
    }
    if o.requires.is_some() && o.regex.is_none() {
        return Err(invalid(
            "operator.requires",
            "only valid with `regex`".into(),
        ));
    }
    if o.requires_words.is_some() && (o.regex.is_none() || o.requires.is_some()) {
        return Err(invalid(
            "operator.requires_words",
            "only valid with `regex`, and instead of `requires`".into(),
        ));
    }
    if o.requires_commands.is_some() && (o.regex.is_none() || o.requires_words.is_some()) {
        return Err(invalid(
            "operator.requires_commands",
            "only valid with `regex`, and not with `requires_words`".into(),
        ));
    }
    if targets.kind_mask() == 0 && o.arg_count_over.is_none() {
        return Err(invalid("targets", "at least one target is required".into()));
    }
    let mut literals = Vec::new();
    let op = if let Some(lits) = o.literals {
        if lits.is_empty() || lits.iter().any(String::is_empty) {
            return Err(invalid(
                "operator.literals",
                "needs at least one literal and no empty literal".into(),
            ));
        }
        literals = lits.into_iter().map(|l| (l, Placement::Anywhere)).collect();
        Op::Literals
    } else if let Some(re) = o.regex {
        let re = RuleRegex::new(re, spec.paranoia <= 1)
            .map_err(|e| invalid("operator.regex", e.to_string()))?;
        let lists = [
            ("operator.requires", o.requires, Placement::Anywhere),
            ("operator.requires_words", o.requires_words, Placement::Word),
            (
                "operator.requires_commands",
                o.requires_commands,
                Placement::Command,
            ),
        ];
        let mut prefiltered = false;
        for (field, list, placement) in lists {
            let Some(list) = list else { continue };
            if list.is_empty() || list.iter().any(String::is_empty) {
                return Err(invalid(
                    field,
                    "needs at least one literal and no empty literal; omit it to always run the regex"
                        .into(),
                ));
            }
            for literal in list {
                // One placement per literal: its hits are judged once, by its pattern.
                if literals
                    .iter()
                    .any(|(l, _): &(String, Placement)| l.eq_ignore_ascii_case(&literal))
                {
                    return Err(invalid(field, format!("`{literal}` is listed twice")));
                }
                literals.push((literal, placement));
            }
            prefiltered = true;
        }
        Op::Regex { re, prefiltered }
    } else if let Some(ranges) = o.bytes_outside {
        let mut allowed = Box::new([false; 256]);
        for [lo, hi] in ranges {
            if lo > hi {
                return Err(invalid(
                    "operator.bytes_outside",
                    format!("range [{lo}, {hi}] is reversed"),
                ));
            }
            for b in lo..=hi {
                allowed[usize::from(b)] = true;
            }
        }
        Op::BytesOutside(allowed)
    } else if let Some(n) = o.length_over {
        Op::LengthOver(n)
    } else if let Some(n) = o.arg_count_over {
        Op::ArgCountOver(n)
    } else if o.invalid_url_encoding == Some(true) {
        Op::InvalidUrlEncoding
    } else if o.sqli == Some(true) {
        literals = owned(crate::detect::SQLI_REQUIRED);
        Op::Sqli
    } else if o.sql_tautology == Some(true) {
        literals = owned(crate::detect::TAUTOLOGY_REQUIRED);
        Op::SqlTautology
    } else {
        Op::Xss
    };
    if matches!(op, Op::ArgCountOver(_)) && !spec.examples.positive.is_empty() {
        return Err(invalid(
            "examples",
            "arg_count_over rules judge a whole request; value examples do not apply".into(),
        ));
    }
    Ok(Rule {
        id: spec.id,
        message: spec.message.into(),
        tags: spec.tags,
        paranoia: spec.paranoia,
        score: spec.severity.score(),
        targets,
        chain: spec.transforms,
        op,
        literals,
        when: spec.when,
        examples: spec.examples,
        file: file.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regex_that_no_longer_compiles_matches_the_whole_value() {
        let broken = RuleRegex {
            source: "beta(".into(),
            compiled: std::sync::OnceLock::new(),
        };
        assert_eq!(broken.find(b"harmless"), Some((0, 8)));
        let kept = RuleRegex::new(r"beta\d+".into(), false).expect("compiles");
        assert!(!kept.is_compiled());
        assert_eq!(kept.find(b"x beta42"), Some((2, 8)));
        assert!(kept.is_compiled());
    }

    #[test]
    fn rule_regexes_are_ascii_unless_a_group_asks_for_unicode() {
        let find = |source: &str, data: &[u8]| {
            RuleRegex::new(source.into(), true)
                .expect("compiles")
                .find(data)
        };
        assert_eq!(find(r"<script[^>]*>", b"<script \xbc>"), Some((0, 10)));
        assert_eq!(find(r"\bselect\b", "éselect".as_bytes()), Some((2, 8)));
        assert_eq!(find(r"(?i)system", "ſystem".as_bytes()), None);
        assert_eq!(find(r"(?u:[^\w])alert", "оalert".as_bytes()), None);
        assert_eq!(find(r"(?u:[^\w])alert", b" alert"), Some((0, 6)));
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let text = "rules:\n  - id: 1\n    message: m\n    severity: critical\n    targets: [path]\n    operator: {literals: [a]}\n    bogus: 1\n";
        let err = parse_file("x.yaml", text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("x.yaml:"), "{err}");
        assert!(err.contains("bogus"), "{err}");
        let text = "rules:\n  - id: 1\n    message: m\n    severity: loud\n";
        let err = parse_file("y.yaml", text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("y.yaml:4"), "{err}");
    }

    #[test]
    fn semantic_errors_name_rule_and_field() {
        let text = "rules:\n  - id: 7\n    message: m\n    severity: critical\n    targets: [path]\n    operator: {literals: [a]}\n  - id: 42\n    message: m\n    severity: critical\n    targets: [args]\n    operator: {regex: '(unclosed'}\n";
        let err = parse_file("z.yaml", text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("z.yaml:7: rule 42: field `operator.regex`"),
            "{err}"
        );
        let text = "rules:\n  - id: 9\n    message: m\n    severity: critical\n    targets: [nowhere]\n    operator: {literals: [a]}\n";
        let err = parse_file("t.yaml", text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("rule 9: field `targets`: unknown target `nowhere`"),
            "{err}"
        );
        let text = "rules:\n  - id: 9\n    message: m\n    severity: critical\n    targets: [args]\n    operator: {literals: [a], regex: b}\n";
        let err = parse_file("t.yaml", text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("field `operator`"), "{err}");
        for (operator, field) in [
            (
                "{regex: b, requires: [a], requires_words: [c]}",
                "requires_words",
            ),
            ("{literals: [a], requires_words: [c]}", "requires_words"),
            ("{regex: b, requires_words: []}", "requires_words"),
            ("{regex: b, requires_words: [a, '']}", "requires_words"),
            (
                "{regex: b, requires_words: [a], requires_commands: [c]}",
                "requires_commands",
            ),
            (
                "{literals: [a], requires_commands: [c]}",
                "requires_commands",
            ),
            ("{regex: b, requires_commands: []}", "requires_commands"),
            (
                "{regex: b, requires: [a], requires_commands: [A]}",
                "requires_commands",
            ),
        ] {
            let text = format!("rules:\n  - id: 9\n    message: m\n    severity: critical\n    targets: [args]\n    operator: {operator}\n");
            let err = parse_file("w.yaml", &text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains(&format!("field `operator.{field}`")),
                "{operator}: {err}"
            );
        }
        let text = "rules:\n  - id: 9\n    message: m\n    severity: critical\n    targets: [args]\n    operator: {regex: b, requires: ['%x%'], requires_commands: [for]}\n";
        let rules = parse_file("w.yaml", text).unwrap_or_default();
        assert_eq!(
            rules[0].literals,
            [
                ("%x%".to_string(), Placement::Anywhere),
                ("for".to_string(), Placement::Command)
            ]
        );
    }
}
