//! Inspection: one pass over the request's values, each transformed once per chain and
//! scanned once by that chain's automaton; rules then only check the hits (literal rules)
//! or run their regex when their required literals were seen.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use crate::classes::Classes;
use crate::request::{extract, Kind, Request, Value};
use crate::rule::{CaptureSlot, Condition, Op, Rule};
use crate::ruleset::{BodyWalk, Chain, Level, RuleSet, Scan, BODY_WALK_KINDS, SQL_KEYWORD};
use crate::settings::{Exclusion, Mode, OverLimit, WafSettings};
use crate::transform::{self, feature, Transform};
use crate::util::{half, same_bytes, word};
use crate::{classes, decode, detect, util};

/// Longest matched fragment kept in a match, in bytes.
pub const FRAGMENT_MAX: usize = 64;

/// Matches kept per request: enough to explain any verdict, bounded for hostile input.
pub const MATCHES_MAX: usize = 64;

/// Header names whose values are never echoed in matches.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
    "x-csrf-token",
];

/// Argument name fragments that mark a secret value.
const SECRET_ARGS: &[&str] = &["password", "passwd", "secret", "token", "api_key", "apikey"];

/// What the proxy should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forward the request.
    Pass,
    /// Forward, but the request reached the threshold in detect mode: report it.
    Detect,
    /// Refuse the request (see `Verdict::status`).
    Block,
}

/// One rule that fired, with enough to explain it in an audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub rule_id: u32,
    pub message: Arc<str>,
    pub tags: Vec<String>,
    /// Where it matched: `query_arg:q`, `header:user-agent`, `path`, `body_arg:user.name`...
    pub target: String,
    /// The matched part of the (transformed) value, at most 64 bytes, or `[redacted]`.
    pub fragment: String,
    pub score: u32,
    pub paranoia: u8,
}

/// The outcome of an inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    /// Sum of the scores of the rules that fired. A rule counts once per request however
    /// many values it matched, so one payload repeated in many fields is not overcounted;
    /// each matched value is still listed in `matches` (up to `MATCHES_MAX`; a short body
    /// value repeated with the same name, once).
    pub score: u32,
    pub threshold: u32,
    pub matches: Vec<Match>,
    /// The body (after content decoding) exceeded the limit and the settings say to reject
    /// such bodies.
    pub body_over_limit: bool,
    /// The body's `Content-Encoding` is unsupported or the compressed data is corrupt, so it
    /// could not be inspected; the request is refused rather than passed uninspected.
    pub body_undecodable: bool,
}

impl Verdict {
    /// The HTTP status to answer with when blocking: 413 for an oversized body, 400 for
    /// a body that could not be decoded, else 403.
    pub fn status(&self) -> Option<u16> {
        match self.action {
            Action::Block if self.body_over_limit => Some(413),
            Action::Block if self.body_undecodable => Some(400),
            Action::Block => Some(403),
            _ => None,
        }
    }
}

/// The WAF engine over one compiled rule set. Cheap to clone and share across threads.
#[derive(Debug, Clone)]
pub struct Engine {
    rules: Arc<RuleSet>,
}

impl Engine {
    /// Wraps a compiled rule set.
    pub fn new(rules: RuleSet) -> Engine {
        Engine {
            rules: Arc::new(rules),
        }
    }

    /// The rule set in use.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Inspects one request under `settings`, with the overrides of `route` if any.
    pub fn inspect(
        &self,
        req: &Request<'_>,
        settings: &WafSettings,
        route: Option<&str>,
    ) -> Verdict {
        let eff = settings.resolve(route);
        let mut verdict = Verdict {
            action: Action::Pass,
            score: 0,
            threshold: eff.threshold,
            matches: Vec::new(),
            body_over_limit: false,
            body_undecodable: false,
        };
        if eff.mode == Mode::Off {
            return verdict;
        }
        let refuse = |mut verdict: Verdict| {
            verdict.action = match eff.mode {
                Mode::Block => Action::Block,
                _ => Action::Detect,
            };
            verdict
        };
        let mut body = req.body;
        if body.len() > settings.body_limit {
            match settings.over_limit {
                OverLimit::Reject => {
                    verdict.body_over_limit = true;
                    return refuse(verdict);
                }
                OverLimit::InspectPrefix => body = &body[..settings.body_limit],
            }
        }
        let keep_prefix = settings.over_limit == OverLimit::InspectPrefix;
        let decoded = match decode::content(req, body, settings.body_limit, keep_prefix) {
            Ok(d) => d,
            Err(decode::Refused::TooLarge) => {
                verdict.body_over_limit = true;
                return refuse(verdict);
            }
            Err(decode::Refused::Undecodable) => {
                verdict.body_undecodable = true;
                return refuse(verdict);
            }
        };
        let body = match &decoded {
            Some(d) => d.as_slice(),
            None => body,
        };
        let mut names = String::new();
        let extracted = extract(req, body, &mut names);
        let set = &*self.rules;
        let automata = set.level(eff.paranoia);
        let facts = RequestFacts::new(req);
        let inspection = Inspection {
            set,
            automata,
            paranoia: eff.paranoia,
            exclusions: &eff.exclusions,
            facts: &facts,
            body,
            // Worth a walk of its own only when the body was parsed into values.
            body_walk: automata.body.as_ref().filter(|_| extracted.body_values > 0),
        };
        let mut scratch = Scratch::take(set);
        scratch.seen.start_request();
        scratch.body_walked = false;
        // Out of the scratch while a transformed value borrows them, so the scans may
        // still update the hit stamps; taken once per request, not per value.
        let mut buffers = std::mem::take(&mut scratch.buffers);
        for (index, value) in extracted.values.iter().enumerate() {
            if scratch.seen_before(&extracted.values, index) {
                continue;
            }
            let header_name = (value.kind == Kind::HeaderName)
                .then(|| CleanName::new(set.id, eff.paranoia, scratch.seen_seed, &value.data));
            if header_name.is_some_and(|name| scratch.clean_names.holds(name, &value.data)) {
                continue;
            }
            let matched_before = scratch.tests_matched;
            buffers.first.done = None;
            scratch.inspect_value_with(&mut buffers, &inspection, value, &mut verdict);
            if let Some(name) = header_name {
                if scratch.tests_matched == matched_before {
                    scratch.clean_names.remember(name, &value.data);
                }
            }
        }
        scratch.buffers = buffers;
        for &ri in &set.arg_count_rules {
            let ri = ri as usize;
            let rule = &set.rules[ri];
            if let Op::ArgCountOver(max) = rule.op {
                if rule.paranoia <= eff.paranoia
                    && extracted.arg_count > max
                    && rule.when.is_none_or(|c| facts.hold(c))
                    && !excluded(rule, &eff.exclusions, None)
                    && !scratch.scored[ri]
                {
                    verdict.score += rule.score;
                    verdict.matches.push(new_match(
                        rule,
                        "args".into(),
                        extracted.arg_count.to_string(),
                    ));
                }
            }
        }
        scratch.give_back();
        if verdict.score >= eff.threshold {
            verdict.action = match eff.mode {
                Mode::Block => Action::Block,
                _ => Action::Detect,
            };
        }
        verdict
    }
}

fn new_match(rule: &Rule, target: String, fragment: String) -> Match {
    Match {
        rule_id: rule.id,
        message: rule.message.clone(),
        tags: rule.tags.clone(),
        target,
        fragment,
        score: rule.score,
        paranoia: rule.paranoia,
    }
}

/// Whether an exclusion switches `rule` off for the value named `name` (`None`: the rule
/// as a whole, e.g. for request-wide checks).
fn excluded(rule: &Rule, exclusions: &[&Exclusion], name: Option<&str>) -> bool {
    exclusions.iter().any(|e| {
        let rule_hit = (e.rules.is_empty() && e.tags.is_empty())
            || e.rules.contains(&rule.id)
            || e.tags.iter().any(|t| rule.tags.iter().any(|rt| rt == t));
        let arg_hit = e.args.is_empty()
            || name.is_some_and(|n| e.args.iter().any(|a| a.eq_ignore_ascii_case(n)));
        rule_hit && arg_hit
    })
}

