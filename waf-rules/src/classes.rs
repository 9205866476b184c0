//! Byte classes: a 64-bit summary of which kinds of bytes a value holds, and the gates
//! built from it that let the engine skip work a value cannot need.
//!
//! Every byte maps to a fixed set of class bits (each ASCII letter, case folded, has its
//! own bit; each ASCII punctuation character has its own bit; digits, whitespace, NUL and
//! the rest share a few). If a literal occurs in a value (ASCII case-insensitively), every
//! class of the literal's bytes occurs in the value. So a rule whose every possible match
//! needs, say, `<` and `=` cannot fire on a value whose classes lack either, and the
//! engine skips it without running its regex, detector or transformed scan.
//!
//! A [`Gate`] is such a condition in disjunctive form: the rule can match only if the
//! value's classes contain all the bits of at least one of the gate's masks. Gates are
//! derived from the rules themselves (literals, regex syntax trees, what a detector needs),
//! never written by hand, so they cannot drift from what the rules match.

use regex_syntax::hir::{Class, Hir, HirKind};

/// The class bits of a value.
pub(crate) type Classes = u64;

/// Any ASCII digit.
pub(crate) const DIGIT: Classes = 1 << 26;
/// Any ASCII uppercase letter (in addition to the letter's own bit). Never part of a gate:
/// matching is ASCII case-insensitive.
pub(crate) const UPPER: Classes = 1 << 27;
/// Whitespace: space, tab, CR, LF, VT, FF and 0xA0.
pub(crate) const SPACE: Classes = 1 << 28;
/// The NUL byte.
pub(crate) const NUL: Classes = 1 << 29;
/// Other control bytes and bytes >= 0x80 not covered below.
pub(crate) const OTHER: Classes = 1 << 30;
/// 0xC0, 0xC1, 0xE2, 0xE3 and 0xEF: the lead bytes of overlong, full-width, circled and
/// ideographic-stop evasions (`transform::fold_unicode`).
pub(crate) const EVASION_LEAD: Classes = 1 << 31;

/// The ASCII punctuation characters, each with its own bit from 32 up.
const PUNCTUATION: &[u8; 32] = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// The class of `"`.
pub(crate) const DOUBLE_QUOTE: Classes = table()[b'"' as usize];
/// The class of `\`.
pub(crate) const BACKSLASH: Classes = table()[b'\\' as usize];

const fn table() -> [Classes; 256] {
    let mut t = [OTHER; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_lowercase() {
            t[b] = 1 << (c - b'a');
        } else if c.is_ascii_uppercase() {
            t[b] = (1 << (c - b'A')) | UPPER;
        } else if c.is_ascii_digit() {
            t[b] = DIGIT;
        } else if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            t[b] = SPACE;
        } else if c == 0xa0 {
            t[b] = SPACE | OTHER;
        } else if c == 0 {
            t[b] = NUL;
        } else if matches!(c, 0xc0 | 0xc1 | 0xe2 | 0xe3 | 0xef) {
            t[b] = EVASION_LEAD;
        }
        b += 1;
    }
    let mut p = 0;
    while p < PUNCTUATION.len() {
        t[PUNCTUATION[p] as usize] = 1 << (32 + p);
        p += 1;
    }
    t
}

static TABLE: [Classes; 256] = table();

/// The classes of one byte.
pub(crate) fn of_byte(b: u8) -> Classes {
    TABLE[usize::from(b)]
}

/// The classes present in `value`.
pub(crate) fn of(value: &[u8]) -> Classes {
    // Four independent accumulators: the lookups of neighbouring bytes do not wait for
    // each other's OR.
    let mut chunks = value.chunks_exact(4);
    let mut acc = [0 as Classes; 4];
    for c in &mut chunks {
        acc[0] |= TABLE[usize::from(c[0])];
        acc[1] |= TABLE[usize::from(c[1])];
        acc[2] |= TABLE[usize::from(c[2])];
        acc[3] |= TABLE[usize::from(c[3])];
    }
    let rest = chunks
        .remainder()
        .iter()
        .fold(0, |a, &b| a | TABLE[usize::from(b)]);
    acc[0] | acc[1] | acc[2] | acc[3] | rest
}

