//! A loaded rule set, compiled once: rules grouped by transformation chain, and one
//! Aho-Corasick automaton per chain holding every literal of every rule on that chain.

use std::collections::HashMap;
use std::path::Path;

use crate::classes::{self, Gate};
use crate::error::RuleError;
use crate::request::{Kind, KIND_COUNT};
use crate::rule::{parse_file, Op, Rule};
use crate::scan::Literals;
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
    /// Union of the `Kind` bits the chain's rules target (skip values no rule looks at).
    pub kinds: u32,
    /// Every literal of the chain's rules.
    pub scan: Scan,
    /// Union of the chain's transformation triggers (see `transform::feature`).
    pub triggers: u16,
    /// `kinds` restricted to rules of paranoia <= index + 1.
    pub kinds_at: [u32; 4],
    /// The triggers of the chain's transformations that can put bytes of a class into a
    /// value that it did not hold (decoders); without them, transforming only removes or
    /// folds bytes and the value's classes bound those of the result.
    pub creating: u16,
    /// What a value needs for any rule of the chain of paranoia <= index + 1 to match.
    pub gate_at: [Gate; 4],
    /// Whether `unconditional` holds a rule of paranoia <= index + 1.
    pub unconditional_at: [bool; 4],
    /// The pair summaries (`classes::pairs`) of the chain's literals, for chains whose
    /// rules all wait for a literal: a value whose summary covers none of them cannot hit
    /// one after whitespace removal.
    pub literal_pairs: Vec<classes::Pairs>,
    /// Triggers of the chain's transformations that join bytes which were apart in ways
    /// pair summaries do not follow (SQL comment removal, path normalisation).
    pub pair_breaking: u16,
}

/// A compiled rule set. Build it once per load and share it (it is immutable).
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    pub(crate) chains: Vec<Chain>,
    /// For each rule, the index of its chain.
    pub(crate) rule_chain: Vec<u32>,
    /// For values that no chain changes, one scan serves all chains: per value kind, an
    /// automaton of every literal of every rule targeting that kind (kinds with the same
    /// rules share one), so a JSON body's quotes do not wake the SQL rules of arguments.
    pub(crate) global: Vec<Scan>,
    /// `Kind as usize` -> index into `global`.
    pub(crate) global_by_kind: [u8; KIND_COUNT],
    /// For each rule, what a value needs for it to match.
    pub(crate) rule_gate: Vec<Gate>,
    /// The chains as bit sets, when there are at most 64 of them.
    pub(crate) chain_masks: Option<ChainMasks>,
}

/// Chains as bit sets (bit i: chain i), so the engine picks a value's chains in a few
/// operations instead of testing every chain.
pub(crate) struct ChainMasks {
    /// Per value kind and paranoia level, the chains with a rule that targets the kind.
    pub by_kind_at: [[u64; 4]; KIND_COUNT],
    /// Per transformation feature bit, the chains with a transformation it triggers.
    triggered_by: [u64; 16],
    /// Per paranoia level, the chains with a rule that needs no literal.
    pub unconditional_at: [u64; 4],
    /// Per paranoia level, the chains with a rule that looks at every header.
    every_header_at: [u64; 4],
    /// Per header a rule names (lowercase), and paranoia level, the chains with a rule
    /// that looks at that header.
    named_headers: Vec<(String, [u64; 4])>,
}

impl ChainMasks {
    fn new(chains: &[Chain], rules: &[Rule]) -> Option<ChainMasks> {
        if chains.len() > 64 {
            return None;
        }
        let mut masks = ChainMasks {
            by_kind_at: [[0; 4]; KIND_COUNT],
            triggered_by: [0; 16],
            unconditional_at: [0; 4],
            every_header_at: [0; 4],
            named_headers: Vec::new(),
        };
        for (ci, chain) in chains.iter().enumerate() {
            let bit = 1u64 << ci;
            for level in 0..4 {
                for (kind, at) in masks.by_kind_at.iter_mut().enumerate() {
                    if chain.kinds_at[level] & (1 << kind) != 0 {
                        at[level] |= bit;
                    }
                }
                if chain.unconditional_at[level] {
                    masks.unconditional_at[level] |= bit;
                }
            }
            for (f, by) in masks.triggered_by.iter_mut().enumerate() {
                if chain.triggers & (1 << f) != 0 {
                    *by |= bit;
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
                            masks.named_headers.push((name, [0; 4]));
                            &mut masks.named_headers.last_mut()?.1
                        }
                    };
                    at[levels.clone()].iter_mut().for_each(|at| *at |= bit);
                }
            }
        }
        Some(masks)
    }

    /// The chains with a rule of paranoia <= `level` + 1 that looks at header `name`.
    /// Most rules look at a few headers by name, so a header value skips the chains of
    /// the others without testing each rule.
    pub(crate) fn header_chains(&self, name: &str, level: usize) -> u64 {
        self.named_headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .fold(self.every_header_at[level], |acc, (_, at)| acc | at[level])
    }

    /// The chains a value with transformation `features` makes run.
    pub(crate) fn triggered(&self, features: u16) -> u64 {
        let mut chains = 0;
        let mut rest = features;
        while rest != 0 {
            chains |= self.triggered_by[rest.trailing_zeros() as usize];
            rest &= rest - 1;
        }
        chains
    }
}

/// An automaton and the rule of each of its patterns.
#[derive(Default)]
pub(crate) struct Scan {
    pub automaton: Option<Literals>,
    pub pattern_rule: Vec<u32>,
    /// Per pattern: `WHOLE_WORD` and `SQL_KEYWORD` bits.
    pub pattern_flags: Vec<u8>,
}