fn is_secret(value: &Value<'_>) -> bool {
    match value.kind {
        Kind::Cookie => true,
        Kind::Header => SECRET_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&value.name)),
        Kind::QueryArg | Kind::BodyArg => {
            let lower = value.name.to_ascii_lowercase();
            SECRET_ARGS.iter().any(|s| lower.contains(s))
        }
        _ => false,
    }
}

/// Values longer than this are checked for being untransformable before their classes
/// are taken (see `inspect_value_with`); for shorter ones the check would cost more than
/// the pass it may save.
const LONG_VALUE: usize = 256;

/// Longest value remembered to skip its repeats.
const SEEN_VALUE_MAX: usize = 64;
/// Most values remembered per request.
const SEEN_VALUES_MAX: usize = 1024;

/// A seeded hash of a value's kind, name and bytes, eight bytes per step.
fn value_hash(seed: u64, value: &Value<'_>) -> u64 {
    let h =
        seed ^ value.kind as u64 ^ (value.name.len() as u64) << 8 ^ (value.data.len() as u64) << 32;
    let h = hash_part(h, value.name.as_bytes());
    let h = hash_part(h, &value.data);
    h ^ h >> 31
}

/// The bytes of a part of at most eight bytes as one word, read as `hash_part` reads a
/// short part: different parts of one length give different words.
fn short_word(part: &[u8]) -> u64 {
    let n = part.len();
    if n >= 4 {
        u64::from(half(part)) | u64::from(half(&part[n - 4..])) << 32
    } else if n > 0 {
        u64::from(part[0]) | u64::from(part[n / 2]) << 8 | u64::from(part[n - 1]) << 16
    } else {
        0
    }
}

/// `h` with the bytes of `part` mixed in. The last word overlaps the one before it, and a
/// short part is read as two overlapping halves (or its first, middle and last byte):
/// every byte is in some word, and the lengths are in the seed, so equal hashes still mean
/// nothing until the bytes are compared, and no byte is read one at a time. A plain loop:
/// the parts are a word or a few, which an unrolled one spent more on setting up.
#[inline(always)]
fn hash_part(mut h: u64, part: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let step = |h: u64, word: u64| (h.rotate_left(23) ^ word).wrapping_mul(K);
    let n = part.len();
    if n >= 8 {
        let mut at = 8;
        while at < n {
            h = step(h, word(&part[at - 8..]));
            at += 8;
        }
        step(h, word(&part[n - 8..]))
    } else if n > 0 {
        step(h, short_word(part))
    } else {
        h
    }
}

/// The values remembered in one request, in an open-addressing table that a new request
/// empties by bumping a generation instead of clearing it: the table is looked up for
/// most body values, so a probe costs a few instructions.
struct SeenValues {
    /// (key, tag, generation that wrote the slot): a value's hash and index, or, for a
    /// short value without a name, the value itself (`EXACT`).
    slots: Vec<(u64, u32, u32)>,
    generation: u32,
    len: usize,
}

/// Tags at or above it hold a short value without a name whole: `EXACT`, its kind and its
/// length, with its bytes as the key; below it, a value's index, with its hash as the key.
const EXACT: u32 = 1 << 31;

impl SeenValues {
    /// Twice `SEEN_VALUES_MAX` slots, so probes stay short when it is full.
    const SLOTS: usize = 2 * SEEN_VALUES_MAX;

    fn new() -> SeenValues {
        SeenValues {
            slots: vec![(0, 0, 0); Self::SLOTS],
            generation: 0,
            len: 0,
        }
    }

    /// Forgets every value remembered so far.
    fn start_request(&mut self) {
        if self.generation == u32::MAX {
            self.slots.fill((0, 0, 0));
            self.generation = 0;
        }
        self.generation += 1;
        self.len = 0;
    }

    /// The tag remembered under `key` from the slot `hash` picks on: for an `EXACT` tag,
    /// the slot holding this key and tag; for an index, the first holding this key and an
    /// index. `None` after remembering `key` and `tag` (while fewer than
    /// `SEEN_VALUES_MAX` values are remembered).
    #[inline]
    fn find_or_insert(&mut self, hash: u64, key: u64, tag: u32) -> Option<u32> {
        let mask = Self::SLOTS - 1;
        // The top bits: a multiplicative hash mixes its input best there.
        let mut at = (hash >> (64 - Self::SLOTS.trailing_zeros())) as usize;
        loop {
            let (found, earlier, generation) = self.slots[at];
            if generation != self.generation {
                if self.len < SEEN_VALUES_MAX {
                    self.slots[at] = (key, tag, self.generation);
                    self.len += 1;
                }
                return None;
            }
            if found == key && (earlier == tag || earlier < EXACT && tag < EXACT) {
                return Some(earlier);
            }
            at = (at + 1) & mask;
        }
    }
}

/// Header names whose inspection matched no rule, remembered by a thread from request to
/// request: a request carries ten or twenty header names, nearly always the same ones,
/// and inspecting one to find nothing took about 460 instructions (a tenth of a GET's
/// header cost). A name is remembered only when no rule's test matched it at all, before
/// conditions (`when`) and exclusions were consulted: those depend on the request and the
/// route, the tests only on the name, the paranoia level and the rule set, which every
/// entry is kept under. Bytes are compared, so a hash collision never skips a name.
struct CleanNames {
    /// Direct-mapped by the name's hash: a new name takes its slot from whichever name
    /// held it, so the memory stays bounded and a lookup is one comparison.
    slots: Vec<Option<(CleanName, Box<[u8]>)>>,
}

/// Where a header name was found clean, with the name's hash.
#[derive(Clone, Copy, PartialEq, Eq)]
struct CleanName {
    set: u64,
    paranoia: u8,
    hash: u64,
}

impl CleanName {
    fn new(set: u64, paranoia: u8, seed: u64, name: &[u8]) -> CleanName {
        CleanName {
            set,
            paranoia,
            hash: hash_part(seed ^ name.len() as u64, name),
        }
    }
}

impl CleanNames {
    /// Slots: room for the usual names of a few kinds of client without many collisions.
    const SLOTS: usize = 256;
    /// Longer names are not remembered: the usual ones are short.
    const NAME_LEN_MAX: usize = 64;

    fn new() -> CleanNames {
        CleanNames {
            slots: vec![None; Self::SLOTS],
        }
    }

    fn slot(key: CleanName) -> usize {
        // The top bits: a multiplicative hash mixes its input best there.
        (key.hash >> (64 - Self::SLOTS.trailing_zeros())) as usize
    }

    fn holds(&self, key: CleanName, name: &[u8]) -> bool {
        matches!(&self.slots[Self::slot(key)], Some((k, n)) if *k == key && same_bytes(n, name))
    }

    fn remember(&mut self, key: CleanName, name: &[u8]) {
        if name.len() <= Self::NAME_LEN_MAX {
            self.slots[Self::slot(key)] = Some((key, name.into()));
        }
    }
}

thread_local! {
    /// The last `Scratch` used on this thread: requests reuse its buffers instead of
    /// allocating them anew.
    static SCRATCH: std::cell::Cell<Option<Scratch>> = const { std::cell::Cell::new(None) };
}

/// Per-request working memory: two transformation buffers and per-rule hit stamps, so
/// the hot loop allocates nothing per rule or per value.
pub(crate) struct Scratch {
    buffers: Buffers,
    stamp: u32,
    hit: Vec<u32>,
    span: Vec<(u32, u32)>,
    scored: Vec<bool>,
    /// Rules hit by the global scan of the current value's raw bytes.
    raw_hits: Vec<u32>,
    /// Rules hit by the scan of the current chain's transformed value.
    chain_hits: Vec<u32>,
    /// Whether those scans saw a possible SQL keyword.
    raw_keywords: bool,
    chain_keywords: bool,
    /// The global scan of a value changed by the shared first step alone, which serves
    /// every chain that leaves the value so (`Transformed::ByFirstStep`): most chains
    /// start by URL-decoding, and a value with a `%` was scanned once per chain. Its
    /// marks are kept apart from `hit` and `span`, where the raw scan's must survive it.
    step_stamp: u32,
    step_hit: Vec<u32>,
    step_span: Vec<(u32, u32)>,
    step_hits: Vec<u32>,
    step_keywords: bool,
    /// The short body values inspected so far in this request.
    seen: SeenValues,
    /// Every hit of the body walk (pattern, start, end), in order of their ends, once
    /// `body_walked`; abandoned (cleared, `body_walk_full`) past `BODY_HITS_MAX`.
    body_hits: Vec<(u32, u32, u32)>,
    /// The second half's hits while the body is walked in two halves.
    body_hits_later: Vec<(u32, u32, u32)>,
    body_walked: bool,
    body_walk_full: bool,
    /// The kinds (`Kind::bit`) of the body walk's hits: a JSON body's hits are all of
    /// argument patterns, and the raw body, which spans every hit, then skips its pass.
    body_hit_kinds: u32,
    /// Where the last value's hits began in `body_hits` (see `first_ending_after`).
    body_cursor: usize,
    /// The seed of those hashes, random per scratch (per thread).
    seen_seed: u64,
    /// How many times a rule's test matched a value, in this thread's inspections: a
    /// value whose inspection leaves it unchanged matched no rule at all.
    tests_matched: u64,
    /// Header names found to match no rule, kept from request to request.
    clean_names: CleanNames,
    /// Per rule, its capture locations once a test of its matches ran (`MatchTest`).
    captures: Vec<CaptureSlot>,
}

