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
    /// The regex does not match: the value lacks the format it describes (ModSecurity's
    /// `!@rx`). Named for the `regex` it negates; `unless_*` would suggest a modifier of
    /// `regex`, as `unless_in` beside it is. Takes no other field: with no literal to
    /// wait for, the rule runs on every value it targets, the empty one too.
    pub not_regex: Option<String>,
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
    /// Alone: the value is none of these (compared byte for byte after the rule's
    /// transforms). With `regex`: a match counts only if its capture group 1 is none of
    /// these; a match in which group 1 took no part counts as a plain regex match. See
    /// [`MatchTest`].
    pub unless_in: Option<Vec<String>>,
    /// With `unless_in`: compare its values ignoring ASCII case.
    pub ignore_case: Option<bool>,
    /// With `regex`: a match counts only if this comparison of numbers holds, written
    /// `$A OP B` with operands `$N` (capture group N, read as a decimal number) or a
    /// decimal number, and OP one of `<`, `<=`, `>`, `>=`, `==`, `!=`. See [`MatchTest`].
    pub compare: Option<String>,
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
    /// Capture groups, not counting the whole match.
    groups: usize,
    /// Unique to this regex in the process: capture locations kept for it (see
    /// [`CaptureSlot`]) are never used with another regex, even one at the same address
    /// after a rule set is reloaded.
    serial: u64,
}

/// A thread's capture locations for one rule's regex, tagged with that regex's serial.
/// Locations made by one regex must not serve another (the `regex` crate may then report
/// wrong groups), and making them allocates: the engine keeps one per rule in its
/// per-thread scratch.
pub(crate) type CaptureSlot = Option<(u64, regex::bytes::CaptureLocations)>;