/// A pattern that counts only as a whole word (an SQL keyword: `or` in `door` is none).
pub(crate) const WHOLE_WORD: u8 = 1;
/// A pattern whose hit means the value may hold an SQL keyword or `&&`/`||` the tokenizer
/// reads as such; without any, the SQL detector skips its own search for them.
pub(crate) const SQL_KEYWORD: u8 = 2;

impl Scan {
    fn new(patterns: Vec<(&[u8], u32, &Rule)>) -> Result<Scan, RuleError> {
        let literals: Vec<&[u8]> = patterns.iter().map(|(l, _, _)| *l).collect();
        Ok(Scan {
            automaton: Literals::new(&literals)?,
            pattern_rule: patterns.iter().map(|(_, r, _)| *r).collect(),
            pattern_flags: patterns
                .iter()
                .map(|(l, _, rule)| pattern_flags(rule, l))
                .collect(),
        })
    }
}

/// What a value must hold for `rule` to match it, derived from its operator.
fn rule_gate(rule: &Rule, literals: &[Vec<u8>]) -> Gate {
    let literal_gate = || Gate::any_of(literals.iter().map(|l| classes::of_literal(l)));
    match &rule.op {
        Op::Literals | Op::Sqli => literal_gate(),
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
        Op::LengthOver(_) | Op::ArgCountOver(_) => Gate::always(),
    }
}

/// The prefilter literals of each rule: those of its file, or derived from its regex.
fn prefilter_literals(rule: &Rule) -> Vec<Vec<u8>> {
    match &rule.op {
        Op::Regex {
            re,
            prefiltered: false,
        } => crate::required::literals(re.as_str()).unwrap_or_default(),
        _ => rule
            .literals
            .iter()
            .map(|l| l.as_bytes().to_vec())
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
        Transform::Base64Decode | Transform::Base64Text => ALWAYS,
        Transform::Lowercase
        | Transform::RemoveNulls
        | Transform::CompressWhitespace
        | Transform::RemoveWhitespace
        | Transform::RemoveSqlComments => 0,
    }
}

/// The flags of pattern `literal` of `rule`: only the SQL detector's prefilter literals
/// have any.
fn pattern_flags(rule: &Rule, literal: &[u8]) -> u8 {
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
                    kinds: 0,
                    scan: Scan::default(),
                    triggers: r.chain.iter().fold(0, |acc, t| acc | t.trigger()),
                    kinds_at: [0; 4],
                    creating: r.chain.iter().fold(0, |acc, &t| acc | creating_trigger(t)),
                    gate_at: std::array::from_fn(|_| Gate::never()),
                    unconditional_at: [false; 4],
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
            let conditional = matches!(r.op, Op::Literals | Op::Sqli | Op::Regex { .. })
                && !literals[i].is_empty();
            if !conditional && !matches!(r.op, Op::ArgCountOver(_)) {
                chain.unconditional.push(i as u32);
                for p in usize::from(r.paranoia)..=4 {
                    chain.unconditional_at[p - 1] = true;
                }
            }
            if !matches!(r.op, Op::ArgCountOver(_)) {
                chain.kinds |= r.targets.kind_mask();
                for p in usize::from(r.paranoia)..=4 {
                    chain.kinds_at[p - 1] |= r.targets.kind_mask();
                    chain.gate_at[p - 1] = chain.gate_at[p - 1].or(&rule_gates[i]);
                }
            }
            rule_chain.push(c);
        }
        let (rules_ref, literals_ref) = (&rules, &literals);
        let patterns_of = |members: &[u32]| -> Vec<(&[u8], u32, &Rule)> {
            members
                .iter()
                .flat_map(|&ri| {
                    literals_ref[ri as usize]
                        .iter()
                        .map(move |l| (l.as_slice(), ri, &rules_ref[ri as usize]))
                })
                .collect()
        };
        for chain in &mut chains {
            let patterns = patterns_of(&chain.rules);
            chain.literal_pairs = patterns.iter().map(|(l, _, _)| classes::pairs(l)).collect();
            chain.literal_pairs.sort_unstable();
            chain.literal_pairs.dedup();
            chain.scan = Scan::new(patterns)?;
        }
        let mut global: Vec<Scan> = Vec::new();
        let mut by_rules: HashMap<Vec<u32>, u8> = HashMap::new();
        let mut global_by_kind = [0u8; KIND_COUNT];
        for (k, slot) in global_by_kind.iter_mut().enumerate() {
            let bit = 1u32 << k;
            let members: Vec<u32> = (0..rules.len() as u32)
                .filter(|&r| rules[r as usize].targets.kind_mask() & bit != 0)
                .collect();
            if let Some(&i) = by_rules.get(&members) {
                *slot = i;
                continue;
            }
            global.push(Scan::new(patterns_of(&members))?);
            let i = (global.len() - 1) as u8;
            by_rules.insert(members, i);
            *slot = i;
        }
        Ok(RuleSet {
            chain_masks: ChainMasks::new(&chains, &rules),
            rules,
            chains,
            rule_chain,
            global,
            global_by_kind,
            rule_gate: rule_gates,
        })
    }

    /// Number of distinct transformation chains (one automaton each).
    pub fn chain_count(&self) -> usize {
        self.chains.len()
    }

    /// The bytes held by the literal scanners' tables, the bulk of a compiled rule set's
    /// memory: every sidecar holds one, so operators see it at start.
    pub fn scanner_bytes(&self) -> usize {
        self.global
            .iter()
            .chain(self.chains.iter().map(|c| &c.scan))
            .filter_map(|scan| scan.automaton.as_ref())
            .map(Literals::memory_usage)
            .sum()
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
