//! A loaded rule set, compiled once: rules grouped by transformation chain, and per
//! paranoia level one Aho-Corasick automaton per chain holding every literal of the
//! chain's rules at that level or below.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::classes::{self, Gate, GateSet};
use crate::error::RuleError;
use crate::request::{Kind, KIND_COUNT};
use crate::rule::{parse_file, Op, Placement, Rule};
use crate::scan::Literals;
use crate::settings::WafSettings;
use crate::transform::Transform;

/// The base rules shipped in the binary, one file per attack class.
const EMBEDDED: &[(&str, &str)] = &[
    ("protocol.yaml", include_str!("../rules/protocol.yaml")),
    ("scanners.yaml", include_str!("../rules/scanners.yaml")),
    ("lfi.yaml", include_str!("../rules/lfi.yaml")),
    ("rfi.yaml", include_str!("../rules/rfi.yaml")),
    ("rce.yaml", include_str!("../rules/rce.yaml")),
    ("ssti.yaml", include_str!("../rules/ssti.yaml")),
    ("ssrf.yaml", include_str!("../rules/ssrf.yaml")),
    ("jndi.yaml", include_str!("../rules/jndi.yaml")),
    ("xxe.yaml", include_str!("../rules/xxe.yaml")),
    ("xss.yaml", include_str!("../rules/xss.yaml")),
    ("sqli.yaml", include_str!("../rules/sqli.yaml")),
];

/// Rules sharing one transformation chain.
pub(crate) struct Chain {
    pub transforms: Vec<Transform>,
    /// Indices into `RuleSet::rules`.
    pub rules: Vec<u32>,
    /// The chain's rules that must be evaluated on every value they target (operators
    /// without literals); the others run only when the prefilter saw one of their literals.
    pub unconditional: Vec<u32>,
    /// Per paranoia level and value kind (`level * KIND_COUNT + kind`), those of
    /// `unconditional`, in order, of that level or below that target the kind: an
    /// argument name would otherwise walk every unconditional rule of the chain to reject
    /// most by their targets.
    pub unconditional_by: Vec<Vec<u32>>,
    /// Union of the `Kind` bits the chain's rules target (skip values no rule looks at).
    pub kinds: u32,
    /// Union of the chain's transformation triggers (see `transform::feature`).
    pub triggers: u16,
    /// Whether a value none of `triggers` occurs in becomes empty rather than staying
    /// as it is (a step `Transform::empties_untriggered`).
    pub empties_untriggered: bool,
    /// `kinds` restricted to rules of paranoia <= index + 1.
    pub kinds_at: [u32; 4],
    /// The triggers of the chain's transformations that can put bytes of a class into a
    /// value that it did not hold (decoders); without them, transforming only removes or
    /// folds bytes and the value's classes bound those of the result.
    pub creating: u16,
    /// Per paranoia level and value kind (`level * KIND_COUNT + kind`), what a value
    /// needs for a rule of the chain of that level or below targeting the kind to match:
    /// a rule looking only at argument names does not open the gate for every value.
    /// Headers are one kind here, whatever header a rule names.
    pub gate_at: Vec<Gate>,
    /// The kinds (`Kind` bits) targeted by a rule of `unconditional` of paranoia
    /// <= index + 1.
    pub unconditional_at: [u32; 4],
    /// Per paranoia level and value kind (`level * KIND_COUNT + kind`), what a value needs
    /// for one of `unconditional`'s rules of that level or below targeting the kind to
    /// match. A value the chain leaves as it is, in which the raw scan saw none of the
    /// chain's literals, is skipped without it: most of them (short tokens, prose) would
    /// only walk the chain's unconditional rules to reject each by its target or gate.
    pub unconditional_gate: Vec<Gate>,
    /// The bytes the chain's steps remove (whitespace, NUL): its automata walk a value
    /// as if they were gone (`Literals::occurs_once_dropped`), which tells whether the
    /// transformed copy would hold a literal without building it.
    pub dropped: Vec<u8>,
    /// The trigger of the chain's whitespace compression, if it has one: a compressed
    /// run leaves a space that the walk without whitespace would not see.
    pub compressing: u16,
    /// For chains that compress whitespace, per paranoia level and value kind (as
    /// `gate_at`), the pair summaries (`classes::pairs`) of the literals of the chain's
    /// rules of that level or below targeting the kind: a value whose summary covers none
    /// of them cannot hit one after whitespace is compressed.
    pub literal_pairs: Vec<Vec<classes::Pairs>>,
    /// Triggers of the chain's transformations that join bytes which were apart in ways
    /// neither the walk without `dropped` nor pair summaries follow (SQL comment removal,
    /// path normalisation).
    pub pair_breaking: u16,
}

impl Chain {
    /// What a value of `kind` needs for a rule of the chain of paranoia <= `level` + 1
    /// that targets the kind to match (`gate_at`).
    #[inline]
    pub(crate) fn gate(&self, level: usize, kind: Kind) -> &Gate {
        &self.gate_at[level * KIND_COUNT + kind as usize]
    }

    /// The rules of `unconditional` of paranoia <= `level` + 1 that target `kind`
    /// (`unconditional_by`).
    #[inline]
    pub(crate) fn unconditional_by(&self, level: usize, kind: Kind) -> &[u32] {
        &self.unconditional_by[level * KIND_COUNT + kind as usize]
    }

    /// Whether a rule of `unconditional` of paranoia <= `level` + 1 targets `kind`.
    #[inline]
    pub(crate) fn unconditional_for(&self, level: usize, kind: Kind) -> bool {
        self.unconditional_at[level] & kind.bit() != 0
    }

    /// The pair summaries of the literals of the chain's rules of paranoia <= `level` + 1
    /// that target `kind` (`literal_pairs`).
    #[inline]
    pub(crate) fn literal_pairs(&self, level: usize, kind: Kind) -> &[classes::Pairs] {
        self.literal_pairs
            .get(level * KIND_COUNT + kind as usize)
            .map_or(&[], Vec::as_slice)
    }

    /// Whether one of the chain's unconditional rules of paranoia <= `level` + 1 that
    /// target `kind` may match a value with `classes` (`unconditional_gate`).
    #[inline]
    pub(crate) fn unconditional_admits(
        &self,
        level: usize,
        kind: Kind,
        classes: &mut classes::Lazy<'_>,
    ) -> bool {
        self.unconditional_gate[level * KIND_COUNT + kind as usize].admits_lazy(classes)
    }
}

/// A compiled rule set. Build it once per load and share it (it is immutable).
pub struct RuleSet {
    /// Unique in the process: what a thread's inspections remember of a rule set
    /// (`engine::CleanNames`) is kept under it, and a set built later must not inherit it.
    pub(crate) id: u64,
    pub(crate) rules: Vec<Rule>,
    pub(crate) chains: Vec<Chain>,
    /// For each rule, the index of its chain.
    pub(crate) rule_chain: Vec<u32>,
    /// For each rule, its prefilter literals (the patterns of its automata).
    literals: Vec<Vec<Vec<u8>>>,
    /// For values that no chain changes, one scan serves all chains: per group of value
    /// kinds (`kind_groups`), an automaton of the literals of the rules targeting those
    /// kinds, so a JSON body's quotes do not wake the SQL rules of arguments. The groups'
    /// rules, of every level.
    global_rules: Vec<Vec<u32>>,
    /// `Kind as usize` -> index into `global_rules` and `Level::global`.
    pub(crate) global_by_kind: [u8; KIND_COUNT],
    /// Per paranoia level (index + 1), its automata, built on first use: a deployment
    /// holds only the levels it inspects at.
    levels: [OnceLock<Level>; 4],
    /// Every automaton held, by the rules of its patterns: levels (and kinds) whose
    /// automaton would hold the same rules share one. Ordered, not hashed: `build` drops
    /// the top level's automata by iterating it, and with a randomly seeded hash the order
    /// of those frees, hence the heap's layout and whether later builds' reallocations
    /// grow in place or copy, changed from process to process (a paranoia-2 build's cost
    /// varied by millions of instructions).
    built: Mutex<Built>,
    /// For each rule, what a value needs for it to match.
    pub(crate) rule_gate: Vec<Gate>,
    /// The rules that count a request's arguments (`Op::ArgCountOver`), judged once per
    /// request: listed so that a request does not read every rule to find them.
    pub(crate) arg_count_rules: Vec<u32>,
    /// The chains as bit sets, when there are at most 64 of them.
    pub(crate) chain_masks: Option<ChainMasks>,
}

/// The automata built, by the rules of their patterns (`RuleSet::built`).
type Built = BTreeMap<Vec<u32>, Arc<Scan>>;