static NEXT_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl RuleRegex {
    fn new(source: String, keep_compiled: bool) -> Result<RuleRegex, regex::Error> {
        let re = compile_regex(&source)?;
        let groups = re.captures_len() - 1;
        let compiled = std::sync::OnceLock::new();
        if keep_compiled {
            let _ = compiled.set(Some(re));
        }
        Ok(RuleRegex {
            source,
            compiled,
            groups,
            serial: NEXT_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
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

    /// Whether the regex matches nowhere in `data` (`not_regex` fires then). A regex
    /// that could not be compiled matches nowhere, so its rule fires on every value: it
    /// fails closed, as `find` does.
    pub fn misses(&self, data: &[u8]) -> bool {
        !matches!(self.compile(), Some(re) if re.is_match(data))
    }

    /// The first match in `data` that `test` lets count, and the span it reports. The
    /// matches are judged in turn, as `find_iter` finds them (leftmost first, each search
    /// resuming where the previous match ended), so the work stays linear in `data`.
    /// `slot` holds this thread's capture locations for the regex, made on first use.
    pub fn find_judged(
        &self,
        test: &MatchTest,
        data: &[u8],
        slot: &mut CaptureSlot,
    ) -> Option<(usize, usize)> {
        if test.quick.as_ref().is_some_and(|q| q.find(data).is_none()) {
            return None;
        }
        self.judge_each(test, data, slot)
    }

    /// `find_judged` without the quick negative.
    pub(crate) fn judge_each(
        &self,
        test: &MatchTest,
        data: &[u8],
        slot: &mut CaptureSlot,
    ) -> Option<(usize, usize)> {
        let Some(re) = self.compile() else {
            return Some((0, data.len()));
        };
        if slot
            .as_ref()
            .is_some_and(|(serial, _)| *serial != self.serial)
        {
            *slot = None;
        }
        let (_, locs) = slot.get_or_insert_with(|| (self.serial, re.capture_locations()));
        let mut at = 0;
        while at <= data.len() {
            let m = re.captures_read_at(locs, data, at)?;
            if let Some(span) = test.judge(data, |g| locs.get(g)) {
                return Some(span);
            }
            // Past an empty match by one byte, as `find_iter` steps.
            at = m.end() + usize::from(m.is_empty());
        }
        None
    }

    #[cfg(test)]
    pub fn is_compiled(&self) -> bool {
        matches!(self.compiled.get(), Some(Some(_)))
    }
}

/// What a regex match must also satisfy to count: the rule format's way of saying what a
/// regex of the `regex` crate cannot, a value outside an allow list (it has no negative
/// lookahead) and an order between numbers (it has no arithmetic), in the manner of
/// ModSecurity's `@rx` capture followed by a chained `!@within` or `@lt` on `TX:1`.
///
/// A test judges a match only through the groups that took part in it: a match in which
/// they did not (another branch of the regex matched) counts as a plain regex match, so
/// one rule can hold unconditional branches beside judged ones.
pub(crate) struct MatchTest {
    unless_in: Option<AllowList>,
    compare: Option<Comparison>,
    /// A regex that matches wherever a match could count (see `unlisted`), when the
    /// shape of the regex allows one: a value it does not match is settled without
    /// the capture engines.
    quick: Option<RuleRegex>,
}

impl MatchTest {
    pub fn quick(&self) -> Option<&RuleRegex> {
        self.quick.as_ref()
    }
}

/// `unless_in`: the values, lowercased under `ignore_case`, sorted by length and then
/// bytes for a binary search (a few comparisons for the forty charsets of rule 1018).
pub(crate) struct AllowList {
    values: Vec<Box<[u8]>>,
    ignore_case: bool,
}

impl AllowList {
    pub fn holds(&self, value: &[u8]) -> bool {
        let icase = self.ignore_case;
        self.values
            .binary_search_by(|entry| {
                entry.len().cmp(&value.len()).then_with(|| {
                    let fold = |&b: &u8| if icase { b.to_ascii_lowercase() } else { b };
                    entry.iter().copied().cmp(value.iter().map(fold))
                })
            })
            .is_ok()
    }
}

/// `compare`: two operands and the orders (less, equal, greater) in which it holds.
struct Comparison {
    left: Operand,
    right: Operand,
    holds: [bool; 3],
}

impl Comparison {
    fn holds(&self, order: std::cmp::Ordering) -> bool {
        self.holds[match order {
            std::cmp::Ordering::Less => 0,
            std::cmp::Ordering::Equal => 1,
            std::cmp::Ordering::Greater => 2,
        }]
    }
}

/// Where a match or a group lies in the value: start and end.
type Span = (usize, usize);

enum Operand {
    Group(usize),
    /// A decimal number without its leading zeros.
    Number(Box<[u8]>),
}

impl Operand {
    /// The operand's digits and, for a group, where they are; `None` for a group that
    /// took no part in the match.
    fn read<'d>(
        &'d self,
        data: &'d [u8],
        group: &impl Fn(usize) -> Option<Span>,
    ) -> Option<(&'d [u8], Option<Span>)> {
        match self {
            Operand::Group(g) => group(*g).map(|(s, e)| (&data[s..e], Some((s, e)))),
            Operand::Number(n) => Some((n, None)),
        }
    }
}

impl MatchTest {
    /// The span a match reports if it counts: group 1 when the list judged it, else the
    /// groups the comparison read, else the whole match (`group(n)` is where group n of
    /// the match lies). `None` when the list holds group 1 or the comparison fails.
    fn judge(&self, data: &[u8], group: impl Fn(usize) -> Option<Span>) -> Option<Span> {
        let mut span = group(0)?;
        let mut listed = false;
        if let Some(list) = &self.unless_in {
            if let Some((start, end)) = group(1) {
                if list.holds(&data[start..end]) {
                    return None;
                }
                span = (start, end);
                listed = true;
            }
        }
        if let Some(c) = &self.compare {
            if let (Some((left, at_left)), Some((right, at_right))) =
                (c.left.read(data, &group), c.right.read(data, &group))
            {
                let holds = compare_decimal(left, right).is_some_and(|o| c.holds(o));
                if !holds {
                    return None;
                }
                if !listed {
                    if let Some((s, e)) = at_left
                        .into_iter()
                        .chain(at_right)
                        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
                    {
                        span = (s, e);
                    }
                }
            }
        }
        Some(span)
    }
}

/// The order of two decimal numbers of any length: digit strings, compared without their
/// leading zeros by length and then digit by digit, so no length overflows anything.
/// `None` when either is empty or holds a byte other than an ASCII digit.
fn compare_decimal(left: &[u8], right: &[u8]) -> Option<std::cmp::Ordering> {
    fn number(n: &[u8]) -> Option<&[u8]> {
        (!n.is_empty() && n.iter().all(u8::is_ascii_digit)).then(|| without_leading_zeros(n))
    }
    let (left, right) = (number(left)?, number(right)?);
    Some(left.len().cmp(&right.len()).then_with(|| left.cmp(right)))
}

fn without_leading_zeros(n: &[u8]) -> &[u8] {
    let zeros = n.iter().take_while(|&&b| b == b'0').count();
    &n[zeros..]
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
    Regex {
        re: RuleRegex,
        prefiltered: bool,
        /// `unless_in` and `compare`, when the rule has either.
        test: Option<Box<MatchTest>>,
    },
    /// `unless_in` alone: the whole value is judged.
    UnlessIn(AllowList),
    /// `not_regex`: the whole value is judged; no literal, and a gate admitting every
    /// value, since what the regex needs says nothing of what a miss needs.
    NotRegex(RuleRegex),
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
    if o.not_regex.is_some() {
        not_regex_alone(&o, invalid)?;
    }
    // Every operator but `regex` and `unless_in`.
    let others = [
        o.literals.is_some(),
        o.not_regex.is_some(),
        o.bytes_outside.is_some(),
        o.length_over.is_some(),
        o.arg_count_over.is_some(),
        o.invalid_url_encoding == Some(true),
        o.sqli == Some(true),
        o.sql_tautology == Some(true),
        o.xss == Some(true),
    ];
    if o.unless_in.is_some() && others.contains(&true) {
        return Err(invalid(
            "operator.unless_in",
            "judges group 1 of `regex`'s matches, or alone the whole value; \
             not valid with another operator"
                .into(),
        ));
    }
    if o.compare.is_some() && o.regex.is_none() {
        return Err(invalid(
            "operator.compare",
            "only valid with `regex`, whose capture groups it compares".into(),
        ));
    }
    if o.ignore_case.is_some() && o.unless_in.is_none() {
        return Err(invalid(
            "operator.ignore_case",
            "only valid with `unless_in`".into(),
        ));
    }
    // `unless_in` beside `regex` judges its matches; alone it is the operator.
    let set = others.iter().filter(|s| **s).count()
        + usize::from(o.regex.is_some())
        + usize::from(o.unless_in.is_some() && o.regex.is_none());
    if set != 1 {
        return Err(invalid(
            "operator",
            format!(
                "set exactly one of literals, regex, not_regex, unless_in, bytes_outside, \
                 length_over, arg_count_over, invalid_url_encoding, sqli, sql_tautology, xss \
                 (found {set})"
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
        let unless_in = match o.unless_in {
            Some(values) => {
                if re.groups == 0 {
                    return Err(invalid(
                        "operator.unless_in",
                        "judges capture group 1, which the regex lacks: put the part to \
                         judge in parentheses, e.g. `charset=([a-z0-9-]+)`"
                            .into(),
                    ));
                }
                Some(allow_list(values, o.ignore_case == Some(true), invalid)?)
            }
            None => None,
        };
        let compare = match o.compare {
            Some(text) => Some(
                parse_comparison(&text, re.groups)
                    .map_err(|m| invalid("operator.compare", format!("`{text}`: {m}")))?,
            ),
            None => None,
        };
        // A quick pattern too large to compile only costs its speed.
        let quick = unless_in
            .as_ref()
            .and_then(|list| crate::unlisted::pattern(re.as_str(), &list.values, list.ignore_case))
            .and_then(|quick| RuleRegex::new(quick, spec.paranoia <= 1).ok());
        let test = (unless_in.is_some() || compare.is_some()).then(|| {
            Box::new(MatchTest {
                unless_in,
                compare,
                quick,
            })
        });
        Op::Regex {
            re,
            prefiltered,
            test,
        }
    } else if let Some(re) = o.not_regex {
        Op::NotRegex(not_regex(re, spec.paranoia, invalid)?)
    } else if let Some(values) = o.unless_in {
        Op::UnlessIn(allow_list(values, o.ignore_case == Some(true), invalid)?)
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

/// Refuses beside `not_regex` the fields that modify `regex`: each assumes a match to
/// wait for or to judge, and a value the regex misses offers neither.
fn not_regex_alone(
    o: &OperatorSpec,
    invalid: &dyn Fn(&'static str, String) -> RuleError,
) -> Result<(), RuleError> {
    let waits = "not valid with `not_regex`: a rule that fires where its regex does not \
                 match has no literal to wait for, and runs on every value it targets";
    let conflicts: [(&'static str, bool, &str); 7] = [
        (
            "operator.not_regex",
            o.regex.is_some(),
            "not valid with `regex`: a rule fires where its regex matches (`regex`) or \
             where it does not (`not_regex`); write two rules for both",
        ),
        ("operator.requires", o.requires.is_some(), waits),
        ("operator.requires_words", o.requires_words.is_some(), waits),
        (
            "operator.requires_commands",
            o.requires_commands.is_some(),
            waits,
        ),
        (
            "operator.unless_in",
            o.unless_in.is_some(),
            "not valid with `not_regex`: it judges group 1 of a match, and a value the \
             regex does not match has none; list values the format allows as \
             alternatives in the regex",
        ),
        (
            "operator.compare",
            o.compare.is_some(),
            "not valid with `not_regex`: it compares groups of a match, and a value the \
             regex does not match has none",
        ),
        (
            "operator.ignore_case",
            o.ignore_case.is_some(),
            "not valid with `not_regex`; start the regex with `(?i)` instead",
        ),
    ];
    match conflicts.into_iter().find(|(_, set, _)| *set) {
        Some((field, _, message)) => Err(invalid(field, message.into())),
        None => Ok(()),
    }
}

/// `not_regex`, checked: not empty, it compiles, and it cannot match every value, as a
/// regex does that can match the empty string with no condition but a start anchor
/// (`x*`, `^x*`) or none but an end anchor (`x*$`): its rule would never fire.
fn not_regex(
    source: String,
    paranoia: u8,
    invalid: &dyn Fn(&'static str, String) -> RuleError,
) -> Result<RuleRegex, RuleError> {
    use regex_syntax::hir::{Look, LookSet};
    let field = "operator.not_regex";
    if source.is_empty() {
        return Err(invalid(
            field,
            "must not be empty: the empty regex matches every value, so the rule would \
             never fire; write the format a value must have, e.g. `^\\d+$`"
                .into(),
        ));
    }
    let re = RuleRegex::new(source, paranoia <= 1).map_err(|e| invalid(field, e.to_string()))?;
    let starts = [Look::Start, Look::StartLF, Look::StartCRLF];
    let ends = [Look::End, Look::EndLF, Look::EndCRLF];
    let only = |looks: LookSet, allowed: [Look; 3]| {
        allowed
            .into_iter()
            .fold(looks, |rest, look| rest.remove(look))
            .is_empty()
    };
    let matches_all = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(re.as_str())
        .is_ok_and(|hir| {
            let props = hir.properties();
            props.minimum_len() == Some(0)
                && (only(props.look_set(), starts) || only(props.look_set(), ends))
        });
    if matches_all {
        return Err(invalid(
            field,
            format!(
                "`{}` matches an empty string at the start or the end of every value, so \
                 the rule would never fire; anchor the format at both ends, e.g. `^\\d+$`",
                re.as_str()
            ),
        ));
    }
    Ok(re)
}

/// `unless_in`, checked: at least one value, none listed twice.
fn allow_list(
    values: Vec<String>,
    ignore_case: bool,
    invalid: &dyn Fn(&'static str, String) -> RuleError,
) -> Result<AllowList, RuleError> {
    let field = "operator.unless_in";
    if values.is_empty() {
        return Err(invalid(field, "needs at least one value".into()));
    }
    let mut list: Vec<Box<[u8]>> = Vec::with_capacity(values.len());
    for value in values {
        let bytes: Box<[u8]> = if ignore_case {
            value.to_ascii_lowercase().into_bytes().into()
        } else {
            value.as_bytes().into()
        };
        if list.contains(&bytes) {
            return Err(invalid(field, format!("`{value}` is listed twice")));
        }
        list.push(bytes);
    }
    list.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    Ok(AllowList {
        values: list,
        ignore_case,
    })
}

/// `$A OP B` (see `OperatorSpec::compare`).
fn parse_comparison(text: &str, groups: usize) -> Result<Comparison, String> {
    const EXPECTED: &str = "expected `OPERAND OP OPERAND` with OP one of <, <=, >, >=, ==, != \
                            and each OPERAND `$N` (capture group N) or a decimal number, \
                            e.g. `$2 < $1`";
    let at = text.find(['<', '>', '=', '!']).ok_or(EXPECTED)?;
    let rest = &text[at..];
    let op_len = rest.bytes().take_while(|b| b"<>=!".contains(b)).count();
    let holds = match &rest[..op_len] {
        "<" => [true, false, false],
        "<=" => [true, true, false],
        ">" => [false, false, true],
        ">=" => [false, true, true],
        "==" => [false, true, false],
        "!=" => [true, false, true],
        _ => return Err(EXPECTED.into()),
    };
    let operand = |side: &str| -> Result<Operand, String> {
        let side = side.trim();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        match side.strip_prefix('$') {
            Some(n) if digits(n) => match n.parse::<usize>() {
                Ok(g) if g <= groups => Ok(Operand::Group(g)),
                _ => Err(format!(
                    "`{side}` names a capture group the regex lacks (it has {groups})"
                )),
            },
            None if digits(side) => Ok(Operand::Number(
                without_leading_zeros(side.as_bytes()).into(),
            )),
            _ => Err(format!("`{side}`: {EXPECTED}")),
        }
    };
    let (left, right) = (operand(&text[..at])?, operand(&rest[op_len..])?);
    if matches!((&left, &right), (Operand::Number(_), Operand::Number(_))) {
        return Err("compares two numbers; name a capture group, e.g. `$1 > 65535`".into());
    }
    Ok(Comparison { left, right, holds })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error `parse_file` gives for `text` as the file `file`, or "" if it parses.
    fn parse_error(file: &str, text: &str) -> String {
        parse_file(file, text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_regex_that_no_longer_compiles_matches_the_whole_value() {
        let broken = RuleRegex {
            source: "beta(".into(),
            compiled: std::sync::OnceLock::new(),
            groups: 0,
            serial: u64::MAX,
        };
        assert_eq!(broken.find(b"harmless"), Some((0, 8)));
        assert!(broken.misses(b"harmless"), "`not_regex` fails closed too");
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
        let err = parse_error("x.yaml", text);
        assert!(err.starts_with("x.yaml:"), "{err}");
        assert!(err.contains("bogus"), "{err}");
        let text = "rules:\n  - id: 1\n    message: m\n    severity: loud\n";
        let err = parse_error("y.yaml", text);
        assert!(err.contains("y.yaml:4"), "{err}");
    }

    #[test]
    fn semantic_errors_name_rule_and_field() {
        let text = "rules:\n  - id: 9\n    message: m\n    severity: critical\n    targets: [nowhere]\n    operator: {literals: [a]}\n";
        let err = parse_error("t.yaml", text);
        assert!(
            err.contains("rule 9: field `targets`: unknown target `nowhere`"),
            "{err}"
        );
        let text = "rules:\n  - id: 9\n    message: m\n    severity: critical\n    targets: [args]\n    operator: {literals: [a], regex: b}\n";
        let err = parse_error("t.yaml", text);
        assert!(err.contains("field `operator`"), "{err}");
        let text = text.replace("regex: b", "not_regex: b");
        let err = parse_error("t.yaml", &text);
        assert!(err.contains("field `operator`: set exactly one"), "{err}");
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
            ("{regex: 'a(b)', unless_in: []}", "unless_in"),
            ("{unless_in: []}", "unless_in"),
            ("{regex: 'ab', unless_in: [x]}", "unless_in"),
            ("{regex: 'a(?:b)', unless_in: [x]}", "unless_in"),
            ("{regex: 'a(b)', unless_in: [x, y, x]}", "unless_in"),
            (
                "{regex: 'a(b)', unless_in: [X, x], ignore_case: true}",
                "unless_in",
            ),
            ("{literals: [a], unless_in: [x]}", "unless_in"),
            ("{sqli: true, unless_in: [x]}", "unless_in"),
            ("{regex: 'a(b)', ignore_case: true}", "ignore_case"),
            ("{literals: [a], ignore_case: false}", "ignore_case"),
            (r"{regex: '(\d+)-(\d+)', compare: '$3 < $1'}", "compare"),
            (
                r"{regex: '(\d+)', compare: '$99999999999999999999999 < 1'}",
                "compare",
            ),
            (r"{regex: '(\d+)', compare: '$1 << 2'}", "compare"),
            (r"{regex: '(\d+)', compare: '$1 =< 2'}", "compare"),
            (r"{regex: '(\d+)', compare: '$1'}", "compare"),
            (r"{regex: '(\d+)', compare: '1 < 2'}", "compare"),
            (r"{regex: '(\d+)', compare: '$1 < x'}", "compare"),
            (r"{regex: '(\d+)', compare: '$1 < -2'}", "compare"),
            (r"{regex: '(\d+)', compare: '$ < 2'}", "compare"),
            (r"{regex: '(\d+)', compare: '< 2'}", "compare"),
            ("{literals: [a], compare: '$1 < 2'}", "compare"),
            ("{unless_in: [a], compare: '$1 < 2'}", "compare"),
            ("{regex: '^a$', not_regex: '^b$'}", "not_regex"),
            ("{not_regex: '^a$', requires: [a]}", "requires"),
            ("{not_regex: '^a$', requires_words: [a]}", "requires_words"),
            (
                "{not_regex: '^a$', requires_commands: [a]}",
                "requires_commands",
            ),
            ("{not_regex: '^(a)$', unless_in: [a]}", "unless_in"),
            (r"{not_regex: '^(\d+)$', compare: '$1 < 2'}", "compare"),
            ("{not_regex: '^a$', ignore_case: true}", "ignore_case"),
            ("{not_regex: ''}", "not_regex"),
            ("{not_regex: '(a'}", "not_regex"),
            ("{not_regex: 'x*'}", "not_regex"),
            ("{not_regex: '(?:)'}", "not_regex"),
            (r"{not_regex: '(?i)^\s*'}", "not_regex"),
            ("{not_regex: '(?m)(?:x|y)*$'}", "not_regex"),
            ("{not_regex: '(?x) # nothing'}", "not_regex"),
        ] {
            let text = format!("rules:\n  - id: 9\n    message: m\n    severity: critical\n    targets: [args]\n    operator: {operator}\n");
            let err = parse_error("w.yaml", &text);
            assert!(
                err.contains(&format!("field `operator.{field}`")),
                "{operator}: {err}"
            );
        }
        for operator in [
            "{regex: 'a(b)', unless_in: [x]}",
            "{regex: 'a(b)', unless_in: [x, X]}",
            "{regex: 'a(b)', unless_in: [x], ignore_case: true}",
            "{regex: 'a(b)', unless_in: [x], ignore_case: false}",
            "{unless_in: [GET, HEAD]}",
            "{unless_in: [x], ignore_case: true}",
            r"{regex: '(\d+)-(\d+)', compare: '$2 < $1'}",
            r"{regex: '(\d+)', compare: '$1>=0065535'}",
            r"{regex: '\d+', compare: '100 != $0'}",
            r"{regex: '(a)(\d+)', unless_in: [b], compare: '$2 == 1'}",
            "{not_regex: '^a$'}",
            "{not_regex: 'a'}",
            "{not_regex: '^x*$'}",
            "{not_regex: '^$'}",
            r"{not_regex: '\bx*'}",
        ] {
            let text = format!("rules:\n  - id: 9\n    message: m\n    severity: critical\n    targets: [args]\n    operator: {operator}\n");
            if let Err(e) = parse_file("w.yaml", &text) {
                panic!("{operator}: {e}");
            }
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

    /// A broken operator (a regex, `unless_in`, `compare`) is refused with the file, the
    /// line of the rule, its id and the field.
    #[test]
    fn operator_errors_name_file_line_and_field() {
        for (file, text, expected) in [
            (
                "z.yaml",
                "rules:\n  - id: 7\n    message: m\n    severity: critical\n    targets: [path]\n    operator: {literals: [a]}\n  - id: 42\n    message: m\n    severity: critical\n    targets: [args]\n    operator: {regex: '(unclosed'}\n",
                "z.yaml:7: rule 42: field `operator.regex`",
            ),
            (
                "p.yaml",
                "rules:\n  - id: 3\n    message: m\n    severity: critical\n    targets: [args]\n    operator: {literals: [a]}\n  - id: 1043\n    message: m\n    severity: critical\n    targets: [\"header:range\"]\n    operator:\n      regex: '(\\d+)-(\\d+)'\n      compare: '$2 < $3'\n",
                "p.yaml:7: rule 1043: field `operator.compare`: `$2 < $3`: `$3`",
            ),
            (
                "q.yaml",
                "rules:\n  - id: 4\n    message: m\n    severity: critical\n    targets: [args]\n    operator: {regex: 'charset=[a-z]+', unless_in: [utf-8]}\n",
                "q.yaml:2: rule 4: field `operator.unless_in`: judges capture group 1",
            ),
            (
                "n.yaml",
                "rules:\n  - id: 5\n    message: m\n    severity: critical\n    targets: [path]\n    operator: {literals: [a]}\n  - id: 1038\n    message: m\n    severity: critical\n    targets: [\"header:content-range\"]\n    operator: {not_regex: '^bytes (\\d+'}\n",
                "n.yaml:7: rule 1038: field `operator.not_regex`: regex parse error",
            ),
            (
                "o.yaml",
                "rules:\n  - id: 6\n    message: m\n    severity: critical\n    targets: [args]\n    operator:\n      not_regex: '^[a-z]+$'\n      requires: [x]\n",
                "o.yaml:2: rule 6: field `operator.requires`: not valid with `not_regex`",
            ),
            (
                "e.yaml",
                "rules:\n  - id: 8\n    message: m\n    severity: critical\n    targets: [args]\n    operator: {not_regex: ''}\n",
                "e.yaml:2: rule 8: field `operator.not_regex`: must not be empty",
            ),
        ] {
            let err = parse_error(file, text);
            assert!(err.starts_with(expected), "{err}");
        }
    }

    #[test]
    fn decimal_strings_compare_as_numbers_of_any_length() {
        use std::cmp::Ordering::{Equal, Greater, Less};
        let long = "9".repeat(400);
        let longer = format!("1{}", "0".repeat(400));
        for (left, right, order) in [
            ("150", "120", Some(Greater)),
            ("120", "150", Some(Less)),
            ("10", "5", Some(Greater)),
            ("5", "10", Some(Less)),
            ("0010", "10", Some(Equal)),
            ("100", "099", Some(Greater)),
            ("0", "000", Some(Equal)),
            (
                "18446744073709551616",
                "18446744073709551615",
                Some(Greater),
            ),
            (long.as_str(), longer.as_str(), Some(Less)),
            (longer.as_str(), long.as_str(), Some(Greater)),
            ("", "1", None),
            ("1", "", None),
            ("1a", "1", None),
            ("-1", "1", None),
            ("１", "1", None),
        ] {
            assert_eq!(
                compare_decimal(left.as_bytes(), right.as_bytes()),
                order,
                "{left} vs {right}"
            );
        }
    }

    /// The regex and test of the first rule of an `operator:` line.
    fn judged(operator: &str) -> (RuleRegex, Box<MatchTest>) {
        let text = format!(
            "rules:\n  - id: 9\n    message: m\n    severity: critical\n    targets: [args]\n    operator: {operator}\n"
        );
        let rule = parse_file("t.yaml", &text)
            .unwrap_or_default()
            .pop()
            .map(|r| r.op);
        match rule {
            Some(Op::Regex {
                re,
                test: Some(test),
                ..
            }) => (re, test),
            _ => panic!("{operator} is not a regex with a test"),
        }
    }

    /// The fragment `data` reports under `operator`, if it counts.
    fn judge<'d>(operator: &str, data: &'d str) -> Option<&'d str> {
        let (re, test) = judged(operator);
        re.find_judged(&test, data.as_bytes(), &mut None)
            .map(|(s, e)| &data[s..e])
    }

    /// Every match is judged, leftmost first and without overlap, until one counts; it
    /// reports its group 1. A match of a branch without group 1 counts as it stands.
    #[test]
    fn each_match_counts_unless_its_group_is_listed() {
        let charset =
            r#"{regex: ';\s*charset=([a-z0-9-]+)|(?:double)', unless_in: [utf-8, latin1]}"#;
        assert_eq!(judge(charset, "a/b; charset=utf-7"), Some("utf-7"));
        assert_eq!(judge(charset, "a/b; charset=utf-8"), None);
        assert_eq!(judge(charset, "a/b;charset=utf-8;charset=latin1"), None);
        assert_eq!(
            judge(charset, "a/b;charset=utf-8;charset=utf-16;charset=x"),
            Some("utf-16")
        );
        assert_eq!(judge(charset, "a/b;charset=utf-8; double"), Some("double"));
        assert_eq!(judge(charset, "a/b; charset=utf-8x"), Some("utf-8x"));
        assert_eq!(judge(charset, "a/b; charset=utf"), Some("utf"));
        let folded = r#"{regex: 'charset=([A-Za-z0-9-]+)', unless_in: [UTF-8], ignore_case: true}"#;
        assert_eq!(judge(folded, "charset=uTf-8"), None);
        assert_eq!(judge(folded, "charset=UTF-7"), Some("UTF-7"));
        let exact = r#"{regex: 'charset=([A-Za-z0-9-]+)', unless_in: [UTF-8]}"#;
        assert_eq!(judge(exact, "charset=utf-8"), Some("utf-8"));
        // Empty matches step one byte, as `find_iter` does, and are judged too.
        let words = r#"{regex: '([a-z]*)', unless_in: [ok]}"#;
        assert_eq!(judge(words, "ok,ok"), Some(""));
        assert_eq!(
            judge(r#"{regex: '^([a-z]*)$', unless_in: [ok, '']}"#, ""),
            None
        );
    }

    /// A comparison reads its groups as numbers: it counts the match when it holds,
    /// reporting the groups it read; a group that took no part leaves the match counted
    /// as it stands, a group that is not a number never lets it count.
    #[test]
    fn comparisons_count_a_match_when_they_hold() {
        let range = r#"{regex: '^bytes=(\d+)-(\d+)|^bytes=(x)', compare: '$2 < $1'}"#;
        assert_eq!(judge(range, "bytes=150-120"), Some("150-120"));
        assert_eq!(judge(range, "bytes=120-150"), None);
        assert_eq!(judge(range, "bytes=0099-100"), None);
        assert_eq!(judge(range, "bytes=x"), Some("bytes=x"));
        let long = format!("bytes={}-{}", "9".repeat(300), "9".repeat(299));
        assert_eq!(judge(range, &long).map(str::len), Some(600));
        let port = r#"{regex: 'port=(\w+)', compare: '$1 > 65535'}"#;
        assert_eq!(judge(port, "port=80&port=65536"), Some("65536"));
        assert_eq!(judge(port, "port=065535"), None);
        assert_eq!(judge(port, "port=http"), None);
        let both = r#"{regex: '(a|b)=(\d+)', unless_in: [a], compare: '$2 >= 10'}"#;
        assert_eq!(judge(both, "a=99 b=9 b=10"), Some("b"));
        assert_eq!(judge(both, "a=99 b=9"), None);
    }

    /// Capture locations made for another regex (of a rule set loaded before, at the same
    /// index) are replaced, never used.
    #[test]
    fn capture_locations_serve_only_their_own_regex() {
        let (one, one_test) = judged(r#"{regex: 'x([a-z])', unless_in: [a]}"#);
        let (two, two_test) = judged(r#"{regex: '(\d+)-(\d+)-(\d+)', compare: '$3 < $2'}"#);
        let mut slot = None;
        assert_eq!(
            one.find_judged(&one_test, b"xa xc", &mut slot),
            Some((4, 5))
        );
        assert_eq!(
            slot.as_ref().map(|(s, l)| (*s, l.len())),
            Some((one.serial, 2))
        );
        assert_eq!(
            two.find_judged(&two_test, b"1-5-4", &mut slot),
            Some((2, 5))
        );
        assert_eq!(
            slot.as_ref().map(|(s, l)| (*s, l.len())),
            Some((two.serial, 4))
        );
        assert_ne!(one.serial, two.serial);
    }

    /// `not_regex` fires on every value the regex does not match, as the rule's
    /// transforms leave it, the empty one too, and on no value it matches anywhere.
    #[test]
    fn not_regex_fires_where_its_regex_does_not_match() {
        let text = "rules:\n  - id: 1\n    message: m\n    severity: critical\n    targets: [args]\n    transforms: [url_decode, lowercase]\n    operator: {not_regex: '^[a-z]+$'}\n    examples: {match: ['', ' ', a1, 'a b', '%00', '%C3%A9'], no_match: [a, ABC, '%41']}\n  - id: 2\n    message: m\n    severity: critical\n    targets: [args]\n    operator: {not_regex: 'ok'}\n    examples: {match: ['', o k, OK], no_match: [ok, 'not ok', okay]}\n";
        examples_hold("n.yaml", text);
    }

    /// `unless_in` alone judges the whole value as the rule's transforms leave it.
    #[test]
    fn unless_in_alone_judges_the_whole_value() {
        let text = "rules:\n  - id: 1\n    message: m\n    severity: critical\n    targets: [method]\n    operator: {unless_in: [GET, HEAD]}\n    examples: {match: [get, '', 'GET ', GETS, HEA], no_match: [GET, HEAD]}\n  - id: 2\n    message: m\n    severity: critical\n    targets: [args]\n    transforms: [lowercase]\n    operator: {unless_in: [utf-8]}\n    examples: {match: [utf-7, 'UTF-8;'], no_match: [UTF-8, utf-8]}\n";
        examples_hold("u.yaml", text);
    }

    /// Compiles the rule file `text` and asserts that every rule's examples hold.
    fn examples_hold(file: &str, text: &str) {
        let set = crate::RuleSet::from_yaml(file, text).expect("compiles");
        let failures: Vec<String> = set
            .check_examples()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(failures.is_empty(), "{failures:?}");
    }
}