impl Scratch {
    pub(crate) fn new(set: &RuleSet) -> Scratch {
        Scratch {
            buffers: Buffers {
                a: Vec::with_capacity(256),
                b: Vec::with_capacity(256),
                first: FirstStep {
                    done: None,
                    out: Vec::with_capacity(256),
                    classes: 0,
                    features: 0,
                },
            },
            stamp: 0,
            hit: vec![0; set.rules.len()],
            span: vec![(0, 0); set.rules.len()],
            scored: vec![false; set.rules.len()],
            raw_hits: Vec::with_capacity(64),
            chain_hits: Vec::with_capacity(64),
            raw_keywords: false,
            chain_keywords: false,
            step_stamp: 0,
            step_hit: vec![0; set.rules.len()],
            step_span: vec![(0, 0); set.rules.len()],
            step_hits: Vec::with_capacity(64),
            step_keywords: false,
            seen: SeenValues::new(),
            body_hits: Vec::new(),
            body_hits_later: Vec::new(),
            body_walked: false,
            body_walk_full: false,
            body_hit_kinds: 0,
            body_cursor: 0,
            seen_seed: RandomState::new().hash_one(0u64),
            tests_matched: 0,
            clean_names: CleanNames::new(),
            captures: std::iter::repeat_with(|| None)
                .take(set.rules.len())
                .collect(),
        }
    }