/// Chains as bit sets (bit i: chain i), so the engine picks a value's chains in a few
/// operations instead of testing every chain.
pub(crate) struct ChainMasks {
    /// Per value kind and paranoia level, the chains with a rule that targets the kind.
    pub by_kind_at: [[u64; 4]; KIND_COUNT],
    /// Per slice of six feature bits (bits 0-5, 6-11, 12-15) and each value of the
    /// slice, the chains with a transformation one of those bits triggers: three lookups
    /// for a value's features in place of one per feature.
    triggered_by: [[u64; 64]; 3],
    /// As `triggered_by`, for the steps after each chain's first (`ChainMasks::rest_triggered`).
    rest_triggered_by: [[u64; 64]; 3],
    /// The chains whose first step is URL decoding and none of whose steps empties a
    /// value: a value with `%` reaches their other steps as that step left it.
    pub decoding_first: u64,
    /// Per value kind and paranoia level, the chains with a rule that needs no literal
    /// and targets the kind.
    pub unconditional_at: [[u64; 4]; KIND_COUNT],
    /// Per value kind and paranoia level, the chains without transformations whose every
    /// rule there is a length check (`Op::LengthOver`), and the shortest length any of
    /// them lets pass: a value no longer has nothing to show them. Without it every
    /// argument name opened the chain of the too-long-name check.
    length_only_at: [[u64; 4]; KIND_COUNT],
    length_only_floor: [[usize; 4]; KIND_COUNT],
    /// Per paranoia level and value kind (`level * KIND_COUNT + kind`), every chain's
    /// `unconditional_gate`, to test them all at once.
    unconditional_gates: Vec<GateSet>,
    /// The chains a feature other than `classes::BYTE_FEATURES` triggers: a long value
    /// reaching none of them and holding none of those bytes is left as it is by every
    /// chain it reaches.
    pub triggered_by_text: u64,
    /// The chains that leave an untriggered value empty (`Chain::empties_untriggered`)
    /// and whose rules cannot match an empty value: rules waiting for a literal find
    /// none, and no unconditional rule's gate admits a value without classes. A value
    /// they are not triggered by has nothing to show them (at paranoia 2, most values
    /// are not base64).
    pub emptied_untriggered: u64,
    /// Per paranoia level, the chains with a rule that looks at every header.
    every_header_at: [u64; 4],
    /// Per header a rule names (lowercase), and paranoia level, the chains with a rule
    /// that looks at that header; shortest names first, so a header's name is compared
    /// only with those of its length.
    named_headers: Vec<(String, [u64; 4])>,
}

impl ChainMasks {
    fn new(chains: &[Chain], rules: &[Rule]) -> Option<ChainMasks> {
        if chains.len() > 64 {
            return None;
        }
        let mut masks = ChainMasks {
            by_kind_at: [[0; 4]; KIND_COUNT],
            triggered_by: [[0; 64]; 3],
            rest_triggered_by: [[0; 64]; 3],
            decoding_first: 0,
            unconditional_at: [[0; 4]; KIND_COUNT],
            length_only_at: [[0; 4]; KIND_COUNT],
            length_only_floor: [[usize::MAX; 4]; KIND_COUNT],
            unconditional_gates: (0..4 * KIND_COUNT)
                .map(|at| {
                    GateSet::new(
                        chains
                            .iter()
                            .enumerate()
                            .map(|(ci, chain)| (1 << ci, &chain.unconditional_gate[at])),
                    )
                })
                .collect(),
            triggered_by_text: 0,
            emptied_untriggered: 0,
            every_header_at: [0; 4],
            named_headers: Vec::new(),
        };
        for (ci, chain) in chains.iter().enumerate() {
            let bit = 1u64 << ci;
            if chain.empties_untriggered && chain.unconditional_gate.iter().all(|g| !g.admits(0)) {
                masks.emptied_untriggered |= bit;
            }
            for level in 0..4 {
                for (kind, at) in masks.by_kind_at.iter_mut().enumerate() {
                    if chain.kinds_at[level] & (1 << kind) != 0 {
                        at[level] |= bit;
                    }
                }
                for (kind, at) in masks.unconditional_at.iter_mut().enumerate() {
                    if chain.unconditional_at[level] & (1 << kind) != 0 {
                        at[level] |= bit;
                    }
                }
                // Only a chain that leaves values as they are: its length checks see
                // the value's own length.
                for kind in (0..KIND_COUNT).filter(|_| chain.transforms.is_empty()) {
                    // `None` if a rule there is no length check; no minimum if none is.
                    let lengths: Option<Vec<usize>> = chain
                        .rules
                        .iter()
                        .map(|&r| &rules[r as usize])
                        .filter(|r| usize::from(r.paranoia) <= level + 1)
                        .filter(|r| r.targets.kind_mask() & 1 << kind != 0)
                        .filter(|r| !matches!(r.op, Op::ArgCountOver(_)))
                        .map(|r| match r.op {
                            Op::LengthOver(max) => Some(max),
                            _ => None,
                        })
                        .collect();
                    if let Some(shortest) = lengths.and_then(|l| l.into_iter().min()) {
                        masks.length_only_at[kind][level] |= bit;
                        let floor = &mut masks.length_only_floor[kind][level];
                        *floor = (*floor).min(shortest);
                    }
                }
            }
            if chain.transforms.first() == Some(&Transform::UrlDecode) && !chain.empties_untriggered
            {
                masks.decoding_first |= bit;
            }
            let rest = chain
                .transforms
                .iter()
                .skip(1)
                .fold(0, |acc, t| acc | t.trigger());
            for (table, triggers) in [
                (&mut masks.triggered_by, chain.triggers),
                (&mut masks.rest_triggered_by, rest),
            ] {
                for (slice, by_value) in table.iter_mut().enumerate() {
                    for (value, by) in by_value.iter_mut().enumerate() {
                        let features = (value << (6 * slice)) as u32;
                        if u32::from(triggers) & features != 0 {
                            *by |= bit;
                        }
                    }
                }
            }
            for rule in chain.rules.iter().map(|&r| &rules[r as usize]) {
                // As `Chain::kinds_at`: a request-wide count looks at no header.
                if matches!(rule.op, Op::ArgCountOver(_)) {
                    continue;
                }
                let levels = usize::from(rule.paranoia) - 1..4;
                if rule.targets.kinds & Kind::Header.bit() != 0 {
                    masks.every_header_at[levels.clone()]
                        .iter_mut()
                        .for_each(|at| *at |= bit);
                }
                for name in &rule.targets.headers {
                    let name = name.to_ascii_lowercase();
                    let at = match masks.named_headers.iter().position(|(n, _)| *n == name) {
                        Some(i) => &mut masks.named_headers[i].1,
                        None => {
                            let last = masks.named_headers.len();
                            masks.named_headers.push((name, [0; 4]));
                            &mut masks.named_headers[last].1
                        }
                    };
                    at[levels.clone()].iter_mut().for_each(|at| *at |= bit);
                }
            }
        }
        masks.named_headers.sort_by_key(|(name, _)| name.len());
        masks.triggered_by_text = masks.triggered(!classes::BYTE_FEATURES);
        Some(masks)
    }

    /// The chains with a rule of paranoia <= `level` + 1 that looks at header `name`.
    /// Most rules look at a few headers by name, so a header value skips the chains of
    /// the others without testing each rule.
    pub(crate) fn header_chains(&self, name: &str, level: usize) -> u64 {
        let len = name.len();
        let from = self.named_headers.partition_point(|(n, _)| n.len() < len);
        self.named_headers[from..]
            .iter()
            .take_while(|(n, _)| n.len() == len)
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(self.every_header_at[level], |(_, at)| {
                self.every_header_at[level] | at[level]
            })
    }

    /// Of the chains, those a value of `kind` of `len` bytes may show something at
    /// paranoia <= `level` + 1: all but the length checks it is too short for.
    #[inline]
    pub(crate) fn beyond_length(&self, level: usize, kind: Kind, len: usize) -> u64 {
        if len <= self.length_only_floor[kind as usize][level] {
            !self.length_only_at[kind as usize][level]
        } else {
            !0
        }
    }

    /// The chains whose `Chain::unconditional_admits` admits a value of `kind` with
    /// `classes` at paranoia <= `level` + 1.
    #[inline]
    pub(crate) fn unconditional_admitted(
        &self,
        level: usize,
        kind: Kind,
        classes: &mut classes::Lazy<'_>,
    ) -> u64 {
        self.unconditional_gates[level * KIND_COUNT + kind as usize].admitted(classes)
    }

    /// The chains a value with transformation `features` makes run.
    pub(crate) fn triggered(&self, features: u16) -> u64 {
        Self::lookup(&self.triggered_by, features)
    }

    /// The chains a step after their first would change a value with `features` in.
    pub(crate) fn rest_triggered(&self, features: u16) -> u64 {
        Self::lookup(&self.rest_triggered_by, features)
    }

    fn lookup(table: &[[u64; 64]; 3], features: u16) -> u64 {
        let f = usize::from(features);
        table[0][f & 63] | table[1][f >> 6 & 63] | table[2][f >> 12]
    }
}

/// The automata of one paranoia level: only the literals of rules at that level or
/// below, since the engine skips the others' hits.
pub(crate) struct Level {
    /// Per chain (as `RuleSet::chains`): the literals of the chain's rules.
    pub chains: Vec<Arc<Scan>>,
    /// Per group of kinds (as `RuleSet::global_rules`).
    pub global: Vec<Arc<Scan>>,
    /// The raw body's and its arguments' global literals in one automaton.
    pub body: Option<BodyWalk>,
}

/// The kinds a body walk serves.
pub(crate) const BODY_WALK_KINDS: [Kind; 3] = [Kind::BodyRaw, Kind::BodyArg, Kind::BodyArgName];

/// One walk over a request body that finds the hits of the raw body's global literals and
/// those of every argument value and name the body parser borrowed from it (the engine
/// maps each hit to the values whose bytes hold it, by offset). Walking the body once
/// replaces a walk per value: a 4 KB JSON document has a few hundred strings, and each
/// walk of its own paid a set-up and a hit report path for a dozen bytes.
///
/// The argument kinds' patterns leave out literals holding `"` or `\`: an unescaped JSON
/// string cannot contain them, and in a JSON body they would hit at every key and value
/// boundary. A value holding either byte (possible in other body types) is walked on its
/// own, with every literal.
pub(crate) struct BodyWalk {
    pub scan: Arc<Scan>,
    /// Per pattern of `scan`, what the engine reads of a hit, in one place: a hit costs
    /// one bounds check and one load instead of three (a JSON body has hundreds).
    pub patterns: Vec<WalkPattern>,
}