/// A value's classes, computed on first use: a raw body that no chain it reaches
/// transforms, and whose chains' gates ask nothing of it, skips the pass over its bytes.
/// Copied into out-of-line callees, so the caller's stays in registers.
#[derive(Clone, Copy)]
pub(crate) struct Lazy<'v> {
    value: &'v [u8],
    /// `UNKNOWN` until computed: a single word, no separate flag to keep in a register.
    classes: Classes,
}

/// Classes no value has: an uppercase letter always brings the letter's own bit.
const UNKNOWN: Classes = UPPER;

impl<'v> Lazy<'v> {
    #[inline]
    pub(crate) fn new(value: &'v [u8]) -> Lazy<'v> {
        Lazy {
            value,
            classes: UNKNOWN,
        }
    }

    /// Classes already known.
    #[inline]
    pub(crate) fn known(classes: Classes) -> Lazy<'static> {
        Lazy {
            value: &[],
            classes,
        }
    }

    /// The classes of the value, computed in line: for the common case of a value whose
    /// classes are needed at once.
    #[inline]
    pub(crate) fn now(&mut self) -> Classes {
        self.classes = of(self.value);
        self.classes
    }

    /// The classes of the value.
    #[inline]
    pub(crate) fn get(&mut self) -> Classes {
        if self.classes == UNKNOWN {
            self.fill();
        }
        self.classes
    }

    /// Out of line: the pass would be copied into every caller of `get`.
    #[inline(never)]
    fn fill(&mut self) {
        self.classes = of(self.value);
    }
}

/// The transformation features carried by bytes that `lacks_byte_features` searches for:
/// `%`, NUL and the evasion leads (all >= 0x80). The chains a raw body reaches are
/// triggered by these alone (the engine checks it per rule set before relying on it).
pub(crate) const BYTE_FEATURES: u16 = {
    use crate::transform::feature as f;
    f::PERCENT | f::NUL | f::HIGH
};

/// Whether `features(of(value))` holds none of `BYTE_FEATURES`, found by searches that
/// run many bytes per step (`%` and NUL by `memchr2`, the high bytes by `is_ascii`)
/// instead of a table lookup per byte. May say false for a value without them (a
/// non-ASCII byte other than an evasion lead): the caller then takes the classes.
pub(crate) fn lacks_byte_features(value: &[u8]) -> bool {
    value.is_ascii() && memchr::memchr2(b'%', 0, value).is_none()
}

/// The classes of the bytes base64 decoding accepts (either alphabet, padding) and of
/// the whitespace it trims: a value with any other class holds a byte no base64 decoding
/// gets past (`transform::feature::BASE64`).
const BASE64_BYTES: Classes = {
    let t = table();
    let mut classes = UPPER | DIGIT | SPACE;
    let mut b = 0;
    while b < 26 {
        classes |= t[b'a' as usize + b];
        b += 1;
    }
    let symbols = b"+/-_=";
    let mut i = 0;
    while i < symbols.len() {
        classes |= t[symbols[i] as usize];
        i += 1;
    }
    classes
};