    /// Whether a value identical to `values[index]` (same kind, name and bytes) was
    /// already inspected in this request: it cannot match anything new. Only short body
    /// values are remembered, the kinds that repeat (the keys of every object of a JSON
    /// array, tags, enumerations); hashing the long or one-off ones would cost more than
    /// it saves. A hash only finds the earlier value; the bytes are compared, so a crafted
    /// collision gets a value inspected, never skipped.
    ///
    /// A value of at most eight bytes without a name (a JSON key) is its own key, found
    /// without hashing it nor comparing it with the earlier one.
    fn seen_before(&mut self, values: &[Value<'_>], index: usize) -> bool {
        let value = &values[index];
        let n = value.data.len();
        if !matches!(value.kind, Kind::BodyArgName | Kind::BodyArg) || n > SEEN_VALUE_MAX {
            return false;
        }
        if n <= 8 && value.name.is_empty() {
            let tag = EXACT | (value.kind as u32) << 8 | n as u32;
            let bytes = short_word(&value.data);
            let hash =
                (bytes ^ self.seen_seed ^ u64::from(tag) << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            return self.seen.find_or_insert(hash, bytes, tag).is_some();
        }
        let key = value_hash(self.seen_seed, value);
        match self.seen.find_or_insert(key, key, index as u32) {
            Some(earlier) => {
                let earlier = &values[earlier as usize];
                // The body parser gives values of one key path one name: equal
                // pointers and lengths settle most names without reading them.
                earlier.kind == value.kind
                    && (std::ptr::eq(earlier.name.as_ref(), value.name.as_ref())
                        || same_bytes(earlier.name.as_bytes(), value.name.as_bytes()))
                    && same_bytes(&earlier.data, &value.data)
            }
            None => false,
        }
    }

    /// This thread's scratch, fitted to `set` and with no rule scored yet.
    fn take(set: &RuleSet) -> Scratch {
        match SCRATCH.take() {
            Some(mut s) if s.hit.len() == set.rules.len() => {
                s.scored.fill(false);
                s
            }
            _ => Scratch::new(set),
        }
    }

    /// Keeps the scratch for this thread's next request.
    fn give_back(self) {
        SCRATCH.set(Some(self));
    }

    fn inspect_value_with(
        &mut self,
        buffers: &mut Buffers,
        inspection: &Inspection<'_>,
        value: &Value<'_>,
        verdict: &mut Verdict,
    ) {
        let Inspection {
            set,
            automata,
            paranoia,
            exclusions,
            facts,
            ..
        } = *inspection;
        let bit = value.kind.bit();
        let level = usize::from(paranoia.clamp(1, 4)) - 1;
        let raw: &[u8] = &value.data;
        let mut classes = classes::Lazy::new(raw);
        let mut features = 0;
        // Stamp of the global scan of the raw value, done at most once and only when some
        // chain leaves the value unchanged, and the chains its hits belong to (bit i: chain
        // i; every bit when there are too many chains to tell).
        let mut raw_stamp = None;
        let mut raw_chains = 0u64;
        // The step whose result `step_hits` holds, with the scan's stamp and the chains of
        // its hits.
        let mut step_scan: Option<(Transform, u32, u64)> = None;
        let mut value_pairs = None;
        // With chain masks, the chains worth a look are picked in a few bit operations:
        // those the value's kind reaches, and of them the ones that transform it, need no
        // literal, or whose literals the raw scan saw (the scan is then done up front).
        let mut visit = !0u64;
        if let Some(masks) = &set.chain_masks {
            let reached = if value.kind == Kind::Header {
                masks.header_chains(&value.name, level)
            } else {
                masks.by_kind_at[value.kind as usize][level]
            } & masks.beyond_length(level, value.kind, raw.len());
            // A long value that no chain it reaches can transform (a raw body: its chains
            // are triggered by `BYTE_FEATURES` only, and it holds none of their bytes)
            // needs no features, and its classes only if a gate asks for them: its
            // features would trigger none of its chains, which 0 says as well.
            let untransformable = raw.len() > LONG_VALUE
                && masks.triggered_by_text & reached == 0
                && classes::lacks_byte_features(raw);
            if !untransformable {
                features = classes::features(classes.now());
            }
            let mut triggered = masks.triggered(features);
            // Chains woken only by a feature the order of bytes may rule out (a lone
            // `-`, single spaces): look at the order before running them for nothing.
            if features & feature::REFINABLE != 0
                && reached & triggered & !masks.triggered(features & !feature::REFINABLE) != 0
            {
                features = transform::refine(features, raw);
                triggered = masks.triggered(features);
            }
            let untriggered = reached & !triggered & !masks.emptied_untriggered;
            let unconditional_at = masks.unconditional_at[value.kind as usize][level];
            let mut unconditional = untriggered & unconditional_at;
            if untriggered & !unconditional_at != 0 {
                let stamp;
                (stamp, raw_chains) = self.scan_raw(inspection, value.kind, raw, classes);
                raw_stamp = Some(stamp);
                // Of the chains left as they are, those the scan saw nothing of can only
                // run their unconditional rules: drop them here when those reject the
                // value, as the loop would after a few more steps each.
                let idle = unconditional & !raw_chains;
                if idle != 0 {
                    unconditional &=
                        !idle | masks.unconditional_admitted(level, value.kind, &mut classes);
                }
            }
            visit = reached & (triggered | (untriggered & (raw_chains | unconditional)));
            // Chains that start by URL-decoding, none of whose later steps the decoded
            // value triggers, end with the shared first step's result: those whose
            // literals its scan did not see and whose unconditional rules it does not
            // admit are dropped together, instead of each finding so in the loop (a
            // cookie with one `%2C` visited 13 chains for nothing). A single such chain
            // would find the same in the loop at the same cost.
            let decoding = visit & masks.decoding_first;
            if features & feature::PERCENT != 0
                && decoding.count_ones() > 1
                && buffers.first.run(Transform::UrlDecode, raw)
            {
                let first = &buffers.first;
                let (stamp, chains) = self.scan_first_step(inspection, value.kind, &first.out);
                step_scan = Some((Transform::UrlDecode, stamp, chains));
                let settled = decoding & !masks.rest_triggered(first.features);
                let admitted = masks.unconditional_admitted(
                    level,
                    value.kind,
                    &mut classes::Lazy::known(first.classes),
                );
                visit &= !(settled & !chains & !admitted);
            }
        } else {
            features = classes::features(classes.now());
        }
        let mut order = ChainOrder::new(visit, set.chains.len(), set.chain_masks.is_some());
        while let Some(ci) = order.next() {
            let chain = &set.chains[ci];
            if chain.kinds_at[level] & bit == 0 {
                continue;
            }
            if value.kind == Kind::Header
                && set.chain_masks.is_none()
                && !self.chain_wants_header(set, chain, &value.name, paranoia)
            {
                continue;
            }
            let transforms = chain.triggers & features != 0;
            // Transformations that only remove or fold bytes cannot give the value a class
            // it lacks: if no rule of the chain can match with the value's classes, the
            // transformed copy and its scan would find nothing.
            if transforms && chain.creating & features == 0 {
                if !chain.gate(level, value.kind).admits_lazy(&mut classes) {
                    continue;
                }
                // When every rule waits for a literal, and the chain only drops bytes,
                // folds case or compresses whitespace, skip it if the copy would hold no
                // literal: the chain's automaton walks the value as if the dropped bytes
                // were gone (a fraction of the cost of a pair summary), or, for a
                // compression, no literal has all its byte pairs in the value.
                if !chain.unconditional_for(level, value.kind)
                    && chain.pair_breaking & features == 0
                {
                    let may_hit = if chain.compressing & features != 0 {
                        let pairs = *value_pairs.get_or_insert_with(|| classes::pairs(raw));
                        chain
                            .literal_pairs(level, value.kind)
                            .iter()
                            .any(|p| classes::pairs_within(p, &pairs))
                    } else {
                        automata.chains[ci]
                            .automaton
                            .as_ref()
                            .is_some_and(|ac| ac.occurs_once_dropped(raw))
                    };
                    if !may_hit {
                        continue;
                    }
                }
            }
            let (data, transformed) = if transforms {
                apply_chain(&chain.transforms, raw, features, buffers)
            } else if chain.empties_untriggered {
                (&[][..], Transformed::ByChain)
            } else {
                (raw, Transformed::Unchanged)
            };
            let (stamp, data_classes) = match transformed {
                Transformed::ByChain => {
                    let stamp = next_stamp(&mut self.stamp, &mut self.hit);
                    self.chain_keywords = scan_hits(
                        &automata.chains[ci],
                        data,
                        stamp,
                        &mut self.hit,
                        &mut self.span,
                        &mut self.chain_hits,
                    );
                    (stamp, Some(classes::of(data)))
                }
                Transformed::ByFirstStep(step, step_classes) => {
                    let (stamp, chains) = match step_scan {
                        Some((done, stamp, chains)) if done == step => (stamp, chains),
                        _ => {
                            let (stamp, chains) =
                                self.scan_first_step(inspection, value.kind, data);
                            step_scan = Some((step, stamp, chains));
                            (stamp, chains)
                        }
                    };
                    // As for an unchanged value below, with the first step's result.
                    if chains & (1 << (ci % 64)) == 0
                        && !chain.unconditional_admits(
                            level,
                            value.kind,
                            &mut classes::Lazy::known(step_classes),
                        )
                    {
                        continue;
                    }
                    (stamp, Some(step_classes))
                }
                Transformed::Unchanged => {
                    let stamp = match raw_stamp {
                        Some(stamp) => stamp,
                        None => {
                            let stamp;
                            (stamp, raw_chains) =
                                self.scan_raw(inspection, value.kind, raw, classes);
                            raw_stamp = Some(stamp);
                            stamp
                        }
                    };
                    // Unchanged by the chain, the value can only fire the chain's rules
                    // that the raw scan saw or that need no literal and admit the value.
                    if raw_chains & (1 << (ci % 64)) == 0
                        && !chain.unconditional_admits(level, value.kind, &mut classes)
                    {
                        continue;
                    }
                    // The raw value's classes, taken only if a rule's gate asks for them.
                    (stamp, None)
                }
            };
            // A chain's own scan holds only its rules; the global scans hold every chain's.
            let (hits, keywords, hit_stamps, spans) = match transformed {
                Transformed::ByChain => {
                    (&self.chain_hits, self.chain_keywords, &self.hit, &self.span)
                }
                Transformed::ByFirstStep(..) => (
                    &self.step_hits,
                    self.step_keywords,
                    &self.step_hit,
                    &self.step_span,
                ),
                Transformed::Unchanged => {
                    (&self.raw_hits, self.raw_keywords, &self.hit, &self.span)
                }
            };
            let own_scan = transformed == Transformed::ByChain;
            let chain_index = set.rule_chain[chain.rules[0] as usize];
            // The rules a value of its kind can reach; as the check below, for paranoia
            // levels past 4 (none) or below 1 (the check rejects every rule).
            let candidates = chain.unconditional_by(level, value.kind).iter().chain(
                hits.iter()
                    .filter(|&&r| own_scan || set.rule_chain[r as usize] == chain_index),
            );
            for &r in candidates {
                let r = r as usize;
                let rule = &set.rules[r];
                if rule.paranoia > paranoia || !rule.targets.covers(value.kind, &value.name) {
                    continue;
                }
                if !matches!(rule.op, Op::Literals)
                    && !match data_classes {
                        Some(c) => set.rule_gate[r].admits(c),
                        None => set.rule_gate[r].admits_lazy(&mut classes),
                    }
                {
                    continue;
                }
                let hit = (hit_stamps[r] == stamp).then_some(spans[r]);
                let Some((start, end)) = eval(rule, data, hit, keywords, &mut self.captures[r])
                else {
                    continue;
                };
                self.tests_matched += 1;
                if rule.when.is_some_and(|c| !facts.hold(c)) {
                    continue;
                }
                let name = (!value.name.is_empty()).then_some(value.name.as_ref());
                if excluded(rule, exclusions, name) {
                    continue;
                }
                if !self.scored[r] {
                    self.scored[r] = true;
                    verdict.score += rule.score;
                }
                if verdict.matches.len() >= MATCHES_MAX {
                    continue;
                }
                let target = if value.name.is_empty() {
                    value.kind.label().to_string()
                } else if value.kind == Kind::Header {
                    format!("header:{}", value.name.to_ascii_lowercase())
                } else {
                    format!("{}:{}", value.kind.label(), value.name)
                };
                let fragment = if is_secret(value) {
                    "[redacted]".to_string()
                } else {
                    util::fragment(&data[start as usize..end as usize], FRAGMENT_MAX)
                };
                verdict.matches.push(new_match(rule, target, fragment));
            }
        }
    }

    /// Scans a raw value with the global automaton of its kind into `raw_hits`; returns
    /// the scan's stamp and the chains of the rules it hit. The automaton may hold rules
    /// of other kinds (see `ruleset::kind_groups`): their hits are skipped by the target
    /// check like those of rules naming another header. The body and the values borrowed
    /// from it take their hits from the request's one body walk instead.
    fn scan_raw(
        &mut self,
        inspection: &Inspection<'_>,
        kind: Kind,
        raw: &[u8],
        classes: classes::Lazy<'_>,
    ) -> (u32, u64) {
        let set = inspection.set;
        let stamp = next_stamp(&mut self.stamp, &mut self.hit);
        match inspection.body_offset(kind, raw, classes) {
            Some((walk, offset)) if self.walk_body(walk, inspection.body) => {
                self.raw_keywords = self.hits_from_body_walk(walk, kind, raw, offset, stamp);
            }
            _ => {
                let scan =
                    &inspection.automata.global[usize::from(set.global_by_kind[kind as usize])];
                self.raw_keywords = scan_hits(
                    scan,
                    raw,
                    stamp,
                    &mut self.hit,
                    &mut self.span,
                    &mut self.raw_hits,
                );
            }
        }
        (stamp, chains_of(set, &self.raw_hits))
    }

    /// Scans the value as the shared first step left it (`Buffers::first`) with the
    /// global automaton of its kind into `step_hits`; returns the scan's stamp and the
    /// chains of the rules it hit.
    fn scan_first_step(
        &mut self,
        inspection: &Inspection<'_>,
        kind: Kind,
        data: &[u8],
    ) -> (u32, u64) {
        let set = inspection.set;
        let stamp = next_stamp(&mut self.step_stamp, &mut self.step_hit);
        let scan = &inspection.automata.global[usize::from(set.global_by_kind[kind as usize])];
        self.step_keywords = scan_hits(
            scan,
            data,
            stamp,
            &mut self.step_hit,
            &mut self.step_span,
            &mut self.step_hits,
        );
        (stamp, chains_of(set, &self.step_hits))
    }

    /// Walks the body once per request, keeping every hit; false when it held more hits
    /// than are kept (then each value is walked on its own, as without a body walk).
    fn walk_body(&mut self, walk: &BodyWalk, body: &[u8]) -> bool {
        if !self.body_walked {
            self.body_walked = true;
            self.body_walk_full = false;
            self.body_cursor = 0;
            self.body_hits.clear();
            if let Some(ac) = &walk.scan.automaton {
                self.body_walk_full = !ac.collect(
                    body,
                    &mut self.body_hits,
                    &mut self.body_hits_later,
                    BODY_HITS_MAX,
                );
            }
            if self.body_walk_full {
                self.body_hits.clear();
            }
            self.body_hit_kinds = self.body_hits.iter().fold(0, |kinds, &(p, _, _)| {
                kinds | walk.patterns[p as usize].kinds
            });
        }
        !self.body_walk_full
    }

    /// Records, as `scan_raw` would, the body walk's hits that lie within `raw`, which
    /// starts at `offset` in the body: the hits of `kind`'s patterns, with whole-word
    /// literals judged within `raw`. Returns whether a hit may be an SQL keyword.
    fn hits_from_body_walk(
        &mut self,
        walk: &BodyWalk,
        kind: Kind,
        raw: &[u8],
        offset: usize,
        stamp: u32,
    ) -> bool {
        self.raw_hits.clear();
        if self.body_hit_kinds & kind.bit() == 0 {
            return false;
        }
        let mut keywords = false;
        let end_of_value = offset + raw.len();
        let first = first_ending_after(&self.body_hits, self.body_cursor, offset);
        self.body_cursor = first;
        let bit = kind.bit();
        for &(p, start, end) in &self.body_hits[first..] {
            let (start, end) = (start as usize, end as usize);
            if end > end_of_value {
                break;
            }
            let pattern = walk.patterns[p as usize];
            if start < offset || pattern.kinds & bit == 0 {
                continue;
            }
            let (start, end) = (start - offset, end - offset);
            let Some(end) = walk
                .scan
                .counted_end(p as usize, pattern.flags, raw, start, end)
            else {
                continue;
            };
            keywords |= pattern.flags & SQL_KEYWORD != 0;
            mark(
                &mut self.hit,
                &mut self.span,
                &mut self.raw_hits,
                pattern.rule,
                stamp,
                start,
                end,
            );
        }
        keywords
    }

    /// Headers are many and most rules look at one header by name: skip chains none of
    /// whose rules look at this header.
    fn chain_wants_header(&self, set: &RuleSet, chain: &Chain, name: &str, paranoia: u8) -> bool {
        chain.rules.iter().any(|&r| {
            let rule = &set.rules[r as usize];
            rule.paranoia <= paranoia && rule.targets.covers(Kind::Header, name)
        })
    }

    /// Evaluates one rule on one value, ignoring targets and paranoia (for examples).
    pub(crate) fn eval_single(
        &mut self,
        set: &RuleSet,
        ri: usize,
        value: &[u8],
    ) -> Option<(u32, u32)> {
        let rule = &set.rules[ri];
        let chain = &set.chains[set.rule_chain[ri] as usize];
        // The top level holds every rule's literals.
        let scan = &set.level(4).chains[set.rule_chain[ri] as usize];
        self.buffers.first.done = None;
        let (data, _) = apply_chain(
            &chain.transforms,
            value,
            classes::features(classes::of(value)),
            &mut self.buffers,
        );
        let mut hit = None;
        if let Some(ac) = &scan.automaton {
            ac.scan(data, |p, start, end| {
                if hit.is_some() || scan.pattern_rule[p] as usize != ri {
                    return;
                }
                if let Some(end) = scan.counted_end(p, scan.pattern_flags[p], data, start, end) {
                    hit = Some((start as u32, end as u32));
                }
            });
        }
        eval(rule, data, hit, true, &mut self.captures[ri])
    }
}

/// What a request's values are inspected against: the rule set, the literal automata of
/// the request's paranoia level, and the settings that decide which rules count.
#[derive(Clone, Copy)]
struct Inspection<'r> {
    set: &'r RuleSet,
    automata: &'r Level,
    paranoia: u8,
    exclusions: &'r [&'r Exclusion],
    facts: &'r RequestFacts<'r>,
    /// The body (after content decoding), and its walk when the body has values.
    body: &'r [u8],
    body_walk: Option<&'r BodyWalk>,
}