/// A body walk pattern as the engine maps its hits to values.
#[derive(Clone, Copy)]
pub(crate) struct WalkPattern {
    /// The kinds (`Kind::bit`) whose global automaton holds the pattern, so that a value's
    /// hits are exactly those a walk of the value with its kind's automaton finds.
    pub kinds: u32,
    /// `Scan::pattern_rule`.
    pub rule: u32,
    /// `Scan::pattern_flags`.
    pub flags: u8,
}

impl BodyWalk {
    /// Patterns in the order of the global automata of `BODY_WALK_KINDS`. A kind's hits
    /// at one position come longest first, as from its own automaton; hits of equal
    /// literals of different rules may come in another order, which can reorder a
    /// verdict's matches but changes no rule's hit, score or action (each rule keeps its
    /// own first hit).
    ///
    /// The automaton is shared through `built` like the others, under its rules after a
    /// `u32::MAX` that no rule index reaches.
    fn new(
        set: &RuleSet,
        at_level: impl Fn(&u32) -> bool,
        built: &mut Built,
    ) -> Result<Option<BodyWalk>, RuleError> {
        let WalkPatterns {
            key,
            patterns,
            kinds,
        } = Self::patterns(set, at_level);
        let scan = match built.get(&key) {
            Some(scan) => scan.clone(),
            None => {
                let scan = Arc::new(Scan::new(patterns, &[])?);
                built.insert(key, scan.clone());
                scan
            }
        };
        let patterns = kinds
            .iter()
            .zip(scan.pattern_rule.iter().zip(&scan.pattern_flags))
            .map(|(&kinds, (&rule, &flags))| WalkPattern { kinds, rule, flags })
            .collect();
        Ok(scan
            .automaton
            .is_some()
            .then_some(BodyWalk { scan, patterns }))
    }

    /// The walk's patterns at the level `at_level` admits.
    pub(crate) fn patterns(set: &RuleSet, at_level: impl Fn(&u32) -> bool) -> WalkPatterns<'_> {
        let mut groups: Vec<u8> = Vec::new();
        for kind in BODY_WALK_KINDS {
            let g = set.global_by_kind[kind as usize];
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        let mut patterns = Vec::new();
        let mut kinds = Vec::new();
        let mut first_at = HashMap::new();
        let mut key = vec![u32::MAX];
        for g in groups {
            for &r in set.global_rules[usize::from(g)]
                .iter()
                .filter(|r| at_level(r))
            {
                key.push(r);
                for literal in &set.literals[r as usize] {
                    let quoted = literal.iter().any(|&b| b == b'"' || b == b'\\');
                    let mask = BODY_WALK_KINDS
                        .iter()
                        .filter(|&&k| set.global_by_kind[k as usize] == g)
                        .filter(|&&k| k == Kind::BodyRaw || !quoted)
                        .fold(0, |mask, k| mask | k.bit());
                    if mask == 0 {
                        continue;
                    }
                    // A rule in two groups (the raw body's and the arguments') is one
                    // pattern serving both, not two that would each report every hit.
                    match first_at.entry((literal.as_slice(), r)) {
                        Entry::Occupied(at) => kinds[*at.get()] |= mask,
                        Entry::Vacant(at) => {
                            at.insert(patterns.len());
                            patterns.push((literal.as_slice(), r, &set.rules[r as usize]));
                            kinds.push(mask);
                        }
                    }
                }
            }
        }
        WalkPatterns {
            key,
            patterns,
            kinds,
        }
    }
}

/// What a body walk's automaton is built from (`BodyWalk::patterns`).
pub(crate) struct WalkPatterns<'s> {
    /// The key the automaton is shared under in `Built`.
    pub key: Vec<u32>,
    /// In the order of the global automata of `BODY_WALK_KINDS`: literal, rule index, rule.
    pub patterns: Vec<(&'s [u8], u32, &'s Rule)>,
    /// Per pattern, the kinds (`Kind::bit`) it serves.
    pub kinds: Vec<u32>,
}

/// Kinds share a global automaton when each of them would have at most this share
/// (1/n) of its patterns belong to rules that do not target it. The argument kinds
/// (query, body, cookie) differ by a few rules of ~700 literals, and one automaton in
/// place of three saves ~1.5 MB; the foreign rules' hits are only skipped later, by the
/// engine's target check.
const FOREIGN_SHARE_MAX: usize = 20;

/// An automaton and the rule of each of its patterns.
pub(crate) struct Scan {
    pub automaton: Option<Literals>,
    pub pattern_rule: Vec<u32>,
    /// Per pattern: `WHOLE_WORD`, `SQL_KEYWORD`, `WORD_BOUNDED`, `COMMAND` and `TAIL`
    /// bits.
    pub pattern_flags: Vec<u8>,
    /// Per pattern, the bytes of its literal past the `PREFIX_MAX` the automaton holds
    /// (empty for shorter literals).
    pattern_tail: Vec<Box<[u8]>>,
}

/// The automata hold at most this many leading bytes of a literal; a hit of such a
/// prefix counts only where the rest of the literal follows (`Scan::counted_end`). Two
/// interleaved walks over a value must overlap by the longest literal less one byte, so
/// the full literals (up to 47 bytes: scanner names, file paths) kept every header and
/// argument value to one walk, whose every step waits on the load of the last; with
/// prefixes of 8 bytes a value of a few dozen bytes is walked as two halves
/// (`Literals::scan`).
pub(crate) const PREFIX_MAX: usize = 8;

/// A pattern that counts only as a whole word (an SQL keyword: `or` in `door` is none).
pub(crate) const WHOLE_WORD: u8 = 1;
/// A pattern whose hit means the value may hold an SQL keyword or `&&`/`||` the tokenizer
/// reads as such; without any, the SQL detector skips its own search for them.
pub(crate) const SQL_KEYWORD: u8 = 2;
/// A pattern that counts only as a word of its own (`requires_words`): a digit may follow.
pub(crate) const WORD_BOUNDED: u8 = 4;
/// A pattern that counts only where a command name stands (`requires_commands`); always
/// with `WORD_BOUNDED`.
pub(crate) const COMMAND: u8 = 8;
/// A pattern longer than `PREFIX_MAX`: its hits are of the prefix, and count only where
/// the rest follows (`Scan::counted_end`).
pub(crate) const TAIL: u8 = 16;

/// Whether a hit at `start..end` of `data` of a pattern with `flags` counts. Flagged
/// patterns are few and rarely hit, so the checks cost nothing on most hits.
#[inline]
fn hit_counts(flags: u8, data: &[u8], start: usize, end: usize) -> bool {
    (flags & WHOLE_WORD == 0 || crate::detect::keyword_stands_alone(data, start, end))
        && (flags & WORD_BOUNDED == 0 || stands_as_word(flags, data, start, end))
}

/// Whether a name starting at `start` of `data` begins a command line: it stands at the
/// start of the value or after `;`, `&`, `|`, a line break, a backtick or `(` (as in
/// `$(`, `<(`), with only blanks (the regexes' ASCII `\s`) between, directly or behind
/// `(?:/usr)?(?:/local)?/s?bin/`. Stripping the longest such path loses no position the
/// regexes see: the byte before a shorter one (`r`, `l`) is neither blank nor separator.
/// Out of line: only a word's hits get here, and the scans' inlined hit path stays short.
#[inline(never)]
fn at_command_position(data: &[u8], start: usize) -> bool {
    let mut before = &data[..start];
    let strip = |before: &mut &[u8], suffix: &[u8]| match before.len().checked_sub(suffix.len()) {
        Some(cut) if before[cut..].eq_ignore_ascii_case(suffix) => {
            *before = &before[..cut];
            true
        }
        _ => false,
    };
    if strip(&mut before, b"/bin/") || strip(&mut before, b"/sbin/") {
        strip(&mut before, b"/local");
        strip(&mut before, b"/usr");
    }
    for &b in before.iter().rev() {
        match b {
            b';' | b'&' | b'|' | b'\n' | b'`' | b'(' => return true,
            b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c' => {}
            _ => return false,
        }
    }
    true
}

/// Whether `start..end` of `data` is not glued to an ASCII letter, digit or `_` before it,
/// nor to an ASCII letter or `_` after it, and with `COMMAND` in `flags` begins a command.
fn stands_as_word(flags: u8, data: &[u8], start: usize, end: usize) -> bool {
    let glued_before = start > 0 && {
        let b = data[start - 1];
        b.is_ascii_alphanumeric() || b == b'_'
    };
    let glued_after = data
        .get(end)
        .is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_');
    !glued_before && !glued_after && (flags & COMMAND == 0 || at_command_position(data, start))
}

impl Scan {
    /// The automaton of `patterns`, able to walk a value as if the bytes `dropped` were
    /// not there.
    fn new(patterns: Vec<(&[u8], u32, &Rule)>, dropped: &[u8]) -> Result<Scan, RuleError> {
        let prefixes: Vec<&[u8]> = patterns
            .iter()
            .map(|(l, _, _)| &l[..l.len().min(PREFIX_MAX)])
            .collect();
        let pattern_flags: Vec<u8> = patterns
            .iter()
            .map(|(l, _, rule)| {
                pattern_flags(rule, l) | if l.len() > PREFIX_MAX { TAIL } else { 0 }
            })
            .collect();
        let mut automaton = Literals::new(&prefixes, dropped)?;
        if let Some(ac) = &mut automaton {
            // Every reader of a scan's hits judges them with `counted_end`, on the whole
            // literal: a prefix's hit does not end where the word would.
            ac.count_as_words(|p| {
                pattern_flags[p] & (WHOLE_WORD | WORD_BOUNDED) != 0 && pattern_flags[p] & TAIL == 0
            });
        }
        Ok(Scan {
            automaton,
            pattern_rule: patterns.iter().map(|(_, r, _)| *r).collect(),
            pattern_flags,
            pattern_tail: patterns
                .iter()
                .map(|(l, _, _)| l.get(PREFIX_MAX..).unwrap_or_default().into())
                .collect(),
        })
    }