/// The transformation features (see `transform::feature`) of a value with `classes`.
/// The class bits that carry features lie in four short runs (`#` to `&`, `-` to `/`,
/// `\\`, and uppercase to the evasion leads): one small table per run, looked up by the
/// run's bits, instead of a test and branch per feature (it runs for every value).
pub(crate) fn features(classes: Classes) -> u16 {
    use crate::transform::feature as f;
    const HASH_TO_AMP: u32 = 34;
    const DASH_TO_SLASH: u32 = 44;
    const BACKSLASH_BIT: u32 = 55;
    const UPPER_TO_LEAD: u32 = 27;
    /// The features of each combination of the `len` class bits from `shift` up: a class
    /// bit's features are those every byte of the class carries (0xA0 is also of the
    /// class of other bytes, which carry none), and a combination's are its bits'.
    const fn run(shift: u32, len: u32) -> [u16; 32] {
        let classes = table();
        let mut of_bit = [0u16; 5];
        let mut k = 0;
        while k < len as usize {
            of_bit[k] = !0;
            let mut b = 0;
            while b < 256 {
                if classes[b] >> (shift as usize + k) & 1 != 0 {
                    of_bit[k] &= crate::transform::feature::BYTES[b];
                }
                b += 1;
            }
            k += 1;
        }
        let mut t = [0u16; 32];
        let mut v = 0;
        while v < 1 << len {
            let mut k = 0;
            while k < len as usize {
                if v >> k & 1 != 0 {
                    t[v] |= of_bit[k];
                }
                k += 1;
            }
            v += 1;
        }
        t
    }
    static HASH_AMP: [u16; 32] = run(HASH_TO_AMP, 4);
    static DASH_SLASH: [u16; 32] = run(DASH_TO_SLASH, 3);
    static BACKSLASH_RUN: [u16; 32] = run(BACKSLASH_BIT, 1);
    static UPPER_LEAD: [u16; 32] = run(UPPER_TO_LEAD, 5);
    let at = |shift: u32, mask: u64| (classes >> shift & mask) as usize;
    let base64 = if classes & !BASE64_BYTES == 0 {
        f::BASE64
    } else {
        0
    };
    base64
        | HASH_AMP[at(HASH_TO_AMP, 0xf)]
        | DASH_SLASH[at(DASH_TO_SLASH, 0x7)]
        | BACKSLASH_RUN[at(BACKSLASH_BIT, 0x1)]
        | UPPER_LEAD[at(UPPER_TO_LEAD, 0x1f)]
}

/// The classes a value must hold for `literal` to occur in it case-insensitively.
pub(crate) fn of_literal(literal: &[u8]) -> Classes {
    of(literal) & !UPPER
}

/// A 128-bit summary of the adjacent byte pairs of a value once whitespace and NUL bytes
/// are dropped (ASCII case folded). Removing whitespace or NULs, compressing whitespace or
/// lowercasing leave this summary unchanged, so a literal (itself stripped) can occur in
/// such a transformed value only if all of its pairs are in the summary: the engine skips
/// a whitespace-compressing chain whose literals all miss, without building the copy.
pub(crate) type Pairs = [u64; 2];

/// The bit of the pair `(a, b)` (already case folded): its index in 0..128.
fn pair_bit(a: u8, b: u8) -> u32 {
    (u32::from(a) << 8 | u32::from(b)).wrapping_mul(0x9E37_79B1) >> 25
}

/// The pair summary of `value`. Out of line, so the accumulator gets a register of its
/// own instead of a stack slot that every pair would read and write.
#[inline(never)]
pub(crate) fn pairs(value: &[u8]) -> Pairs {
    let skipped = |b: u8| TABLE[usize::from(b)] & (SPACE | NUL) != 0;
    let Some(first) = value.iter().position(|&b| !skipped(b)) else {
        return [0; 2];
    };
    let mut acc = 0u128;
    let mut previous = FOLD[usize::from(value[first])];
    for &b in &value[first + 1..] {
        if skipped(b) {
            continue;
        }
        let b = FOLD[usize::from(b)];
        acc |= 1u128 << pair_bit(previous, b);
        previous = b;
    }
    [acc as u64, (acc >> 64) as u64]
}

/// ASCII lowercase of every byte.
static FOLD: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).to_ascii_lowercase();
        b += 1;
    }
    t
};

/// Whether every pair of `needed` is in `present`.
pub(crate) fn pairs_within(needed: &Pairs, present: &Pairs) -> bool {
    needed[0] & !present[0] == 0 && needed[1] & !present[1] == 0
}

/// Most masks a gate keeps; past it, alternatives are merged into what they share (a
/// weaker condition, still sound). At 24 the XSS sink rule's 28 literals were merged into
/// nothing, which let its whitespace-removing chain through for every prose value; a gate
/// that rejects a value costs about three instructions per mask.
const GATE_MAX: usize = 64;