/// The request-wide conditions of rules (`rule::Condition`), each worked out at most once
/// per request and only when a rule that depends on it matched.
struct RequestFacts<'r> {
    req: &'r Request<'r>,
    referer_off_site: Cell<Option<bool>>,
}

impl<'r> RequestFacts<'r> {
    fn new(req: &'r Request<'r>) -> RequestFacts<'r> {
        RequestFacts {
            req,
            referer_off_site: Cell::new(None),
        }
    }

    fn hold(&self, condition: Condition) -> bool {
        match condition {
            Condition::RefererOffSite => match self.referer_off_site.get() {
                Some(known) => known,
                None => {
                    let off_site = self.req.referer_off_site();
                    self.referer_off_site.set(Some(off_site));
                    off_site
                }
            },
            Condition::HasBody => self.req.has_body(),
            Condition::BodyTypedNotJson => {
                self.req.has_body()
                    && (self.req.header_value("transfer-encoding").is_some()
                        || (self.req.header_value("content-type").is_some()
                            && !self.req.json_content()))
            }
        }
    }
}

impl<'r> Inspection<'r> {
    /// The body walk and where `raw` starts in the body, when its hits can be taken from
    /// the walk: a value of a kind the walk serves, borrowed from the body, and holding no
    /// `"` or `\\` if an argument (the walk lacks the literals with those bytes).
    fn body_offset(
        &self,
        kind: Kind,
        raw: &[u8],
        mut classes: classes::Lazy<'_>,
    ) -> Option<(&'r BodyWalk, usize)> {
        let walk = self.body_walk?;
        if !BODY_WALK_KINDS.contains(&kind)
            || (kind != Kind::BodyRaw
                && classes.get() & (classes::DOUBLE_QUOTE | classes::BACKSLASH) != 0)
        {
            return None;
        }
        let offset = (raw.as_ptr() as usize).checked_sub(self.body.as_ptr() as usize)?;
        let end = offset + raw.len();
        // The walk leaves out the hits of a word's literal glued to a letter
        // (`Literals::count_as_words`), judging the glue by the body's bytes: a value whose
        // neighbours in the body glue could lose a hit at its edge to them, so it is walked
        // on its own. No value of the CRS or benign corpus takes this path (strings are
        // quoted, pairs split at `=` and `&`).
        let glues = |at: Option<usize>| {
            at.and_then(|at| self.body.get(at))
                .is_some_and(|&b| crate::scan::is_glue(b))
        };
        (end <= self.body.len() && !glues(offset.checked_sub(1)) && !glues(Some(end)))
            .then_some((walk, offset))
    }
}

/// The index of the first of `hits` (in order of their ends) that ends past `offset`,
/// found from `from`, where the previous value's hits began. Values come in body order,
/// so the answer is at or a few hits after `from`, and a request's cursor passes each
/// hit once: a binary search from the start cost about 80 instructions per body value.
fn first_ending_after(hits: &[(u32, u32, u32)], from: usize, offset: usize) -> usize {
    let ends_by = |&(_, _, end): &(u32, u32, u32)| end as usize <= offset;
    if from > hits.len() || from > 0 && !ends_by(&hits[from - 1]) {
        return hits.partition_point(ends_by);
    }
    from + hits[from..].iter().take_while(|hit| ends_by(hit)).count()
}