    /// Where the hit of pattern `p` (whose `pattern_flags` are `flags`) found by the
    /// automaton at `start..end` of `data` ends, if it counts: for a literal longer than
    /// the automaton holds, where its rest follows (ASCII case-insensitively), and for
    /// a word's literal, where the whole stands as one (`hit_counts`).
    #[inline(always)]
    pub(crate) fn counted_end(
        &self,
        p: usize,
        flags: u8,
        data: &[u8],
        start: usize,
        end: usize,
    ) -> Option<usize> {
        let end = if flags & TAIL == 0 {
            end
        } else {
            self.tail_end(p, data, end)?
        };
        hit_counts(flags, data, start, end).then_some(end)
    }

    /// Where the rest of pattern `p`'s literal ends, if it follows `end` in `data`. Out of
    /// line: few hits are of long literals, and inlined it made the callers' loops
    /// costlier for every hit.
    #[cold]
    #[inline(never)]
    fn tail_end(&self, p: usize, data: &[u8], end: usize) -> Option<usize> {
        let tail = &self.pattern_tail[p];
        let full = end + tail.len();
        data.get(end..full)
            .filter(|rest| rest.eq_ignore_ascii_case(tail))
            .map(|_| full)
    }
}

/// What a value must hold for `rule` to match it, derived from its operator.
fn rule_gate(rule: &Rule, literals: &[Vec<u8>]) -> Gate {
    let literal_gate = || Gate::any_of(literals.iter().map(|l| classes::of_literal(l)));
    match &rule.op {
        Op::Literals | Op::Sqli | Op::SqlTautology => literal_gate(),
        Op::Regex { re, .. } => {
            let gate = Gate::of_regex(re.as_str());
            if literals.is_empty() {
                gate
            } else {
                gate.and(&literal_gate())
            }
        }
        Op::Xss => Gate::any_of(
            crate::detect::XSS_NEEDS
                .iter()
                .map(|&needs| classes::of_literal(needs)),
        ),
        Op::BytesOutside(allowed) => Gate::any_of(
            (0..=255u8)
                .filter(|&b| !allowed[usize::from(b)])
                .map(|b| classes::of_literal(&[b])),
        ),
        Op::InvalidUrlEncoding => Gate::any_of([classes::of_literal(b"%")]),
        // Any value, even an empty one, may be missing from the list or lack the format:
        // what a regex's matches need says nothing of what its misses need.
        Op::UnlessIn(_) | Op::NotRegex(_) | Op::LengthOver(_) | Op::ArgCountOver(_) => {
            Gate::always()
        }
    }
}

/// Groups kinds for global automata: `members[k]` are the rules targeting kind `k`
/// (sorted), `weight(r)` the number of rule `r`'s patterns. Returns each group's rules and
/// each kind's group. A kind joins the first group (largest first) in which neither it nor
/// any kind already there would hold more than 1/`FOREIGN_SHARE_MAX` of foreign patterns;
/// kinds with the same rules always share. Grouped once for all levels, so that every
/// level's automaton is a subset of the top level's (see `RuleSet::build`).
fn kind_groups(
    members: &[Vec<u32>],
    weight: impl Fn(u32) -> usize,
) -> (Vec<Vec<u32>>, [u8; KIND_COUNT]) {
    let weigh = |rules: &[u32]| rules.iter().map(|&r| weight(r)).sum::<usize>();
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by_key(|&k| std::cmp::Reverse(weigh(&members[k])));
    // (rules, weight of each member kind's own rules)
    let mut groups: Vec<(Vec<u32>, Vec<usize>)> = Vec::new();
    let mut by_kind = [0u8; KIND_COUNT];
    for k in order {
        let own = weigh(&members[k]);
        let fits = |(rules, owns): &(Vec<u32>, Vec<usize>)| {
            let mut union = rules.clone();
            union.extend(&members[k]);
            union.sort_unstable();
            union.dedup();
            let total = weigh(&union);
            let fits = owns
                .iter()
                .chain([&own])
                .all(|&own| (total - own) * FOREIGN_SHARE_MAX <= total);
            fits.then_some(union)
        };
        match groups
            .iter()
            .enumerate()
            .find_map(|(g, group)| Some((g, fits(group)?)))
        {
            Some((g, union)) => {
                groups[g].0 = union;
                groups[g].1.push(own);
                by_kind[k] = g as u8;
            }
            None => {
                groups.push((members[k].clone(), vec![own]));
                by_kind[k] = (groups.len() - 1) as u8;
            }
        }
    }
    (
        groups.into_iter().map(|(rules, _)| rules).collect(),
        by_kind,
    )
}

/// The prefilter literals of each rule: those of its file, or derived from its regex.
fn prefilter_literals(rule: &Rule) -> Vec<Vec<u8>> {
    match &rule.op {
        Op::Regex {
            re,
            prefiltered: false,
            ..
        } => crate::required::literals(re.as_str()).unwrap_or_default(),
        // The literals of a `not_regex` are those of the values it does not fire on.
        Op::NotRegex(_) => Vec::new(),
        _ => rule
            .literals
            .iter()
            .map(|(l, _)| l.as_bytes().to_vec())
            .collect(),
    }
}

/// Triggers of the transformations that can create bytes of a class the input lacks.
fn creating_trigger(t: Transform) -> u16 {
    use crate::transform::feature::*;
    match t {
        Transform::UrlDecode => PERCENT,
        Transform::HtmlEntityDecode => AMP,
        Transform::JsDecode | Transform::CssDecode | Transform::NormalizePath => BACKSLASH,
        Transform::FoldUnicode => HIGH,
        Transform::Base64Decode | Transform::Base64Text => BASE64,
        Transform::Lowercase
        | Transform::RemoveNulls
        | Transform::CompressWhitespace
        | Transform::RemoveWhitespace
        | Transform::RemoveSqlComments => 0,
    }
}

/// The flags of pattern `literal` of `rule`: only the SQL detector's prefilter literals
/// and the words of `requires_words` and `requires_commands` have any.
fn pattern_flags(rule: &Rule, literal: &[u8]) -> u8 {
    match rule.literals.iter().find(|(l, _)| l.as_bytes() == literal) {
        Some((_, Placement::Word)) => return WORD_BOUNDED,
        Some((_, Placement::Command)) => return WORD_BOUNDED | COMMAND,
        _ => {}
    }
    if !matches!(rule.op, Op::Sqli) {
        return 0;
    }
    let mut flags = 0;
    if crate::detect::keyword_is_whole_word_only(literal) {
        flags |= WHOLE_WORD;
    }
    if literal.iter().all(u8::is_ascii_alphabetic) || literal == b"&&" || literal == b"||" {
        flags |= SQL_KEYWORD;
    }
    flags
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules.len())
            .field("chains", &self.chains.len())
            .finish()
    }
}

/// A rule as listed by `RuleSet::rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    pub id: u32,
    pub message: String,
    pub tags: Vec<String>,
    pub paranoia: u8,
    pub score: u32,
    pub file: String,
}

/// A rule whose own examples disagree with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleFailure {
    pub rule_id: u32,
    pub file: String,
    pub example: String,
    /// `true` when the example should have matched.
    pub expected_match: bool,
}

impl std::fmt::Display for ExampleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.expected_match {
            "does not match"
        } else {
            "matches"
        };
        write!(
            f,
            "{}: rule {} {verb} its example {:?}",
            self.file, self.rule_id, self.example
        )
    }
}

impl RuleSet {
    /// The base rule set compiled into the binary, so a proxy works with no rules directory.
    pub fn embedded() -> Result<RuleSet, RuleError> {
        let mut rules = Vec::new();
        for (name, text) in EMBEDDED {
            rules.extend(parse_file(name, text)?);
        }
        Self::build(rules)
    }