/// A condition on a value's classes that every match of a rule satisfies: some mask is a
/// subset of the value's classes. A gate holding the empty mask admits every value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gate {
    masks: Vec<Classes>,
    /// One bit of each mask (its highest: punctuation before letters): a value holding
    /// none of them cannot hold a whole mask, which rejects most values in one test.
    any_bit: Classes,
    /// The empty mask is among the alternatives: every value is admitted.
    always: bool,
}

impl Gate {
    /// The gate that admits every value.
    pub(crate) fn always() -> Gate {
        Gate::any_of([0])
    }

    /// A gate from alternatives; keeps only the minimal masks.
    pub(crate) fn any_of(masks: impl IntoIterator<Item = Classes>) -> Gate {
        let mut gate = Gate {
            masks: masks.into_iter().collect(),
            any_bit: 0,
            always: false,
        };
        gate.minimize();
        gate
    }

    /// Whether a value with classes `classes` may satisfy the condition.
    #[inline]
    pub(crate) fn admits(&self, classes: Classes) -> bool {
        (self.always || self.any_bit & classes != 0)
            && self.masks.iter().any(|&m| m & !classes == 0)
    }

    /// As `admits`, taking the classes only from a gate that depends on them.
    #[inline]
    pub(crate) fn admits_lazy(&self, classes: &mut Lazy<'_>) -> bool {
        if self.always {
            return true;
        }
        // No mask: the gate admits nothing, whatever the classes.
        if self.any_bit == 0 {
            return false;
        }
        let classes = classes.get();
        self.any_bit & classes != 0 && self.masks.iter().any(|&m| m & !classes == 0)
    }

    /// Whether the gate admits every value.
    #[cfg(test)]
    pub(crate) fn is_always(&self) -> bool {
        self.always
    }

    /// The alternatives: a gate admits at least what another does when it admits each of
    /// the other's masks taken as a value's classes.
    #[cfg(test)]
    pub(crate) fn masks(&self) -> &[Classes] {
        &self.masks
    }

    /// Either condition.
    pub(crate) fn or(&self, other: &Gate) -> Gate {
        Gate::any_of(self.masks.iter().chain(&other.masks).copied())
    }

    /// The gate that admits no value (a rule that can never match, or none at all).
    pub(crate) fn never() -> Gate {
        Gate::any_of([])
    }

    /// Both conditions (each pair of alternatives combined).
    pub(crate) fn and(&self, other: &Gate) -> Gate {
        let (a, b) = (self.weakened(), other.weakened());
        Gate::any_of(
            a.masks
                .iter()
                .flat_map(|&x| b.masks.iter().map(move |&y| x | y)),
        )
    }

    /// At most `GATE_MAX.isqrt()` masks, so that a product stays within `GATE_MAX`.
    fn weakened(&self) -> Gate {
        if self.masks.len() * self.masks.len() <= GATE_MAX {
            return self.clone();
        }
        let shared = self.masks.iter().fold(!0, |acc, &m| acc & m);
        Gate::any_of([shared])
    }

    fn minimize(&mut self) {
        self.masks.sort_by_key(|m| m.count_ones());
        self.masks.dedup();
        let mut kept: Vec<Classes> = Vec::with_capacity(self.masks.len());
        for &m in &self.masks {
            if !kept.iter().any(|&k| k & !m == 0) {
                kept.push(m);
            }
        }
        if kept.len() > GATE_MAX {
            let shared = kept.iter().fold(!0, |acc, &m| acc & m);
            kept = vec![shared];
        }
        self.any_bit = kept
            .iter()
            .filter(|&&m| m != 0)
            .fold(0, |acc, &m| acc | 1 << (63 - m.leading_zeros()));
        self.always = kept.contains(&0);
        self.masks = kept;
    }