/// Most body walk hits kept per request (12 bytes each, 384 KiB in all): past them a
/// hostile body would cost memory in proportion to its size, so each value is walked on
/// its own instead. English prose holds a paranoia-2 literal every 4 bytes or so (`and`,
/// `or`, `select` of the SQL rules, and each rule's copy of a shared literal is a hit of
/// its own): 17.6 k hits in the 64 KiB bench body, whose walk at 16 k was abandoned and
/// both of its values walked again (2.4 M instructions of its 5.8 M).
pub(crate) const BODY_HITS_MAX: usize = 32 * 1024;

/// The two buffers transformations ping-pong between.
#[derive(Default)]
struct Buffers {
    a: Vec<u8>,
    b: Vec<u8>,
    first: FirstStep,
}

/// The first step some chain applied to the current value, kept for the other chains
/// whose first triggered step is the same: most chains start by URL-decoding, and a value
/// with a `%` was decoded once per chain (a cookie six times in the bench's requests).
#[derive(Default)]
struct FirstStep {
    /// The step and whether it changed the value, or `None` for a new value.
    done: Option<(Transform, bool)>,
    out: Vec<u8>,
    /// The byte classes of `out` when the step changed the value, by which rules judge
    /// it, and their features: the chains' later steps whose trigger they lack leave it
    /// as it is and are skipped, as the first steps are by the input's.
    classes: Classes,
    features: u16,
}

impl FirstStep {
    /// Applies `step` to the value `input` unless it was the last step applied to it;
    /// returns whether it changed the value.
    fn run(&mut self, step: Transform, input: &[u8]) -> bool {
        match self.done {
            Some((done, changed)) if done == step => changed,
            _ => {
                let changed = step.apply(input, &mut self.out);
                self.done = Some((step, changed));
                if changed {
                    self.classes = classes::of(&self.out);
                    self.features = classes::features(self.classes);
                }
                changed
            }
        }
    }
}

/// The chains (bit i: chain i) of the rules in `hits`; every bit when there are too many
/// chains to tell.
fn chains_of(set: &RuleSet, hits: &[u32]) -> u64 {
    if set.chains.len() > 64 {
        return !0;
    }
    hits.iter()
        .fold(0, |acc, &r| acc | 1 << set.rule_chain[r as usize])
}

/// The chains to look at for one value, in index order: the set bits of a mask, or every
/// chain when the rule set has too many chains for masks.
struct ChainOrder {
    mask: u64,
    next: usize,
    count: usize,
    masked: bool,
}

impl ChainOrder {
    fn new(mask: u64, count: usize, masked: bool) -> ChainOrder {
        ChainOrder {
            mask,
            next: 0,
            count,
            masked,
        }
    }

    fn next(&mut self) -> Option<usize> {
        if self.masked {
            if self.mask == 0 {
                return None;
            }
            let ci = self.mask.trailing_zeros() as usize;
            self.mask &= self.mask - 1;
            Some(ci)
        } else if self.next < self.count {
            self.next += 1;
            Some(self.next - 1)
        } else {
            None
        }
    }
}

/// A fresh stamp for one scan. Stamps only grow, so hits recorded by earlier scans (of
/// this request or an earlier one on this thread) never count for the new one; on
/// wrap-around every recorded hit is forgotten first.
fn next_stamp(stamp: &mut u32, hit: &mut [u32]) -> u32 {
    if *stamp == u32::MAX {
        hit.fill(0);
        *stamp = 0;
    }
    *stamp += 1;
    *stamp
}

/// Records the first literal hit of rule `r` in the scan stamped `stamp`.
fn mark(
    hit: &mut [u32],
    span: &mut [(u32, u32)],
    hits: &mut Vec<u32>,
    r: u32,
    stamp: u32,
    start: usize,
    end: usize,
) {
    let i = r as usize;
    if hit[i] != stamp {
        hit[i] = stamp;
        span[i] = (start as u32, end as u32);
        hits.push(r);
    }
}

/// Applies a chain, ping-ponging between two buffers and borrowing the input while no
/// step changes it. While the value is still the input, steps whose trigger feature is
/// absent from `features` (the input's) are skipped without scanning. The first step that
/// runs takes its result from `buffers.first` when an earlier chain ran the same step on
/// the same value (the caller empties it for each value). Returns the result and where it
/// is.
fn apply_chain<'x>(
    transforms: &[Transform],
    input: &'x [u8],
    features: u16,
    buffers: &'x mut Buffers,
) -> (&'x [u8], Transformed) {
    let Buffers { a, b, first } = buffers;
    // Where the value is: 0 the input, 1 `a`, 2 `b`, 3 `first.out`.
    let mut cur = 0u8;
    for &t in transforms {
        if cur == 0 && features & t.trigger() == 0 {
            if t.empties_untriggered() {
                return (&[], Transformed::ByChain);
            }
            continue;
        }
        cur = match cur {
            0 => {
                if first.run(t, input) {
                    3
                } else {
                    0
                }
            }
            3 => {
                if first.features & t.trigger() == 0 {
                    if t.empties_untriggered() {
                        return (&[], Transformed::ByChain);
                    }
                    3
                } else if t.apply(&first.out, a) {
                    1
                } else {
                    3
                }
            }
            1 => {
                if t.apply(a, b) {
                    2
                } else {
                    1
                }
            }
            _ => {
                if t.apply(b, a) {
                    1
                } else {
                    2
                }
            }
        };
    }
    match cur {
        0 => (input, Transformed::Unchanged),
        1 => (a, Transformed::ByChain),
        2 => (b, Transformed::ByChain),
        _ => (
            &first.out,
            match first.done {
                Some((step, _)) => Transformed::ByFirstStep(step, first.classes),
                None => Transformed::ByChain,
            },
        ),
    }
}

/// Where a chain left a value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transformed {
    /// Unchanged: the input itself.
    Unchanged,
    /// Changed by the shared first step alone (`Buffers::first`), as by every chain that
    /// starts with that step and whose other steps leave its result as it is.
    ByFirstStep(Transform, Classes),
    /// Changed by steps of this chain.
    ByChain,
}

/// Scans `data` with `scan`, recording each rule's first hit under `stamp` and listing the
/// rules hit in `hits` (cleared first). Returns whether a hit may be an SQL keyword.
fn scan_hits(
    scan: &Scan,
    data: &[u8],
    stamp: u32,
    hit: &mut [u32],
    span: &mut [(u32, u32)],
    hits: &mut Vec<u32>,
) -> bool {
    hits.clear();
    let mut keywords = false;
    if let Some(ac) = &scan.automaton {
        ac.scan(data, |p, start, end| {
            let flags = scan.pattern_flags[p];
            let Some(end) = scan.counted_end(p, flags, data, start, end) else {
                return;
            };
            keywords |= flags & SQL_KEYWORD != 0;
            mark(hit, span, hits, scan.pattern_rule[p], stamp, start, end);
        });
    }
    keywords
}