    /// Loads every `*.yaml`/`*.yml` file of `dir` (sorted by name, not recursive).
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<RuleSet, RuleError> {
        let dir = dir.as_ref();
        let io = |source| RuleError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?
            .into_iter()
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(RuleError::Empty(dir.to_path_buf()));
        }
        let mut rules = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| RuleError::Io {
                path: path.clone(),
                source,
            })?;
            rules.extend(parse_file(&path.display().to_string(), &text)?);
        }
        Self::build(rules)
    }

    /// Compiles rules given as YAML text (`name` is used in errors).
    pub fn from_yaml(name: &str, text: &str) -> Result<RuleSet, RuleError> {
        Self::build(parse_file(name, text)?)
    }

    fn build(rules: Vec<Rule>) -> Result<RuleSet, RuleError> {
        let mut first_file: HashMap<u32, &str> = HashMap::new();
        for r in &rules {
            if let Some(first) = first_file.insert(r.id, &r.file) {
                return Err(RuleError::DuplicateId {
                    id: r.id,
                    first: first.to_string(),
                    second: r.file.clone(),
                });
            }
        }
        let literals: Vec<Vec<Vec<u8>>> = rules.iter().map(prefilter_literals).collect();
        let rule_gates: Vec<Gate> = rules
            .iter()
            .zip(&literals)
            .map(|(r, l)| rule_gate(r, l))
            .collect();
        let mut by_chain: HashMap<&[Transform], u32> = HashMap::new();
        let mut chains: Vec<Chain> = Vec::new();
        let mut rule_chain = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let c = *by_chain.entry(&r.chain).or_insert_with(|| {
                chains.push(Chain {
                    transforms: r.chain.clone(),
                    rules: Vec::new(),
                    unconditional: Vec::new(),
                    unconditional_by: vec![Vec::new(); 4 * KIND_COUNT],
                    kinds: 0,
                    triggers: r.chain.iter().fold(0, |acc, t| acc | t.trigger()),
                    empties_untriggered: r.chain.iter().any(|t| t.empties_untriggered()),
                    kinds_at: [0; 4],
                    creating: r.chain.iter().fold(0, |acc, &t| acc | creating_trigger(t)),
                    gate_at: vec![Gate::never(); 4 * KIND_COUNT],
                    unconditional_at: [0; 4],
                    unconditional_gate: vec![Gate::never(); 4 * KIND_COUNT],
                    dropped: (0..=255u8)
                        .filter(|&b| r.chain.iter().any(|t| t.removes(b)))
                        .collect(),
                    compressing: r
                        .chain
                        .iter()
                        .filter(|t| matches!(t, Transform::CompressWhitespace))
                        .fold(0, |acc, t| acc | t.trigger()),
                    literal_pairs: Vec::new(),
                    pair_breaking: r
                        .chain
                        .iter()
                        .filter(|t| {
                            matches!(t, Transform::RemoveSqlComments | Transform::NormalizePath)
                        })
                        .fold(0, |acc, t| acc | t.trigger()),
                });
                (chains.len() - 1) as u32
            });
            let chain = &mut chains[c as usize];
            chain.rules.push(i as u32);
            let conditional = matches!(
                r.op,
                Op::Literals | Op::Sqli | Op::SqlTautology | Op::Regex { .. }
            ) && !literals[i].is_empty();
            if !conditional && !matches!(r.op, Op::ArgCountOver(_)) {
                chain.unconditional.push(i as u32);
                for p in usize::from(r.paranoia)..=4 {
                    chain.unconditional_at[p - 1] |= r.targets.kind_mask();
                    for kind in (0..KIND_COUNT).filter(|k| r.targets.kind_mask() & 1 << k != 0) {
                        chain.unconditional_by[(p - 1) * KIND_COUNT + kind].push(i as u32);
                        let gate = &mut chain.unconditional_gate[(p - 1) * KIND_COUNT + kind];
                        *gate = gate.or(&rule_gates[i]);
                    }
                }
            }
            if !matches!(r.op, Op::ArgCountOver(_)) {
                chain.kinds |= r.targets.kind_mask();
                for p in usize::from(r.paranoia)..=4 {
                    chain.kinds_at[p - 1] |= r.targets.kind_mask();
                    for kind in (0..KIND_COUNT).filter(|k| r.targets.kind_mask() & 1 << k != 0) {
                        let gate = &mut chain.gate_at[(p - 1) * KIND_COUNT + kind];
                        *gate = gate.or(&rule_gates[i]);
                    }
                }
            }
            rule_chain.push(c);
        }
        for chain in chains.iter_mut().filter(|c| c.compressing != 0) {
            chain.literal_pairs = (0..4 * KIND_COUNT)
                .map(|at| {
                    let (level, kind) = (at / KIND_COUNT, at % KIND_COUNT);
                    let mut pairs: Vec<classes::Pairs> = chain
                        .rules
                        .iter()
                        .map(|&r| r as usize)
                        .filter(|&r| {
                            usize::from(rules[r].paranoia) <= level + 1
                                && rules[r].targets.kind_mask() & 1 << kind != 0
                        })
                        .flat_map(|r| literals[r].iter().map(|l| classes::pairs(l)))
                        .collect();
                    pairs.sort_unstable();
                    pairs.dedup();
                    pairs
                })
                .collect();
        }
        let by_kind: Vec<Vec<u32>> = (0..KIND_COUNT)
            .map(|k| {
                (0..rules.len() as u32)
                    .filter(|&r| rules[r as usize].targets.kind_mask() & (1 << k) != 0)
                    .collect()
            })
            .collect();
        let (global_rules, global_by_kind) = kind_groups(&by_kind, |r| literals[r as usize].len());
        let arg_count_rules = (0..rules.len() as u32)
            .filter(|&r| matches!(rules[r as usize].op, Op::ArgCountOver(_)))
            .collect();
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let set = RuleSet {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            chain_masks: ChainMasks::new(&chains, &rules),
            arg_count_rules,
            rules,
            chains,
            rule_chain,
            literals,
            global_rules,
            global_by_kind,
            levels: Default::default(),
            built: Mutex::new(BTreeMap::new()),
            rule_gate: rule_gates,
        };
        // Each automaton of a level holds a subset of the patterns of one of the top
        // level's, and a subset makes a smaller automaton: building the top level once
        // proves that every level builds. Only level 1 is kept, built up front for the
        // first request at the default paranoia.
        set.build_level(4)?;
        let first = set.build_level(1)?;
        set.lock_built().retain(|_, scan| {
            first
                .chains
                .iter()
                .chain(&first.global)
                .chain(first.body.as_ref().map(|body| &body.scan))
                .any(|kept| Arc::ptr_eq(kept, scan))
        });
        set.levels[0].get_or_init(|| first);
        Ok(set)
    }

    /// Builds now the automata of every paranoia level `settings` can ask for (the
    /// service's and each route's), so that no request waits for a level's first build
    /// (tens of milliseconds). Call it when settings change, before they take effect.
    pub fn prepare(&self, settings: &WafSettings) {
        let routes = settings.routes.values().filter_map(|r| r.paranoia);
        for level in std::iter::once(settings.paranoia).chain(routes) {
            self.level(level);
        }
    }

    /// The automata of paranoia `level` (1-4; others are clamped), built on first use.
    pub(crate) fn level(&self, level: u8) -> &Level {
        let level = level.clamp(1, 4);
        self.levels[usize::from(level) - 1].get_or_init(|| {
            // Compiled with the level's automata rather than on a request's first match.
            for rule in self.rules.iter().filter(|r| r.paranoia <= level) {
                match &rule.op {
                    Op::Regex { re, test, .. } => {
                        re.compile();
                        if let Some(quick) = test.as_ref().and_then(|t| t.quick()) {
                            quick.compile();
                        }
                    }
                    Op::NotRegex(re) => {
                        re.compile();
                    }
                    _ => {}
                }
            }
            self.build_level(level)
                .expect("`build` built the top level, whose patterns include this level's")
        })
    }

    fn lock_built(&self) -> std::sync::MutexGuard<'_, Built> {
        self.built.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The automata of the rules of paranoia <= `level`, reusing those already built.
    ///
    /// A scan's `keywords` flag is unaffected by leaving out higher levels' rules: only
    /// the SQL detector reads it, for a rule of the scan, and every SQL detector rule has
    /// the same literals (`detect::SQLI_REQUIRED`), so a scan holding one holds them all.
    fn build_level(&self, level: u8) -> Result<Level, RuleError> {
        let at_level = |&r: &u32| self.rules[r as usize].paranoia <= level;
        let mut built = self.lock_built();
        // An automaton that drops bytes is kept under its rules after a `u32::MAX - 1`
        // (no rule index reaches it), apart from one of the same rules that drops none.
        let mut scan_of = |members: Vec<u32>, dropped: &[u8]| -> Result<Arc<Scan>, RuleError> {
            let key: Vec<u32> = (!dropped.is_empty())
                .then_some(u32::MAX - 1)
                .into_iter()
                .chain(members.iter().copied())
                .collect();
            if let Some(scan) = built.get(&key) {
                return Ok(scan.clone());
            }
            let patterns = members
                .iter()
                .flat_map(|&r| {
                    self.literals[r as usize]
                        .iter()
                        .map(move |l| (l.as_slice(), r, &self.rules[r as usize]))
                })
                .collect();
            let scan = Arc::new(Scan::new(patterns, dropped)?);
            built.insert(key, scan.clone());
            Ok(scan)
        };
        let chains = self
            .chains
            .iter()
            .map(|chain| {
                scan_of(
                    chain.rules.iter().copied().filter(at_level).collect(),
                    &chain.dropped,
                )
            })
            .collect::<Result<_, _>>()?;
        let global = self
            .global_rules
            .iter()
            .map(|rules| scan_of(rules.iter().copied().filter(at_level).collect(), &[]))
            .collect::<Result<_, _>>()?;
        let body = BodyWalk::new(self, at_level, &mut built)?;
        Ok(Level {
            chains,
            global,
            body,
        })
    }

    /// Number of distinct transformation chains (one automaton each per paranoia level).
    pub fn chain_count(&self) -> usize {
        self.chains.len()
    }

    /// The bytes held by the literal scanners' tables, the bulk of a compiled rule set's
    /// memory: every sidecar holds one, so operators see it at start. Counts the paranoia
    /// levels built so far (level 1 at once, the others when `prepare` or a request first
    /// asks for them).
    pub fn scanner_bytes(&self) -> usize {
        self.lock_built()
            .values()
            .filter_map(|scan| scan.automaton.as_ref())
            .map(Literals::memory_usage)
            .sum()
    }

    /// Every automaton held (for tests).
    #[cfg(test)]
    pub(crate) fn automata(&self) -> Vec<Arc<Scan>> {
        self.lock_built().values().cloned().collect()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the set holds no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Lists the rules (for tools and documentation).
    pub fn rules(&self) -> Vec<RuleInfo> {
        self.rules
            .iter()
            .map(|r| RuleInfo {
                id: r.id,
                message: r.message.to_string(),
                tags: r.tags.clone(),
                paranoia: r.paranoia,
                score: r.score,
                file: r.file.clone(),
            })
            .collect()
    }

    /// Runs every rule's examples through the rule itself (its chain, prefilter and
    /// operator) and returns the ones that disagree.
    pub fn check_examples(&self) -> Vec<ExampleFailure> {
        let mut failures = Vec::new();
        let mut scratch = crate::engine::Scratch::new(self);
        for (ri, rule) in self.rules.iter().enumerate() {
            let cases = rule
                .examples
                .positive
                .iter()
                .map(|e| (e, true))
                .chain(rule.examples.no_match.iter().map(|e| (e, false)));
            for (example, expected) in cases {
                let got = scratch.eval_single(self, ri, example.as_bytes()).is_some();
                if got != expected {
                    failures.push(ExampleFailure {
                        rule_id: rule.id,
                        file: rule.file.clone(),
                        example: example.clone(),
                        expected_match: expected,
                    });
                }
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::{kind_groups, RuleSet, SQL_KEYWORD};
    use crate::request::{Kind, KIND_COUNT};
    use crate::rule::Op;
    use crate::{Action, Engine, Request, WafSettings};

    /// Rule 1 at paranoia 1, rule 2 at paranoia 3, both on query arguments.
    const TWO_LEVELS: &str = r#"rules:
  - id: 1
    message: level one
    tags: [probe]
    severity: critical
    targets: [args]
    operator:
      literals: ["alphahit"]
  - id: 2
    message: level three
    tags: [probe]
    severity: critical
    paranoia: 3
    targets: [args]
    operator:
      literals: ["gammahit"]
"#;

    const REGEXES: &str = r#"rules:
  - id: 1
    message: level one
    tags: [probe]
    severity: critical
    targets: [args]
    operator: {regex: 'alpha\d+'}
  - id: 2
    message: level two
    tags: [probe]
    severity: critical
    paranoia: 2
    targets: [args]
    operator: {regex: 'beta\d+'}
"#;

    /// Every kind, in `Kind as usize` order.
    const KINDS: [Kind; KIND_COUNT] = [
        Kind::Method,
        Kind::Path,
        Kind::QueryRaw,
        Kind::QueryArgName,
        Kind::QueryArg,
        Kind::BodyArgName,
        Kind::BodyArg,
        Kind::FileName,
        Kind::CookieName,
        Kind::Cookie,
        Kind::HeaderName,
        Kind::Header,
        Kind::BodyRaw,
    ];

    /// Per chain, level and kind, the summaries the engine skips a chain by must let
    /// through every value a rule of the chain of that level and kind may match: the
    /// chain's gate admits each alternative of the rule's gate, a rule needing no literal
    /// marks the kind unconditional, and a literal's pairs are among the kind's.
    fn assert_chain_summaries_cover_their_rules(set: &RuleSet) {
        assert!(KINDS.iter().enumerate().all(|(i, &k)| k as usize == i));
        for chain in &set.chains {
            for level in 0..4 {
                for kind in KINDS {
                    // The engine walks these in place of `unconditional`: a rule left out
                    // is one its paranoia or target check would reject for every name.
                    let reachable: Vec<u32> = chain
                        .unconditional
                        .iter()
                        .copied()
                        .filter(|&r| {
                            let rule = &set.rules[r as usize];
                            usize::from(rule.paranoia) <= level + 1
                                && rule.targets.kind_mask() & kind.bit() != 0
                        })
                        .collect();
                    assert_eq!(chain.unconditional_by(level, kind), reachable);
                    for &r in chain
                        .unconditional
                        .iter()
                        .filter(|r| !reachable.contains(r))
                    {
                        let rule = &set.rules[r as usize];
                        let names = rule.targets.headers.iter().map(String::as_str);
                        for name in names.chain(["", "x", "Referer"]) {
                            assert!(
                                usize::from(rule.paranoia) > level + 1
                                    || !rule.targets.covers(kind, name),
                                "rule {}, level {level}, {kind:?}, {name}",
                                rule.id
                            );
                        }
                    }
                    let rules = chain.rules.iter().map(|&r| r as usize).filter(|&r| {
                        let rule = &set.rules[r];
                        usize::from(rule.paranoia) <= level + 1
                            && rule.targets.kind_mask() & kind.bit() != 0
                            && !matches!(rule.op, Op::ArgCountOver(_))
                    });
                    for r in rules {
                        let id = set.rules[r].id;
                        for &mask in set.rule_gate[r].masks() {
                            assert!(
                                chain.gate(level, kind).admits(mask),
                                "rule {id}, level {level}, {kind:?}: mask {mask:#x}"
                            );
                        }
                        if chain.unconditional.contains(&(r as u32)) {
                            assert!(chain.unconditional_for(level, kind), "rule {id}");
                        } else if chain.compressing != 0 {
                            for literal in &set.literals[r] {
                                let pairs = crate::classes::pairs(literal);
                                assert!(
                                    chain.literal_pairs(level, kind).contains(&pairs),
                                    "rule {id}, level {level}, {kind:?}: {literal:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// The chains whose gates of unconditional rules admit a value, asked all at once,
    /// are those asked one by one.
    #[test]
    fn unconditional_gates_at_once_agree_with_each_chains() {
        use crate::classes::{self, Lazy};
        let set = RuleSet::embedded().unwrap();
        let masks = set.chain_masks.as_ref().expect("at most 64 chains");
        let bodies = classes::tests::sample_bodies();
        for level in 0..4 {
            for kind in KINDS {
                for body in bodies.iter().step_by(3) {
                    let expected = (0..set.chains.len())
                        .filter(|&ci| {
                            set.chains[ci].unconditional_admits(level, kind, &mut Lazy::new(body))
                        })
                        .fold(0u64, |acc, ci| acc | 1 << ci);
                    let got = masks.unconditional_admitted(level, kind, &mut Lazy::new(body));
                    assert_eq!(got, expected, "level {level}, {kind:?}, {body:?}");
                }
            }
        }
    }

    #[test]
    fn a_command_position_is_the_start_or_a_separator_then_blanks_and_a_bin_path() {
        let at = |value: &str, name: &str| {
            let start = value.rfind(name).expect("name in value");
            super::at_command_position(value.as_bytes(), start)
        };
        for (value, name) in [
            ("cat", "cat"),
            (" \t\x0b\x0ccat", "cat"),
            ("x;cat", "cat"),
            ("x & \r cat", "cat"),
            ("x|cat", "cat"),
            ("x\ncat", "cat"),
            ("x\n \tcat", "cat"),
            ("x`cat", "cat"),
            ("$(cat", "cat"),
            ("<( cat", "cat"),
            ("/bin/cat", "cat"),
            ("x; /sbin/cat", "cat"),
            ("x;/usr/bin/cat", "cat"),
            ("x;/USR/LOCAL/BIN/cat", "cat"),
            ("x;/local/sbin/cat", "cat"),
        ] {
            assert!(at(value, name), "{value:?}");
        }
        for (value, name) in [
            ("a cat", "cat"),
            ("a; b cat", "cat"),
            ("x;/usr/cat", "cat"),
            ("x;/opt/bin/cat", "cat"),
            ("x;usr/bin/cat", "cat"),
            ("x;/usr/bin//cat", "cat"),
            ("x;./bin/cat", "cat"),
            ("x,cat", "cat"),
            ("x)cat", "cat"),
        ] {
            assert!(!at(value, name), "{value:?}");
        }
    }

    /// Every match of a regex woken by `requires_commands` holds one of the words where
    /// its hit counts: the regex run on every value agrees with the prefiltered rule on
    /// values built from separators, blanks, paths, wrappers, command words and arguments.
    #[test]
    fn command_words_wake_every_match_of_their_regexes() {
        let set = RuleSet::embedded().unwrap();
        let mut scratch = crate::engine::Scratch::new(&set);
        let mut rng = crate::test_rng::Rng(0x5eed_c0de_2026_1206);
        let pieces: Vec<String> = [
            ";",
            "&",
            "|",
            "\n",
            "`",
            "$(",
            "<(",
            ">(",
            "(",
            ")",
            "||",
            "&&",
            " ",
            "  ",
            "\t",
            "\x0b",
            "\x0c",
            "\r",
            "/bin/",
            "/sbin/",
            "/usr/bin/",
            "/usr/local/bin/",
            "/local/sbin/",
            "/usr/",
            "x/bin/",
            "-la",
            "-c",
            "--version",
            "/etc/passwd",
            "/f",
            "/d",
            "$x",
            "'x'",
            "\"x\"",
            "x=1",
            "=",
            "==",
            "%i",
            "%%a",
            "in",
            "do",
            "echo",
            "exist",
            "not",
            "defined",
            "/i",
            "user",
            "query",
            "add",
            "5",
            "-l 50",
            "-u",
            "g",
            "_",
            "3",
            ".11",
            "%windir%",
            "%temp%",
            "a",
            "the",
            "<",
            ">",
            "<<<",
            "\\",
            "~",
            "!",
            "+",
            "-",
        ]
        .iter()
        .map(|p| p.to_string())
        .chain(
            set.rules
                .iter()
                .flat_map(|r| r.literals.iter().map(|(l, _)| l.clone())),
        )
        .collect();
        let commands: Vec<usize> = (0..set.rules.len())
            .filter(|&r| {
                set.rules[r]
                    .literals
                    .iter()
                    .any(|(_, p)| *p == crate::rule::Placement::Command)
            })
            .collect();
        assert!(commands.len() >= 5);
        let mut transformed = (Vec::new(), Vec::new());
        let mut matches = 0;
        for _ in 0..60_000 {
            let mut value = String::new();
            for _ in 0..1 + rng.below(7) {
                let piece = &pieces[rng.below(pieces.len())];
                if rng.below(4) == 0 {
                    value.push_str(&piece.to_ascii_uppercase());
                } else {
                    value.push_str(piece);
                }
                if rng.below(3) == 0 {
                    value.push(' ');
                }
            }
            for &r in &commands {
                let rule = &set.rules[r];
                let Op::Regex { re, .. } = &rule.op else {
                    unreachable!("command words are a regex's")
                };
                transformed.0.clear();
                transformed.0.extend_from_slice(value.as_bytes());
                for t in &rule.chain {
                    if t.apply(&transformed.0, &mut transformed.1) {
                        std::mem::swap(&mut transformed.0, &mut transformed.1);
                    }
                }
                let slow = re.find(&transformed.0).is_some();
                let fast = scratch.eval_single(&set, r, value.as_bytes()).is_some();
                assert_eq!(slow, fast, "rule {}: {value:?}", rule.id);
                matches += usize::from(slow);
            }
        }
        assert!(matches > 2_000, "{matches} matches");
    }

    /// The gates and prefilter literals taken from a regex hold for every value the rule
    /// matches, whether a test then judges the regex's matches or not (a test only drops
    /// matches): every example a rule matches passes its gate and holds one of its
    /// literals, after its transformations.
    #[test]
    fn gates_and_literals_hold_for_every_matching_example() {
        let set = RuleSet::embedded().unwrap();
        let mut judged = 0;
        for (r, rule) in set.rules.iter().enumerate() {
            judged += usize::from(matches!(
                &rule.op,
                Op::Regex { test: Some(_), .. } | Op::UnlessIn(_)
            ));
            for example in &rule.examples.positive {
                let mut value = (example.as_bytes().to_vec(), Vec::new());
                for t in &rule.chain {
                    if t.apply(&value.0, &mut value.1) {
                        std::mem::swap(&mut value.0, &mut value.1);
                    }
                }
                let what = format!("rule {}: {example:?}", rule.id);
                assert!(
                    set.rule_gate[r].admits(crate::classes::of(&value.0)),
                    "{what}"
                );
                let lower = value.0.to_ascii_lowercase();
                let literals = &set.literals[r];
                assert!(
                    literals.is_empty()
                        || literals
                            .iter()
                            .any(|l| lower.windows(l.len()).any(|w| w == l.to_ascii_lowercase())),
                    "{what}"
                );
            }
        }
        assert_eq!(judged, 7, "rules judging their matches");
    }

    #[test]
    fn chain_summaries_per_level_and_kind_cover_every_embedded_rule() {
        assert_chain_summaries_cover_their_rules(&RuleSet::embedded().unwrap());
    }

    /// Rule 1 reads argument values, rule 2 (same chain) only argument names, with a
    /// literal of letters alone that prose holds; rule 3 a value rule at paranoia 2.
    const NAMES_ONLY: &str = r#"rules:
  - id: 1
    message: values
    tags: [probe]
    severity: critical
    targets: [args]
    transforms: [lowercase, compress_whitespace]
    operator:
      literals: ["<scrip"]
  - id: 2
    message: names
    tags: [probe]
    severity: critical
    targets: [arg_names]
    transforms: [lowercase, compress_whitespace]
    operator:
      literals: ["window"]
  - id: 3
    message: values at two
    tags: [probe]
    severity: critical
    paranoia: 2
    targets: [args]
    transforms: [lowercase, compress_whitespace]
    operator:
      literals: ["sleep"]
"#;

    #[test]
    fn a_rule_on_argument_names_opens_its_chains_gate_for_names_only() {
        let set = RuleSet::from_yaml("names.yaml", NAMES_ONLY).unwrap();
        assert_chain_summaries_cover_their_rules(&set);
        assert_eq!(set.chains.len(), 1);
        let chain = &set.chains[0];
        let prose = crate::classes::of(b"Sleep in, open  the Window");
        assert!(chain.gate(0, Kind::QueryArgName).admits(prose));
        assert!(!chain.gate(0, Kind::QueryArg).admits(prose));
        assert!(!chain.gate(0, Kind::Header).admits(prose));
        // Rule 3's letters open the values' gate from its level on.
        assert!(chain.gate(1, Kind::QueryArg).admits(prose));
        let pairs = crate::classes::pairs(b"window");
        assert!(chain.literal_pairs(0, Kind::QueryArgName).contains(&pairs));
        assert!(!chain.literal_pairs(0, Kind::QueryArg).contains(&pairs));
        assert!(!chain
            .literal_pairs(0, Kind::QueryArg)
            .contains(&crate::classes::pairs(b"sleep")));
        assert!(chain
            .literal_pairs(1, Kind::QueryArg)
            .contains(&crate::classes::pairs(b"sleep")));

        // Skipped on values, the chain still finds what each rule looks for.
        let engine = Engine::new(set);
        let ids = |uri: &str| -> Vec<u32> {
            let request = Request::new("GET", uri);
            let verdict = engine.inspect(&request, &WafSettings::default(), None);
            let mut ids: Vec<u32> = verdict.matches.iter().map(|m| m.rule_id).collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(ids("/?q=Open%20%20the%20Window"), Vec::<u32>::new());
        assert_eq!(ids("/?Open%20%20the%20WINDOW=1"), vec![2]);
        assert_eq!(ids("/?q=a%20%3CSCRIP%20%20t"), vec![1]);
        assert_eq!(ids("/?q=zz%20%20SLEEP"), Vec::<u32>::new());
    }

    /// Rule 1 is rule 1038 (no transformation); rule 2 decodes and folds, and shares
    /// its chain with a literal rule (3); rule 4 only folds (a chain that cannot give a
    /// value a class it lacks). Rules 1, 2 and 4 fire when their regex misses.
    const MISSES: &str = r#"rules:
  - id: 1
    message: content-range
    severity: critical
    targets: ["header:content-range"]
    operator: {not_regex: '(?i)^\s*bytes\s+(?:\d+-\d+/(?:\d+|\*)|\*/\d+)\s*$'}
  - id: 2
    message: decoded
    severity: critical
    targets: [query_args]
    transforms: [url_decode, lowercase]
    operator: {not_regex: '^[a-z]+$'}
  - id: 3
    message: literal
    severity: critical
    targets: [query_args]
    transforms: [url_decode, lowercase]
    operator: {literals: ["zzq"]}
  - id: 4
    message: folded
    severity: critical
    targets: ["header:x-version"]
    transforms: [lowercase, compress_whitespace]
    operator: {not_regex: '^\d+(?:\.\d+)?$'}
"#;

    /// A rule that fires where its regex does not match has no literal and a gate that
    /// admits every value: it fires on values whose classes share nothing with the
    /// regex's (the empty value, punctuation, letters the regex lacks, high bytes), down
    /// every path by which the engine skips chains and rules, reporting the value.
    #[test]
    fn a_rule_firing_on_a_regex_miss_waits_for_nothing_and_admits_every_value() {
        let set = RuleSet::from_yaml("misses.yaml", MISSES).expect("compiles");
        assert_chain_summaries_cover_their_rules(&set);
        for r in [0, 1, 3] {
            assert!(set.literals[r].is_empty(), "rule {}", set.rules[r].id);
            assert!(set.rule_gate[r].is_always(), "rule {}", set.rules[r].id);
            let chain = &set.chains[set.rule_chain[r] as usize];
            assert!(chain.unconditional.contains(&(r as u32)));
        }
        let engine = Engine::new(set);
        let fired = |request: Request<'_>| -> Vec<(u32, String)> {
            let verdict = engine.inspect(&request, &WafSettings::default(), None);
            let mut fired: Vec<(u32, String)> = verdict
                .matches
                .iter()
                .map(|m| (m.rule_id, m.fragment.clone()))
                .collect();
            fired.sort();
            fired
        };
        let long = "~".repeat(100);
        for value in ["", "~", "Q", "!?", "\u{e9}", "\t", long.as_str()] {
            let request = Request::new("PUT", "/up").header("Content-Range", value.as_bytes());
            let fragment = &value[..value.len().min(crate::FRAGMENT_MAX)];
            let fragment = fragment.replace('\t', "\\t");
            assert_eq!(fired(request), [(1, fragment)], "{value:?}");
        }
        let valid = Request::new("PUT", "/up").header("content-range", b"bytes 0-99/100");
        assert_eq!(fired(valid), []);
        assert_eq!(fired(Request::new("PUT", "/up")), [], "no header, no value");
        assert_eq!(fired(Request::new("GET", "/?q=")), [(2, String::new())]);
        assert_eq!(fired(Request::new("GET", "/?q=~")), [(2, "~".into())]);
        assert_eq!(fired(Request::new("GET", "/?q=%7E%21")), [(2, "~!".into())]);
        assert_eq!(fired(Request::new("GET", "/?q=Ab%43")), []);
        assert_eq!(
            fired(Request::new("GET", "/?q=zzq1")),
            [(2, "zzq1".into()), (3, "zzq".into())]
        );
        for (value, fragment) in [("", ""), ("A", "a"), ("x \t y", "x y"), ("1 .5", "1 .5")] {
            let request = Request::new("GET", "/").header("X-Version", value.as_bytes());
            assert_eq!(fired(request), [(4, fragment.into())], "{value:?}");
        }
        let request = Request::new("GET", "/").header("x-version", b"1.5");
        assert_eq!(fired(request), []);
    }

    #[test]
    fn regexes_of_higher_levels_are_compiled_when_their_level_is_built() {
        let set = RuleSet::from_yaml("regexes.yaml", REGEXES).expect("compiles");
        let compiled = |set: &RuleSet| -> Vec<bool> {
            set.rules
                .iter()
                .map(|r| matches!(&r.op, Op::Regex { re, .. } if re.is_compiled()))
                .collect()
        };
        assert_eq!(compiled(&set), [true, false]);
        set.level(1);
        assert_eq!(compiled(&set), [true, false]);
        set.level(2);
        assert_eq!(compiled(&set), [true, true]);
        let engine = crate::Engine::new(set);
        let settings = crate::WafSettings::default().with_paranoia(2);
        let req = crate::Request::new("GET", "/?q=beta42");
        assert_eq!(engine.inspect(&req, &settings, None).matches[0].rule_id, 2);
    }

    #[test]
    fn a_bad_regex_of_a_higher_level_is_refused_when_the_file_loads() {
        let bad = REGEXES.replace(r"beta\d+", r"beta(\d+");
        let Err(error) = RuleSet::from_yaml("bad.yaml", &bad) else {
            panic!("a regex that does not compile was accepted");
        };
        assert!(error.to_string().contains("operator.regex"), "{error}");
    }

    fn rule_ids(set: &RuleSet, level: u8) -> Vec<u32> {
        let automata = set.level(level);
        let mut ids: Vec<u32> = automata
            .chains
            .iter()
            .chain(&automata.global)
            .flat_map(|scan| scan.pattern_rule.iter().map(|&r| set.rules[r as usize].id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    #[test]
    fn a_level_holds_only_the_literals_of_its_rules_and_below() {
        let set = RuleSet::embedded().expect("embedded rules build");
        for level in 1..=4u8 {
            let automata = set.level(level);
            for scan in automata.chains.iter().chain(&automata.global) {
                for &r in &scan.pattern_rule {
                    assert!(set.rules[r as usize].paranoia <= level, "level {level}");
                }
            }
        }
        let with_literals = |max: u8| -> Vec<u32> {
            let mut ids: Vec<u32> = (0..set.rules.len())
                .filter(|&r| set.rules[r].paranoia <= max && !set.literals[r].is_empty())
                .map(|r| set.rules[r].id)
                .collect();
            ids.sort_unstable();
            ids
        };
        assert!(
            with_literals(1) != with_literals(2),
            "PL2 rules with literals"
        );
        for level in 1..=4 {
            assert_eq!(rule_ids(&set, level), with_literals(level), "level {level}");
        }
    }

    #[test]
    fn prepare_builds_the_levels_of_the_service_and_its_routes() {
        let set = RuleSet::from_yaml("levels.yaml", TWO_LEVELS).expect("compiles");
        let mut settings = WafSettings::default();
        set.prepare(&settings);
        assert!(set.levels[1..].iter().all(|l| l.get().is_none()));
        settings.routes.insert(
            "/login".into(),
            crate::settings::RouteSettings {
                paranoia: Some(3),
                ..Default::default()
            },
        );
        set.prepare(&settings);
        assert!(set.levels[2].get().is_some(), "the route's level is built");
        assert!(set.levels[1].get().is_none() && set.levels[3].get().is_none());
    }

    #[test]
    fn levels_are_built_once_on_first_use_and_counted_when_built() {
        let set = RuleSet::from_yaml("levels.yaml", TWO_LEVELS).expect("compiles");
        assert!(set.levels[0].get().is_some(), "level 1 is built up front");
        assert!(set.levels[1..].iter().all(|l| l.get().is_none()));
        let first = set.scanner_bytes();
        assert_eq!(rule_ids(&set, 1), [1]);
        assert_eq!(set.scanner_bytes(), first);
        let third = set.level(3);
        assert!(std::ptr::eq(third, set.level(3)), "built once");
        assert_eq!(rule_ids(&set, 3), [1, 2]);
        let with_third = set.scanner_bytes();
        assert!(with_third > first, "{with_third} <= {first}");
        // Level 4 holds the same rules as level 3: it shares its automata.
        assert_eq!(rule_ids(&set, 4), [1, 2]);
        assert_eq!(set.scanner_bytes(), with_third);
        assert!(set.levels[1].get().is_none(), "level 2 was not asked for");
    }

    #[test]
    fn threads_asking_for_a_level_at_once_share_one_build() {
        fn shared<T: Send + Sync>(_: &T) {}
        let set = RuleSet::from_yaml("levels.yaml", TWO_LEVELS).expect("compiles");
        shared(&set);
        let levels: Vec<usize> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| s.spawn(|| set.level(2) as *const super::Level as usize))
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("no panic"))
                .collect()
        });
        assert!(levels.iter().all(|&l| l == levels[0]));
    }

    #[test]
    fn a_request_at_a_higher_level_after_a_lower_one_gets_that_levels_automata() {
        let engine = Engine::new(RuleSet::from_yaml("levels.yaml", TWO_LEVELS).expect("compiles"));
        let req = Request::new("GET", "/?q=gammahit&r=alphahit");
        let ids = |paranoia| {
            let verdict =
                engine.inspect(&req, &WafSettings::default().with_paranoia(paranoia), None);
            assert_eq!(verdict.action, Action::Block);
            verdict
                .matches
                .iter()
                .map(|m| m.rule_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(1), [1]);
        assert_eq!(ids(3), [2, 1]);
        assert_eq!(ids(1), [1]);
        assert_eq!(ids(2), [1]);
    }

    #[test]
    fn the_embedded_set_grows_only_by_the_levels_it_builds() {
        let set = RuleSet::embedded().expect("embedded rules build");
        let first = set.scanner_bytes();
        set.level(2);
        let second = set.scanner_bytes();
        // No embedded rule is above paranoia 2: levels 3 and 4 share level 2's automata.
        set.level(3);
        set.level(4);
        let all = set.scanner_bytes();
        println!("literal scanners: {first} bytes at paranoia 1, {all} with every level");
        assert!(first < second, "{first} >= {second}");
        assert_eq!(second, all);
    }

    #[test]
    fn every_scan_holding_an_sql_detector_rule_holds_all_its_keywords() {
        // What makes a level's `keywords` flag that of every rule: see `build_level`.
        let set = RuleSet::embedded().expect("embedded rules build");
        let keywords = |scan: &super::Scan| -> Vec<Vec<u8>> {
            let patterns = &scan.automaton.as_ref().expect("has literals").patterns;
            let mut words: Vec<Vec<u8>> = (0..patterns.len())
                .filter(|&p| scan.pattern_flags[p] & SQL_KEYWORD != 0)
                .map(|p| patterns[p].to_ascii_lowercase())
                .collect();
            words.sort_unstable();
            words.dedup();
            words
        };
        let mut all = None;
        let mut seen = 0;
        for level in 1..=4 {
            let automata = set.level(level);
            for scan in automata.chains.iter().chain(&automata.global) {
                let sqli = scan
                    .pattern_rule
                    .iter()
                    .any(|&r| matches!(set.rules[r as usize].op, Op::Sqli));
                if sqli {
                    seen += 1;
                    let words = keywords(scan);
                    assert!(!words.is_empty());
                    assert_eq!(all.get_or_insert_with(|| words.clone()), &words);
                }
            }
        }
        assert!(seen > 4, "{seen}");
    }

    #[test]
    fn triggered_chains_are_those_with_a_step_a_feature_triggers() {
        let set = RuleSet::embedded().expect("embedded rules build");
        let masks = set.chain_masks.as_ref().expect("under 64 chains");
        for features in 0..=u16::MAX {
            let expected = set
                .chains
                .iter()
                .enumerate()
                .filter(|(_, c)| c.triggers & features != 0)
                .fold(0u64, |acc, (ci, _)| acc | 1 << ci);
            assert_eq!(masks.triggered(features), expected, "{features:#06x}");
        }
    }

    #[test]
    fn argument_kinds_share_one_global_automaton() {
        let set = RuleSet::embedded().expect("embedded rules build");
        let by_kind = set.global_by_kind;
        let group = |k: Kind| by_kind[k as usize];
        assert_eq!(group(Kind::QueryArg), group(Kind::BodyArg));
        assert_eq!(group(Kind::QueryArg), group(Kind::Cookie));
        assert_eq!(group(Kind::QueryArgName), group(Kind::BodyArgName));
        for k in [Kind::Path, Kind::Header, Kind::CookieName, Kind::BodyRaw] {
            assert_ne!(group(Kind::QueryArg), group(k), "{k:?}");
        }
    }

    #[test]
    fn kinds_share_when_neither_holds_more_than_a_twentieth_of_foreign_patterns() {
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); KIND_COUNT];
        // Rule 0 has 95 patterns, rules 1 to 3 five each, rule 4 one.
        let weight = |r: u32| match r {
            0 => 95,
            4 => 1,
            _ => 5,
        };
        members[0] = vec![0, 1];
        members[1] = vec![0];
        members[2] = vec![0, 2, 3];
        members[3] = vec![0, 1];
        members[4] = vec![3, 4];
        let (groups, by_kind) = kind_groups(&members, weight);
        // Kind 2, the largest, goes first; kind 0 would add rule 1 to it (5 foreign
        // patterns of 110 for kind 2, within a twentieth) and bring it rules 2 and 3
        // (10 of 110, beyond), so kind 0 starts a group, which kinds 1 and 3 join.
        assert_eq!(by_kind[0], by_kind[1]);
        assert_eq!(by_kind[0], by_kind[3]);
        assert_ne!(by_kind[0], by_kind[2]);
        assert_ne!(by_kind[4], by_kind[0]);
        assert_eq!(groups[usize::from(by_kind[0])], [0, 1]);
        assert_eq!(groups[usize::from(by_kind[4])], [3, 4]);
        // The kinds without rules share an automaton without patterns.
        assert_eq!(by_kind[5], by_kind[12]);
        assert!(groups[usize::from(by_kind[5])].is_empty());
    }
}