    /// What any match of `pattern` (regex crate syntax, ASCII by default as rule regexes
    /// are compiled) must hold; `always` when the pattern cannot be analysed.
    pub(crate) fn of_regex(pattern: &str) -> Gate {
        match regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(pattern)
        {
            Ok(hir) => of_hir(&hir),
            Err(_) => Gate::always(),
        }
    }
}

/// The gates of several chains (bit i: chain i), tested at once: a value the raw scan
/// found none of their literals in asks each chain's gate of unconditional rules in turn,
/// and most reject it by their `any_bit` alone.
pub(crate) struct GateSet {
    /// The chains whose gate admits every value.
    always: u64,
    /// The `any_bit` of every gate: a value holding none of them is admitted by none but
    /// `always`.
    any_bit: Classes,
    /// Every mask of every gate, with its chain's bit.
    masks: Vec<(Classes, u64)>,
}

impl GateSet {
    /// The set of `gates`, each given with its chain's bit.
    pub(crate) fn new<'g>(gates: impl IntoIterator<Item = (u64, &'g Gate)>) -> GateSet {
        let mut set = GateSet {
            always: 0,
            any_bit: 0,
            masks: Vec::new(),
        };
        for (chain, gate) in gates {
            if gate.always {
                set.always |= chain;
            } else {
                set.any_bit |= gate.any_bit;
                set.masks.extend(gate.masks.iter().map(|&m| (m, chain)));
            }
        }
        set
    }

    /// The chains whose gate admits a value with `classes`, as `Gate::admits_lazy` would
    /// say of each.
    #[inline]
    pub(crate) fn admitted(&self, classes: &mut Lazy<'_>) -> u64 {
        if self.any_bit == 0 {
            return self.always;
        }
        let classes = classes.get();
        if self.any_bit & classes == 0 {
            return self.always;
        }
        self.masks
            .iter()
            .fold(self.always, |admitted, &(m, chain)| {
                admitted | chain & u64::from(m & !classes == 0).wrapping_neg()
            })
    }
}

/// Gate of a syntax tree: a concatenation needs all its parts, an alternation one of its
/// branches, a class one of its members; anything that can match empty needs nothing.
fn of_hir(hir: &Hir) -> Gate {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Gate::always(),
        HirKind::Literal(lit) => Gate::any_of([of_literal(&lit.0)]),
        HirKind::Class(class) => of_class(class),
        HirKind::Repetition(rep) if rep.min == 0 => Gate::always(),
        HirKind::Repetition(rep) => of_hir(&rep.sub),
        HirKind::Capture(cap) => of_hir(&cap.sub),
        HirKind::Concat(parts) => parts
            .iter()
            .fold(Gate::always(), |acc, part| acc.and(&of_hir(part))),
        HirKind::Alternation(branches) => Gate::any_of(
            branches
                .iter()
                .flat_map(|b| of_hir(b).masks)
                .collect::<Vec<_>>(),
        ),
    }
}