/// Runs a rule's operator; `hit` is the span of its first literal seen by the prefilter,
/// `keywords` whether the prefilter saw anything the SQL detector reads as a keyword,
/// `captures` the rule's capture locations in this thread's scratch. Inlined by force:
/// since it judges matches too, the compiler kept it out of line, and its 78 calls per
/// JSON request of the bench cost 1.3 k instructions more.
#[inline(always)]
fn eval(
    rule: &Rule,
    data: &[u8],
    hit: Option<(u32, u32)>,
    keywords: bool,
    captures: &mut CaptureSlot,
) -> Option<(u32, u32)> {
    let span = |s: usize, e: usize| Some((s as u32, e as u32));
    match &rule.op {
        Op::Literals => hit,
        Op::Regex {
            re,
            prefiltered,
            test,
        } => {
            if *prefiltered && hit.is_none() {
                return None;
            }
            match test {
                None => re.find(data),
                Some(test) => re.find_judged(test, data, captures),
            }
            .and_then(|(start, end)| span(start, end))
        }
        Op::UnlessIn(list) => span(0, data.len()).filter(|_| !list.holds(data)),
        // A miss has no span: the whole value is reported.
        Op::NotRegex(re) => span(0, data.len()).filter(|_| re.misses(data)),
        Op::BytesOutside(allowed) => data
            .iter()
            .position(|&b| !allowed[usize::from(b)])
            .and_then(|i| span(i, i + 1)),
        Op::LengthOver(max) => {
            (data.len() > *max).then(|| (0, data.len().min(FRAGMENT_MAX) as u32))
        }
        Op::ArgCountOver(_) => None,
        Op::InvalidUrlEncoding => {
            util::invalid_url_encoding(data).and_then(|i| span(i, (i + 3).min(data.len())))
        }
        // The tokenizer runs only when the value holds a quote, a logic operator or a
        // statement keyword (its built-in prefilter literals), without which no judged
        // shape can form.
        Op::Sqli => hit
            .and_then(|_| detect::sqli(data, keywords))
            .and_then(|(s, e)| span(s, e)),
        Op::SqlTautology => hit
            .and_then(|_| detect::sql_tautology(data))
            .and_then(|(s, e)| span(s, e)),
        Op::Xss => detect::xss(data).and_then(|(s, e)| span(s, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::{SeenValues, SEEN_VALUES_MAX};

    #[test]
    fn hits_found_from_a_cursor_are_those_a_binary_search_finds() {
        let mut rng = crate::test_rng::Rng(0x51ed_2701);
        for len in 0..40 {
            let mut ends: Vec<u32> = (0..len).map(|_| rng.below(60) as u32).collect();
            ends.sort_unstable();
            let hits: Vec<(u32, u32, u32)> = ends.iter().map(|&e| (0, 0, e)).collect();
            for offset in 0..64 {
                let expected = hits.partition_point(|&(_, _, end)| end as usize <= offset);
                for from in 0..=len + 1 {
                    let got = super::first_ending_after(&hits, from, offset);
                    assert_eq!(got, expected, "{ends:?} from {from} offset {offset}");
                }
            }
        }
    }

    /// A body value's hits taken from the one body walk (skipped when the walk hit no
    /// pattern of its kind, read through the walk's pattern table) are those a scan of the
    /// value alone with its kind's automaton finds: the same rules, each with the same
    /// first span, and the same keyword flag.
    #[test]
    fn body_values_take_from_the_walk_the_hits_of_their_own_scan() {
        use super::{next_stamp, scan_hits, Inspection, RequestFacts, Scratch};
        use crate::classes::Lazy;
        use crate::request::{extract, Request};
        use std::collections::BTreeMap;
        let set = crate::ruleset::RuleSet::embedded().expect("rules compile");
        let documents = include_str!("../tests/benign/documents.jsonl");
        let mut bodies: Vec<(&str, Vec<u8>)> = documents
            .lines()
            .map(|line| ("application/json", line.as_bytes().to_vec()))
            .collect();
        for prose in [
            include_str!("../tests/benign/prose.txt"),
            include_str!("../tests/benign/technical.txt"),
        ] {
            for line in prose.lines().filter(|l| !l.is_empty()) {
                let escaped = line.replace('\\', "\\\\").replace('"', "\\\"");
                let json = format!(r#"{{"text":"{escaped}","n":["{escaped}",1]}}"#);
                bodies.push(("application/json", json.into_bytes()));
                bodies.push(("text/plain", line.as_bytes().to_vec()));
                let form = format!("a={}&b=or 1=1", line.replace(['&', '='], " "));
                bodies.push(("application/x-www-form-urlencoded", form.into_bytes()));
            }
        }
        for attack in [
            r#"{"q":"1' union select password from users--","x":"<script>alert(1)</script>"}"#,
            r#"{"cmd":"; cat /etc/passwd","path":"../../etc/shadow","t":"${jndi:ldap://x}"}"#,
            r#"{"a":"select","or":"not","w":"ping -c 1 sh","<svg onload=x>":"id"}"#,
            r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>"#,
        ] {
            bodies.push(("application/json", attack.as_bytes().to_vec()));
            bodies.push(("text/plain", attack.as_bytes().to_vec()));
        }
        let mut compared = 0;
        for paranoia in 1..=2u8 {
            let automata = set.level(paranoia);
            for (content_type, body) in &bodies {
                let req = Request::new("POST", "/")
                    .header("content-type", content_type.as_bytes())
                    .body(body);
                let mut names = String::new();
                let extracted = extract(&req, body, &mut names);
                let facts = RequestFacts::new(&req);
                let inspection = Inspection {
                    set: &set,
                    automata,
                    paranoia,
                    exclusions: &[],
                    facts: &facts,
                    body,
                    body_walk: automata.body.as_ref().filter(|_| extracted.body_values > 0),
                };
                let mut scratch = Scratch::new(&set);
                for value in &extracted.values {
                    let raw: &[u8] = &value.data;
                    let Some((walk, offset)) =
                        inspection.body_offset(value.kind, raw, Lazy::new(raw))
                    else {
                        continue;
                    };
                    if !scratch.walk_body(walk, body) {
                        continue;
                    }
                    let stamp = next_stamp(&mut scratch.stamp, &mut scratch.hit);
                    let keywords =
                        scratch.hits_from_body_walk(walk, value.kind, raw, offset, stamp);
                    let walked: BTreeMap<u32, (u32, u32)> = scratch
                        .raw_hits
                        .iter()
                        .map(|&r| (r, scratch.span[r as usize]))
                        .collect();
                    let scan =
                        &automata.global[usize::from(set.global_by_kind[value.kind as usize])];
                    let (mut hit, mut span) =
                        (vec![0; set.rules.len()], vec![(0, 0); set.rules.len()]);
                    let mut hits = Vec::new();
                    let own_keywords = scan_hits(scan, raw, 1, &mut hit, &mut span, &mut hits);
                    let own: BTreeMap<u32, (u32, u32)> =
                        hits.iter().map(|&r| (r, span[r as usize])).collect();
                    let what = String::from_utf8_lossy(raw);
                    assert_eq!(walked, own, "{:?} {what:?}", value.kind);
                    assert_eq!(keywords, own_keywords, "{:?} {what:?}", value.kind);
                    compared += 1;
                }
            }
        }
        assert!(compared > 1000, "{compared} values compared");
    }

    /// The body walk leaves out a word's literal glued to a letter of the body, which a
    /// value starting or ending there would see standing alone: such a value is walked on
    /// its own.
    #[test]
    fn a_value_glued_to_its_neighbours_in_the_body_is_walked_on_its_own() {
        use super::{Inspection, RequestFacts, Scratch};
        use crate::classes::Lazy;
        use crate::request::{Kind, Request};
        let set = crate::ruleset::RuleSet::embedded().expect("rules compile");
        let automata = set.level(1);
        let body = b"door 1=1 or 2=2y";
        let req = Request::new("POST", "/").body(body);
        let facts = RequestFacts::new(&req);
        let inspection = Inspection {
            set: &set,
            automata,
            paranoia: 1,
            exclusions: &[],
            facts: &facts,
            body,
            body_walk: automata.body.as_ref(),
        };
        let walk = automata.body.as_ref().expect("a body walk");
        let mut scratch = Scratch::new(&set);
        assert!(scratch.walk_body(walk, body));
        let walked_ends: Vec<u32> = scratch.body_hits.iter().map(|&(_, _, end)| end).collect();
        assert!(
            !walked_ends.contains(&4) && walked_ends.contains(&11),
            "the glued `or` is left out, the free one kept: {walked_ends:?}"
        );
        let offset = |value: &[u8]| inspection.body_offset(Kind::BodyArg, value, Lazy::new(value));
        for glued in [&body[2..8], &body[9..15], &body[2..15]] {
            assert!(
                offset(glued).is_none(),
                "{:?}",
                String::from_utf8_lossy(glued)
            );
        }
        assert_eq!(offset(&body[5..8]).map(|(_, at)| at), Some(5));
    }

    /// A long value found untransformable (`inspect_value_with`) takes features 0 and
    /// lazy classes: with its true features, the chains it reaches would not be
    /// triggered nor transform it either, at every level.
    #[test]
    fn untransformable_values_are_those_the_full_classes_leave_untransformed() {
        use crate::classes;
        use crate::request::Kind;
        let set = crate::ruleset::RuleSet::embedded().expect("rules compile");
        let masks = set.chain_masks.as_ref().expect("at most 64 chains");
        let mut fast = 0;
        for body in classes::tests::sample_bodies() {
            let features = classes::features(classes::of(&body));
            for level in 0..4 {
                let reached = masks.by_kind_at[Kind::BodyRaw as usize][level];
                let untransformable = body.len() > super::LONG_VALUE
                    && masks.triggered_by_text & reached == 0
                    && classes::lacks_byte_features(&body);
                if !untransformable {
                    continue;
                }
                fast += 1;
                assert_eq!(masks.triggered(features) & reached, 0, "{body:?}");
                assert_eq!(masks.triggered(0) & reached, 0);
                for ci in (0..set.chains.len()).filter(|ci| reached >> ci & 1 != 0) {
                    assert_eq!(set.chains[ci].triggers & features, 0, "chain {ci}");
                }
            }
        }
        assert!(fast > 100, "the fast path was taken {fast} times");
    }

    /// Every byte of a value's name and bytes reaches its hash, at every length around
    /// the word sizes (a byte left out would let differing values share a hash far more
    /// often than chance; the bytes are compared anyway, so that would cost time only).
    #[test]
    fn value_hash_depends_on_every_byte() {
        use super::{value_hash, Kind, Value};
        use std::borrow::Cow;
        let base: Vec<u8> = (0..40u8).map(|b| b'a' + b % 26).collect();
        let hash = |name: &[u8], data: &[u8]| {
            let name = std::str::from_utf8(name).unwrap_or_default();
            value_hash(
                7,
                &Value {
                    kind: Kind::BodyArg,
                    name: Cow::Borrowed(name),
                    data: Cow::Borrowed(data),
                },
            )
        };
        for len in 0..40 {
            let a = &base[..len];
            for at in 0..len {
                let mut b = a.to_vec();
                b[at] ^= 0x01;
                assert_ne!(hash(a, b"v"), hash(&b, b"v"), "name {len} {at}");
                assert_ne!(hash(b"n", a), hash(b"n", &b), "data {len} {at}");
            }
        }
        assert_ne!(hash(b"ab", b"c"), hash(b"a", b"bc"));
    }

    /// A value is skipped exactly when an identical one (kind, name, bytes) was
    /// remembered earlier in the request, and the first `SEEN_VALUES_MAX` distinct short
    /// body values are remembered, whether found by hash or, short and without a name,
    /// whole: names without a value's bytes, lengths, kinds and byte orders that the short
    /// words could confuse do not, and repeats in any order do.
    #[test]
    fn repeats_are_skipped_exactly_as_a_list_of_remembered_values_says() {
        use super::{Kind, Scratch, Value, SEEN_VALUE_MAX};
        use std::borrow::Cow;
        let set = crate::ruleset::RuleSet::embedded().expect("rules compile");
        let mut scratch = Scratch::new(&set);
        let mut rng = crate::test_rng::Rng(0x5ee7_0b5e_55ed);
        let names = ["", "", "a", "order.items.tags", "order.items.tagz", "b"];
        let kinds = [
            Kind::BodyArgName,
            Kind::BodyArg,
            Kind::QueryArg,
            Kind::Header,
        ];
        let copy = |v: &Value<'static>| Value {
            kind: v.kind,
            name: v.name.clone(),
            data: v.data.clone(),
        };
        let alphabet = b"ab\0\xff";
        for round in 0..200 {
            // A pool of values and near misses of them (one byte changed, one more byte,
            // another kind or name), drawn from with repeats; every tenth round holds more
            // distinct values than are remembered, then draws repeats of them all.
            let capped = round % 10 == 9;
            let size = if capped {
                3 * SEEN_VALUES_MAX
            } else {
                1 + rng.below(40)
            };
            let mut pool: Vec<Value<'_>> = Vec::new();
            while pool.len() < size {
                let value = match pool.len().checked_sub(1).map(|last| (last, rng.below(5))) {
                    Some((last, 0)) if !pool[last].data.is_empty() => {
                        let mut data = pool[last].data.to_vec();
                        let at = rng.below(data.len());
                        data[at] = data[at].wrapping_add(1);
                        Value {
                            data: Cow::Owned(data),
                            ..copy(&pool[last])
                        }
                    }
                    Some((last, 1)) => {
                        let mut data = pool[last].data.to_vec();
                        data.push(alphabet[rng.below(alphabet.len())]);
                        Value {
                            data: Cow::Owned(data),
                            ..copy(&pool[last])
                        }
                    }
                    Some((last, 2)) => Value {
                        kind: kinds[rng.below(kinds.len())],
                        name: Cow::Borrowed(names[rng.below(names.len())]),
                        ..copy(&pool[last])
                    },
                    _ => {
                        let len = match rng.below(3) {
                            0 => rng.below(SEEN_VALUE_MAX + 8),
                            _ => rng.below(10),
                        };
                        let data = if capped {
                            format!("{}", pool.len()).into_bytes()
                        } else {
                            (0..len)
                                .map(|_| alphabet[rng.below(alphabet.len())])
                                .collect()
                        };
                        Value {
                            kind: kinds[rng.below(kinds.len())],
                            name: Cow::Borrowed(names[rng.below(names.len())]),
                            data: Cow::Owned(data),
                        }
                    }
                };
                pool.push(value);
            }
            let mut values: Vec<Value<'_>> = if capped {
                pool.iter().map(copy).collect()
            } else {
                Vec::new()
            };
            for _ in 0..rng.below(300) + if capped { 1000 } else { 0 } {
                values.push(copy(&pool[rng.below(pool.len())]));
            }
            scratch.seen.start_request();
            let mut remembered: Vec<&Value<'_>> = Vec::new();
            for (index, value) in values.iter().enumerate() {
                let same = |v: &&Value<'_>| {
                    v.kind == value.kind && v.name == value.name && v.data == value.data
                };
                let expected = remembered.iter().any(same);
                assert_eq!(scratch.seen_before(&values, index), expected, "{value:?}");
                let eligible = matches!(value.kind, Kind::BodyArgName | Kind::BodyArg)
                    && value.data.len() <= SEEN_VALUE_MAX;
                if eligible && !expected && remembered.len() < SEEN_VALUES_MAX {
                    remembered.push(value);
                }
            }
        }
    }

    #[test]
    fn seen_values_find_colliding_slots_forget_per_request_and_stay_bounded() {
        let mut seen = SeenValues::new();
        seen.start_request();
        // Three hashes with the same top bits: one slot, probed in turn.
        let (a, b, c) = (7u64, 8u64, 9u64);
        for (i, hash) in [a, b, c].into_iter().enumerate() {
            assert_eq!(seen.find_or_insert(hash, hash, i as u32), None);
        }
        assert_eq!(seen.find_or_insert(b, b, 9), Some(1));
        assert_eq!(seen.find_or_insert(c, c, 9), Some(2));
        seen.start_request();
        assert_eq!(seen.find_or_insert(b, b, 5), None);
        assert_eq!(seen.find_or_insert(b, b, 6), Some(5));
        // Past the cap nothing more is remembered, and lookups still end.
        seen.start_request();
        let spread = |n: u64| n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for n in 0..(SEEN_VALUES_MAX as u64 + 10) {
            assert_eq!(seen.find_or_insert(spread(n), spread(n), n as u32), None);
        }
        assert_eq!(seen.find_or_insert(spread(1), spread(1), 0), Some(1));
        let late = spread(SEEN_VALUES_MAX as u64 + 1);
        assert_eq!(seen.find_or_insert(late, late, 0), None);
        assert_eq!(seen.find_or_insert(late, late, 0), None);
        // When the generation wraps, slots written long ago must not come back.
        seen.generation = u32::MAX - 1;
        seen.start_request();
        assert_eq!(seen.find_or_insert(11, 11, 1), None);
        seen.start_request();
        assert_eq!(seen.generation, 1);
        assert_eq!(seen.find_or_insert(11, 11, 2), None);
        // A whole short value and a hash with the same key and slot stay apart.
        seen.start_request();
        let exact = super::EXACT | 3;
        assert_eq!(seen.find_or_insert(a, a, exact), None);
        assert_eq!(seen.find_or_insert(a, a, 4), None);
        assert_eq!(seen.find_or_insert(a, a, 5), Some(4));
        assert_eq!(seen.find_or_insert(a, a, exact), Some(exact));
        assert_eq!(seen.find_or_insert(a, a, exact + 1), None);
        assert_eq!(seen.find_or_insert(a, a, exact + 1), Some(exact + 1));
    }
}