/// One alternative per class bit the members map to. A non-ASCII member is encoded in
/// UTF-8 with bytes >= 0x80 only, whose classes are `OTHER`, `EVASION_LEAD` or 0xA0's.
fn of_class(class: &Class) -> Gate {
    let mut bits: Classes = 0;
    let mut non_ascii = false;
    let mut add = |lo: u32, hi: u32| {
        for c in lo..=hi.min(0x7f) {
            bits |= of_byte(c as u8) & !UPPER;
        }
        if hi > 0x7f {
            non_ascii = true;
        }
    };
    match class {
        Class::Unicode(u) => u
            .iter()
            .for_each(|r| add(u32::from(r.start()), u32::from(r.end()))),
        Class::Bytes(b) => b.iter().for_each(|r| {
            for byte in r.start()..=r.end() {
                bits |= of_byte(byte) & !UPPER;
            }
        }),
    }
    if non_ascii {
        bits |= OTHER | EVASION_LEAD;
    }
    let masks: Vec<Classes> = (0..64)
        .map(|i| 1u64 << i)
        .filter(|bit| bits & bit != 0)
        .collect();
    if masks.is_empty() {
        Gate::always()
    } else {
        Gate::any_of(masks)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn admits(gate: &Gate, value: &str) -> bool {
        gate.admits(of(value.as_bytes()))
    }

    /// The bytes base64 decoding accepts or trims (`transform::base64_decode`).
    fn base64_byte(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"+/-_= \t\n\r\x0b\x0c".contains(&b)
    }

    /// `features` a test and branch per feature, as it was.
    fn features_by_tests(classes: Classes) -> u16 {
        use crate::transform::feature as f;
        let has = |b: u8| classes & of_byte(b) != 0;
        let base64_classes = (0..=255u8)
            .filter(|&b| base64_byte(b))
            .fold(0, |acc, b| acc | of_byte(b));
        let mut features = 0;
        if classes & !base64_classes == 0 {
            features |= f::BASE64;
        }
        if has(b'%') {
            features |= f::PERCENT;
        }
        if has(b'&') {
            features |= f::AMP;
        }
        if has(b'\\') {
            features |= f::BACKSLASH | f::PATH;
        }
        if classes & UPPER != 0 {
            features |= f::UPPER;
        }
        if has(b'/') {
            features |= f::PATH | f::SQL_COMMENT;
        }
        if has(b'-') || has(b'#') {
            features |= f::SQL_COMMENT;
        }
        if classes & NUL != 0 {
            features |= f::NUL;
        }
        if classes & SPACE != 0 {
            features |= f::SPACE | f::SPACE_RUN;
        }
        if classes & EVASION_LEAD != 0 {
            features |= f::HIGH;
        }
        features
    }

    #[test]
    fn features_agree_with_a_test_per_feature() {
        use crate::test_rng::Rng;
        let mut rng = Rng(0x7ab1_e5f0_f00d_1234);
        for _ in 0..100_000 {
            // Sparse and dense sets of class bits alike.
            let classes = rng.next() & rng.next() & (rng.next() | rng.next());
            assert_eq!(
                features(classes),
                features_by_tests(classes),
                "{classes:#x}"
            );
        }
        for bit in 0..64 {
            assert_eq!(features(1 << bit), features_by_tests(1 << bit), "{bit}");
        }
    }

    #[test]
    fn features_agree_with_the_byte_table() {
        use crate::transform::feature;
        for b in 0..=255u8 {
            let base64 = if base64_byte(b) { feature::BASE64 } else { 0 };
            let expected = (0..11)
                .map(|bit| 1u16 << bit)
                .filter(|&f| feature::has(b, f))
                .fold(base64, |acc, f| acc | f);
            assert_eq!(features(of(&[b])), expected, "byte {b:#04x}");
        }
    }

    /// Bodies for the fast paths' tests: random bytes, sometimes with a byte that
    /// carries a `BYTE_FEATURES` feature or is merely non-ASCII, and the benign corpora.
    pub(crate) fn sample_bodies() -> Vec<Vec<u8>> {
        use crate::test_rng::Rng;
        let mut rng = Rng(0x0b0d_1e5f_a57c_0de5);
        let mut bodies: Vec<Vec<u8>> = [
            &include_bytes!("../tests/benign/documents.jsonl")[..],
            include_bytes!("../tests/benign/graphql.txt"),
            include_bytes!("../tests/benign/international.txt"),
            include_bytes!("../tests/benign/more.txt"),
            include_bytes!("../tests/benign/prose.txt"),
            include_bytes!("../tests/benign/technical.txt"),
            include_bytes!("../tests/benign/tokens.txt"),
        ]
        .iter()
        .flat_map(|corpus| {
            let lines: Vec<Vec<u8>> = corpus.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            let whole = corpus.to_vec();
            lines.into_iter().chain([whole])
        })
        .collect();
        let special = [
            b'%', 0, 0xc0, 0xc1, 0xe2, 0xe3, 0xef, 0xc3, 0xa9, 0xa0, 0x80, 0xff,
        ];
        for _ in 0..3000 {
            let len = rng.below(600);
            let mut body: Vec<u8> = (0..len).map(|_| b' ' + rng.below(95) as u8).collect();
            for _ in 0..rng.below(3) {
                if len > 0 {
                    let at = rng.below(len);
                    body[at] = special[rng.below(special.len())];
                }
            }
            bodies.push(body);
        }
        for b in 0..=255u8 {
            bodies.push(vec![b]);
            bodies.push([b"{\"a\": \"x".as_slice(), &[b], b"\"}"].concat());
        }
        bodies
    }

    #[test]
    fn bodies_said_to_lack_byte_features_lack_them() {
        let mut said = 0;
        for body in sample_bodies() {
            let features = features(of(&body));
            if lacks_byte_features(&body) {
                said += 1;
                assert_eq!(features & BYTE_FEATURES, 0, "{body:?}");
            }
        }
        assert!(said > 100, "the fast path was taken {said} times");
        // Exact on ASCII: false only for a `%` or a NUL.
        for b in 0..0x80u8 {
            let has = features(of(&[b])) & BYTE_FEATURES != 0;
            assert_eq!(lacks_byte_features(&[b]), !has, "byte {b:#04x}");
        }
    }

    #[test]
    fn lazy_classes_and_gates_agree_with_the_eager_ones() {
        use crate::test_rng::Rng;
        let mut rng = Rng(0x1a2b_3c4d_5e6f_7081);
        let mut gates = vec![Gate::always(), Gate::never()];
        for pattern in [
            r"\x00",
            r"[\x00\x01\x1f]|\s",
            r"<script",
            r"(?i)union\s+select",
            "a*",
        ] {
            gates.push(Gate::of_regex(pattern));
        }
        for _ in 0..200 {
            let masks: Vec<Classes> = (0..rng.below(4))
                .map(|_| rng.next() & rng.next() & rng.next() & !UPPER)
                .collect();
            gates.push(Gate::any_of(masks));
        }
        for body in sample_bodies() {
            let eager = of(&body);
            let mut lazy = Lazy::new(&body);
            for gate in &gates {
                assert_eq!(gate.admits_lazy(&mut lazy), gate.admits(eager), "{gate:?}");
                assert_eq!(
                    gate.admits_lazy(&mut Lazy::new(&body)),
                    gate.admits(eager),
                    "{gate:?}"
                );
                assert_eq!(
                    gate.admits_lazy(&mut Lazy::known(eager)),
                    gate.admits(eager)
                );
            }
            assert_eq!(lazy.get(), eager);
            assert_eq!(Lazy::new(&body).now(), eager);
        }
    }

    /// A gate set says of each of its chains what the chain's gate says, for lazy and
    /// known classes alike, whatever mix of always, never and masked gates it holds.
    #[test]
    fn a_gate_set_admits_the_chains_whose_gates_admit() {
        use crate::test_rng::Rng;
        let mut rng = Rng(0x6a7e_5e70_0bad_cafe);
        let mut gates = vec![Gate::always(), Gate::never()];
        for pattern in [
            r"<script",
            r"(?i)union\s+select",
            r"[\x00\x01\x1f]|\s",
            "a*",
        ] {
            gates.push(Gate::of_regex(pattern));
        }
        for _ in 0..300 {
            let masks: Vec<Classes> = (0..rng.below(5))
                .map(|_| rng.next() & rng.next() & rng.next() & !UPPER)
                .collect();
            gates.push(Gate::any_of(masks));
        }
        let bodies = sample_bodies();
        for _ in 0..200 {
            let mut chosen: Vec<(u64, &Gate)> = Vec::new();
            for ci in 0..64 {
                if rng.below(3) == 0 {
                    chosen.push((1 << ci, &gates[rng.below(gates.len())]));
                }
            }
            let set = GateSet::new(chosen.iter().copied());
            for body in bodies.iter().step_by(7) {
                let eager = of(body);
                let expected = chosen
                    .iter()
                    .filter(|(_, gate)| gate.admits(eager))
                    .fold(0, |acc, (chain, _)| acc | chain);
                assert_eq!(set.admitted(&mut Lazy::new(body)), expected);
                assert_eq!(set.admitted(&mut Lazy::known(eager)), expected);
            }
            for _ in 0..200 {
                let classes = rng.next() & !UPPER;
                let expected = chosen
                    .iter()
                    .filter(|(_, gate)| gate.admits(classes))
                    .fold(0, |acc, (chain, _)| acc | chain);
                assert_eq!(set.admitted(&mut Lazy::known(classes)), expected);
            }
        }
    }

    #[test]
    fn pairs_survive_whitespace_removal_and_case() {
        let literal = pairs(b"javascript:");
        let evasive = pairs(b"x = JAVA\tSCRIPT :alert(1)");
        assert!(pairs_within(&literal, &evasive));
        let prose = pairs(b"please leave it at the door");
        assert!(!pairs_within(&literal, &prose));
    }

    #[test]
    fn literals_need_their_bytes_in_any_case() {
        let gate = Gate::any_of([of_literal(b"javascript:")]);
        assert!(admits(&gate, "x JAVASCRIPT:alert(1)"));
        assert!(!admits(&gate, "javascript without a colon"));
    }

    #[test]
    fn regex_gates_follow_the_syntax() {
        let shellshock = Gate::of_regex(r"^\s*\(\s*\)\s*\{");
        assert!(admits(&shellshock, "() { :; }; echo"));
        assert!(!admits(&shellshock, "plain prose (with brackets)"));
        let either = Gate::of_regex(r"(?i)rO0AB|aced0005");
        assert!(admits(&either, "xAcEd0005"));
        assert!(admits(&either, "ro0ab"));
        assert!(!admits(&either, "nothing here"));
        assert!(Gate::of_regex(r"a*").is_always());
        assert!(Gate::of_regex(r"(unclosed").is_always());
    }

    #[test]
    fn non_ascii_classes_admit_any_high_byte() {
        let gate = Gate::of_regex(r"(?u:[éè])x");
        assert!(admits(&gate, "caf\u{e9}x"));
        assert!(admits(&gate, "\u{ff41}x"));
        assert!(!admits(&gate, "plain x"));
    }

    #[test]
    fn byte_classes_admit_the_lone_high_bytes_they_match() {
        let gate = Gate::of_regex(r"<[^>a-z]");
        let regex = regex::bytes::RegexBuilder::new(r"<[^>a-z]")
            .unicode(false)
            .build()
            .expect("compiles");
        for byte in 0x80..=0xffu8 {
            let value = [b'<', byte];
            assert!(regex.is_match(&value));
            assert!(gate.admits(of(&value)), "{byte:#x}");
        }
    }

    #[test]
    fn wide_alternations_are_weakened_not_dropped() {
        let words: Vec<String> = (b'a'..=b'z')
            .filter(|&c| c != b'q')
            .flat_map(|c| ["q!", "q#", "q%"].map(|tail| format!("{}{tail}", c as char)))
            .collect();
        assert!(words.len() > GATE_MAX);
        let gate = Gate::of_regex(&words.join("|"));
        assert!(admits(&gate, "aq!"));
        assert!(admits(&gate, "zq%"));
        assert!(admits(&gate, "q"), "weakened to what they share");
        assert!(!admits(&gate, "nothing"));
    }

    #[test]
    fn alternations_up_to_the_limit_stay_exact() {
        // As many literals as the XSS sink rule, none needing what another needs.
        let words: Vec<String> = (b'a'..=b'z')
            .filter(|&c| c != b'q')
            .flat_map(|c| ["q!", "q#"].map(|tail| format!("{}{tail}", c as char)))
            .take(28)
            .collect();
        let gate = Gate::any_of(words.iter().map(|w| of_literal(w.as_bytes())));
        for word in &words {
            assert!(admits(&gate, word), "{word}");
        }
        assert!(!admits(&gate, "q! q#"));
        assert!(!admits(&gate, "the alphabet without marks: bcdfgjkvxyz"));
    }
}
