//! Transformations applied to a value before an operator sees it.
//!
//! Each transformation writes into a caller-owned buffer so the engine can reuse two
//! scratch buffers per request instead of allocating per rule. A transformation that
//! would not change its input reports so, letting the engine keep borrowing the original.

use serde::Deserialize;

/// One step of a transformation chain, named in rule files in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// `%xx` and `%uXXXX` decoding (invalid escapes are kept as they are).
    UrlDecode,
    /// `&lt;`, `&#60;`, `&#x3c;` and the common named entities; the `;` is optional.
    HtmlEntityDecode,
    /// JavaScript escapes: `\xHH`, `\uHHHH`, `\n`-style and `\<char>`.
    JsDecode,
    /// CSS escapes: `\` followed by 1-6 hex digits (and an optional space), or `\<char>`.
    CssDecode,
    /// ASCII lowercase.
    Lowercase,
    /// Backslashes to slashes, collapse `//`, resolve `./` and `../` textually (keeping a
    /// leading `../` so traversal above the root remains visible).
    NormalizePath,
    /// Drop NUL bytes.
    RemoveNulls,
    /// Runs of whitespace (including NUL-free control whitespace) become one space.
    CompressWhitespace,
    /// Drop all whitespace.
    RemoveWhitespace,
    /// Decode standard or URL-safe base64; on invalid input the value is left unchanged.
    Base64Decode,
    /// Decode a value that is plausibly base64-encoded text, once; every other value
    /// becomes empty, so the steps and operator after it judge only hidden text.
    Base64Text,
    /// Remove SQL comments: `/* ... */` (also unterminated), and `--` or `#` to end of line.
    RemoveSqlComments,
    /// Fold Unicode look-alikes used for evasion: full-width ASCII (U+FF01..U+FF5E) and
    /// overlong two-byte UTF-8 forms of ASCII (`C0 AE` for `.`).
    FoldUnicode,
    /// Remove what bash removes, or expands to nothing, inside a word: `c'a't`, `w"h"o`,
    /// `""`, `$@`, `c\at`, `uname$u` (see `shell_evasion`). A value without any becomes
    /// empty: the rules after this step judge only what it revealed, never the value the
    /// rules without it already judge.
    RemoveShellEvasions,
}

/// Byte features of a value (derived once per value from its byte classes, see
/// `classes::features`): a transformation can only change a value holding one of its
/// trigger features, so a chain none of whose triggers occur is known to leave the value
/// as it is without running it. The table says which bytes carry which feature.
pub(crate) mod feature {
    pub const PERCENT: u16 = 1;
    pub const AMP: u16 = 1 << 1;
    pub const BACKSLASH: u16 = 1 << 2;
    pub const UPPER: u16 = 1 << 3;
    pub const PATH: u16 = 1 << 4;
    pub const NUL: u16 = 1 << 5;
    pub const SPACE: u16 = 1 << 6;
    pub const SQL_COMMENT: u16 = 1 << 7;
    pub const HIGH: u16 = 1 << 8;
    /// Set on every value: for transformations with no cheap trigger (base64).
    pub const ALWAYS: u16 = 1 << 9;
    /// Whitespace that compressing would change: a run, or whitespace other than a
    /// space. Set with `SPACE` from the byte classes; `refine` clears it when the order
    /// of the bytes rules it out.
    pub const SPACE_RUN: u16 = 1 << 10;
    /// A byte that starts a shell evasion (a quote, `` ` ``, `$`, `\\`). `refine` clears
    /// it unless the value holds one (`shell_evasion`): an apostrophe in prose is none.
    pub const SHELL: u16 = 1 << 11;
    /// The features `refine` may clear.
    pub const REFINABLE: u16 = SPACE_RUN | SQL_COMMENT | SHELL;

    const fn table() -> [u16; 256] {
        let mut t = [0u16; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            let mut f = 0;
            if c == b'%' {
                f |= PERCENT;
            }
            if c == b'&' {
                f |= AMP;
            }
            if c == b'\\' {
                f |= BACKSLASH | PATH;
            }
            if matches!(c, b'\'' | b'"' | b'`' | b'$' | b'\\') {
                f |= SHELL;
            }
            if c.is_ascii_uppercase() {
                f |= UPPER;
            }
            if c == b'/' {
                f |= PATH;
            }
            if c == b'/' || c == b'-' || c == b'#' {
                f |= SQL_COMMENT;
            }
            if c == 0 {
                f |= NUL;
            }
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xa0) {
                f |= SPACE | SPACE_RUN;
            }
            if matches!(c, 0xC0 | 0xC1 | 0xE2 | 0xE3 | 0xEF) {
                f |= HIGH;
            }
            t[b] = f;
            b += 1;
        }
        t
    }

    static TABLE: [u16; 256] = table();

    /// Whether byte `b` carries feature `f`.
    pub fn has(b: u8, f: u16) -> bool {
        TABLE[usize::from(b)] & f != 0
    }
}

impl Transform {
    /// The feature whose absence proves this transformation leaves a value unchanged
    /// (or, if it `empties_unchanged`, empties it).
    pub(crate) fn trigger(self) -> u16 {
        use feature::*;
        match self {
            Transform::UrlDecode => PERCENT,
            Transform::HtmlEntityDecode => AMP,
            Transform::JsDecode | Transform::CssDecode => BACKSLASH,
            Transform::Lowercase => UPPER,
            Transform::NormalizePath => PATH,
            Transform::RemoveNulls => NUL,
            Transform::CompressWhitespace => SPACE_RUN,
            Transform::RemoveWhitespace => SPACE,
            Transform::Base64Decode | Transform::Base64Text => ALWAYS,
            Transform::RemoveSqlComments => SQL_COMMENT,
            Transform::FoldUnicode => HIGH,
            Transform::RemoveShellEvasions => SHELL,
        }
    }

    /// Whether the transformation empties every value it would otherwise leave unchanged,
    /// so that a chain holding it, none of whose triggers occur, leaves nothing to judge.
    /// (`Base64Text` empties values too, but its trigger is on every value.)
    pub(crate) fn empties_unchanged(self) -> bool {
        self == Transform::RemoveShellEvasions
    }

    /// Applies the transformation to `input`, writing into `out` (cleared first).
    /// Returns `false` when the output would equal the input; `out` is then unspecified.
    pub fn apply(self, input: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        match self {
            Transform::UrlDecode => {
                if memchr::memchr(b'%', input).is_none() {
                    return false;
                }
                url_decode(input, out);
            }
            Transform::HtmlEntityDecode => {
                if memchr::memchr(b'&', input).is_none() {
                    return false;
                }
                html_decode(input, out);
            }
            Transform::JsDecode => {
                if memchr::memchr(b'\\', input).is_none() {
                    return false;
                }
                js_decode(input, out);
            }
            Transform::CssDecode => {
                if memchr::memchr(b'\\', input).is_none() {
                    return false;
                }
                css_decode(input, out);
            }
            Transform::Lowercase => {
                if !input.iter().any(u8::is_ascii_uppercase) {
                    return false;
                }
                out.extend(input.iter().map(u8::to_ascii_lowercase));
            }
            Transform::NormalizePath => {
                // Without a separator there is one segment, kept as it is (a lone `.` too).
                if !input.iter().any(|&b| b == b'\\' || b == b'/') {
                    return false;
                }
                normalize_path(input, out);
            }
            Transform::RemoveNulls => {
                if memchr::memchr(0, input).is_none() {
                    return false;
                }
                out.extend(input.iter().copied().filter(|&b| b != 0));
            }
            Transform::CompressWhitespace => {
                let mut previous_space = false;
                let compressible = input.iter().any(|&b| {
                    let space = is_space(b);
                    let run = space && (previous_space || b != b' ');
                    previous_space = space;
                    run
                });
                if !compressible {
                    return false;
                }
                let mut in_space = false;
                for &b in input {
                    if is_space(b) {
                        if !in_space {
                            out.push(b' ');
                        }
                        in_space = true;
                    } else {
                        out.push(b);
                        in_space = false;
                    }
                }
            }
            Transform::RemoveWhitespace => {
                if !input.iter().any(|&b| is_space(b)) {
                    return false;
                }
                out.extend(input.iter().copied().filter(|&b| !is_space(b)));
            }
            Transform::Base64Decode => return base64_decode(input, out),
            Transform::Base64Text => return base64_text(input, out),
            Transform::RemoveSqlComments => {
                // Only `/*`, `--` and `#` start a comment; a lone `-` or `/` (dates, SKUs,
                // URLs) is common and changes nothing. One pass: values are short, and three
                // searches cost more in set-up than they save.
                let mut previous = 0u8;
                let opens_comment = input.iter().any(|&b| {
                    let opens = b == b'#'
                        || (b == b'-' && previous == b'-')
                        || (b == b'*' && previous == b'/');
                    previous = b;
                    opens
                });
                if !opens_comment {
                    return false;
                }
                remove_sql_comments(input, out);
            }
            Transform::FoldUnicode => {
                if !input
                    .iter()
                    .any(|&b| matches!(b, 0xC0 | 0xC1 | 0xE2 | 0xE3 | 0xEF))
                {
                    return false;
                }
                fold_unicode(input, out);
            }
            Transform::RemoveShellEvasions => {
                let needles = Needles::of(crate::classes::of(input));
                match shell_evasion(input, 0, &needles) {
                    Some(first) => remove_shell_evasions(input, first, &needles, out),
                    None => return !input.is_empty(),
                }
                // Every evasion removes at least one byte.
                return true;
            }
        }
        out.as_slice() != input
    }
}

/// Clears the refinable features of `features` (those of `value`'s byte classes,
/// `classes`) that the order of `value`'s bytes rules out: a lone `-`, `/` or `*` (dates,
/// SKUs, URLs) opens no SQL comment, single spaces between words compress to themselves,
/// and an apostrophe or a `$` in prose (`don't`, `we're`, `$5`) starts no shell evasion.
/// Prose and identifiers then skip the chains only those transformations would run,
/// instead of building nothing in them.
pub(crate) fn refine(features: u16, classes: crate::classes::Classes, value: &[u8]) -> u16 {
    // A walk of `REFINE_STEPS`: each step's entry holds the signals it completes in its
    // low bits and the row of the next state in its high byte.
    let mut seen = 0u16;
    let mut step = 0u16;
    for &b in value {
        step = REFINE_STEPS[usize::from(step & ROW) | usize::from(b)];
        seen |= step;
    }
    let mut refined = features;
    if seen & SQL_SIGNAL == 0 {
        refined &= !feature::SQL_COMMENT;
    }
    if seen & SPACE_SIGNAL == 0 {
        refined &= !feature::SPACE_RUN;
    }
    // The walk only says an evasion may be there; the few values it cannot rule out are
    // looked at closely.
    if features & feature::SHELL != 0
        && (seen & SHELL_SIGNAL == 0 || !holds_shell_evasion(value, classes))
    {
        refined &= !feature::SHELL;
    }
    refined
}

/// Out of line: `refine` runs on many values, and few hold what this looks at.
#[inline(never)]
fn holds_shell_evasion(value: &[u8], classes: crate::classes::Classes) -> bool {
    shell_evasion(value, 0, &Needles::of(classes)).is_some()
}

/// A space after whitespace, or whitespace other than a space (compressing changes it).
const SPACE_SIGNAL: u16 = 1;
/// `--`, `/*` or `#` (a SQL comment opens).
const SQL_SIGNAL: u16 = 1 << 1;
/// What every shell evasion (`shell_evasion`) holds: a second quote of one kind within a
/// word (an empty pair or a quoted part), two backticks, `$` before `@`, `*`, `!` or
/// `(`, a letter or digit before `$`, a word byte after `}`, `\` before a letter.
const SHELL_SIGNAL: u16 = 1 << 2;
/// The bits of a step that hold the next state's row (state * 256): masking with them
/// keeps every index within the table, so the walk needs no bounds check.
const ROW: u16 = 0x3f00;

/// What the previous byte was, as far as the signals care.
const AFTER_OTHER: usize = 0;
const AFTER_SPACE: usize = 1;
const AFTER_DASH: usize = 2;
const AFTER_SLASH: usize = 3;
const AFTER_BACKTICK: usize = 4;
const AFTER_DOLLAR: usize = 5;
const AFTER_ALNUM: usize = 6;
const AFTER_BRACE: usize = 7;
const AFTER_BACKSLASH: usize = 8;
const AFTER_KINDS: usize = 9;
/// A state is the previous byte's kind and two flags: an apostrophe, a double quote has
/// been seen in the current word (since the last whitespace).
const IN_WORD_APOSTROPHE: usize = AFTER_KINDS;
const IN_WORD_QUOTE: usize = 2 * AFTER_KINDS;
const STATES: usize = 4 * AFTER_KINDS;

/// The refinement walk's steps, one row of 256 bytes per state (see `refine`), as many
/// rows as `ROW` can name (the rows past `STATES` are never reached).
static REFINE_STEPS: [u16; ROW as usize + 256] = {
    let mut t = [0u16; ROW as usize + 256];
    let mut state = 0;
    while state < STATES {
        let after = state % AFTER_KINDS;
        let apostrophe = state / AFTER_KINDS % 2 == 1;
        let quote = state / (2 * AFTER_KINDS) == 1;
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            let space = matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0xa0);
            let alnum = c.is_ascii_alphanumeric();
            let mut signals = 0;
            if (space && c != b' ') || (c == b' ' && after == AFTER_SPACE) {
                signals |= SPACE_SIGNAL;
            }
            if c == b'#'
                || (c == b'-' && after == AFTER_DASH)
                || (c == b'*' && after == AFTER_SLASH)
            {
                signals |= SQL_SIGNAL;
            }
            if (c == b'\'' && apostrophe)
                || (c == b'"' && quote)
                || (c == b'`' && after == AFTER_BACKTICK)
                || (matches!(c, b'@' | b'*' | b'!' | b'(') && after == AFTER_DOLLAR)
                || (c == b'$' && after == AFTER_ALNUM)
                || ((alnum || c == b'_') && after == AFTER_BRACE)
                || (c.is_ascii_alphabetic() && after == AFTER_BACKSLASH)
            {
                signals |= SHELL_SIGNAL;
            }
            let next_after = match c {
                b'-' => AFTER_DASH,
                b'/' => AFTER_SLASH,
                b'`' => AFTER_BACKTICK,
                b'$' => AFTER_DOLLAR,
                b'}' => AFTER_BRACE,
                b'\\' => AFTER_BACKSLASH,
                _ if space => AFTER_SPACE,
                _ if alnum => AFTER_ALNUM,
                _ => AFTER_OTHER,
            };
            let next_apostrophe = !space && (apostrophe || c == b'\'');
            let next_quote = !space && (quote || c == b'"');
            let next = next_after
                + if next_apostrophe {
                    IN_WORD_APOSTROPHE
                } else {
                    0
                }
                + if next_quote { IN_WORD_QUOTE } else { 0 };
            t[state * 256 + b] = signals | (next as u16) << 8;
            b += 1;
        }
        state += 1;
    }
    t
};

/// A shell evasion in a value: what bash removes, or expands to nothing, inside a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evasion {
    /// Bytes `start..end` are dropped.
    Drop(usize, usize),
    /// Bytes `start..end` (`$IFS` glued to a word) become a space: bash splits there.
    Space(usize, usize),
    /// The quotes at `open` and `close` around a part of a word are dropped, the bytes
    /// between them kept as they are.
    Unquote(usize, usize),
}

/// Longest quoted part of a word that `shell_evasion` unquotes: bounds the look for the
/// closing quote, so a long run of apostrophes costs a bounded look per quote.
const QUOTED_PART_MAX: usize = 64;

/// The first shell evasion at or after `from`:
/// - an empty quote pair, `''`, `""` or two backticks (exactly two: a Python `'''` or a
///   Markdown fence is no empty pair);
/// - the quotes of a part of a word, `c'a't`, `w"h"o"am"i`, `/e't'c/`: a quote, up to
///   `QUOTED_PART_MAX` bytes without whitespace or quotes, the same quote, glued to a
///   letter, digit, `_` or the other quote on either side (or a `/` before it); an apostrophe in
///   prose (`don't`, `O'Neil`) has no closing quote in its word;
/// - `$@`, `$*`, `$!` (empty without arguments or background jobs) and an empty `$()`;
/// - a variable glued to the end of a word part, `uname$u`, `/etc$u/`, `c$1at`, or a
///   braced one glued on either side, `${x}id`: unset, it expands to nothing (`$IFS`
///   expands to a separator and becomes a space);
/// - `\` before a letter.
///
/// A variable starting a word (`$u wget`, rule 3229) and a whole quoted word (`'curl'`)
/// are left alone: text has those.
fn shell_evasion(input: &[u8], from: usize, needles: &Needles) -> Option<Evasion> {
    let mut at = from.min(input.len());
    if needles.len == 1 {
        // Prose with apostrophes: one searcher walks every occurrence.
        let start = at;
        for offset in memchr::memchr_iter(needles.bytes[0], &input[start..]) {
            if start + offset < at {
                continue;
            }
            match evasion_at(input, start + offset) {
                Ok(evasion) => return Some(evasion),
                Err(resume) => at = resume,
            }
        }
        return None;
    }
    while let Some(offset) = needles.find(&input[at..]) {
        match evasion_at(input, at + offset) {
            Ok(evasion) => return Some(evasion),
            Err(resume) => at = resume,
        }
    }
    None
}

/// The bytes that start a shell evasion (a quote, `` ` ``, `$`, `\`) that a value holds,
/// found by one search: prose holds an apostrophe and nothing else, and a search for one
/// byte costs a fraction of one for five.
struct Needles {
    bytes: [u8; 5],
    len: usize,
}

impl Needles {
    fn of(classes: crate::classes::Classes) -> Needles {
        let mut needles = Needles {
            bytes: [0; 5],
            len: 0,
        };
        for b in [b'\'', b'"', b'$', b'`', b'\\'] {
            if classes & crate::classes::of_byte(b) != 0 {
                needles.bytes[needles.len] = b;
                needles.len += 1;
            }
        }
        needles
    }

    fn find(&self, haystack: &[u8]) -> Option<usize> {
        let [a, b, c, d, e] = self.bytes;
        match self.len {
            0 => None,
            1 => memchr::memchr(a, haystack),
            2 => memchr::memchr2(a, b, haystack),
            3 => memchr::memchr3(a, b, c, haystack),
            len => {
                let first = memchr::memchr3(a, b, c, haystack);
                let before = &haystack[..first.unwrap_or(haystack.len())];
                let rest = if len == 4 {
                    memchr::memchr(d, before)
                } else {
                    memchr::memchr2(d, e, before)
                };
                rest.or(first)
            }
        }
    }
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn is_quote(c: u8) -> bool {
    c == b'\'' || c == b'"'
}

/// The evasion starting at `input[p]`, a quote, backtick, `$` or `\`, or else where to
/// look next: past the closing quote of a quoted part that is no evasion, since that
/// quote opens nothing (`{"a":"b"}`).
fn evasion_at(input: &[u8], p: usize) -> Result<Evasion, usize> {
    let at = |i: usize| input.get(i).copied();
    let before = p.checked_sub(1).map(|i| input[i]);
    let none = Err(p + 1);
    let found = |yes: bool, evasion: Evasion| if yes { Ok(evasion) } else { none };
    let b = input[p];
    match b {
        b'\'' | b'"' | b'`' => {
            if at(p + 1) == Some(b) {
                let alone = before != Some(b) && at(p + 2) != Some(b);
                return found(alone, Evasion::Drop(p, p + 2));
            }
            if b == b'`' {
                return none;
            }
            let Some(len) = input[p + 1..]
                .iter()
                .take(QUOTED_PART_MAX + 1)
                .position(|&c| is_quote(c) || is_space(c))
            else {
                return none;
            };
            let close = p + 1 + len;
            if input[close] != b {
                return none;
            }
            // The other quote glues (`"a"'t'`); the same one makes a run (`'''doc'''`).
            let other = |c: u8| is_quote(c) && c != b;
            let left = before.is_some_and(|c| is_word_byte(c) || other(c) || c == b'/');
            let right = at(close + 1).is_some_and(|c| is_word_byte(c) || other(c));
            if left || right {
                Ok(Evasion::Unquote(p, close))
            } else {
                Err(close + 1)
            }
        }
        b'$' => {
            let glued_left = before.is_some_and(|c| c.is_ascii_alphanumeric());
            // The bytes of a variable name starting at `from`.
            let name = |from: usize| {
                let rest = input.get(from..).unwrap_or_default();
                match rest.first() {
                    Some(&c) if c.is_ascii_alphabetic() || c == b'_' => {
                        let len = rest.iter().position(|&c| !is_word_byte(c));
                        &rest[..len.unwrap_or(rest.len())]
                    }
                    _ => &[],
                }
            };
            let expansion = |name: &[u8], end: usize| {
                if name == b"IFS" {
                    Evasion::Space(p, end)
                } else {
                    Evasion::Drop(p, end)
                }
            };
            match at(p + 1) {
                Some(b'@' | b'*' | b'!') => Ok(Evasion::Drop(p, p + 2)),
                Some(b'(') => found(at(p + 2) == Some(b')'), Evasion::Drop(p, p + 3)),
                Some(b'1'..=b'9') => found(glued_left, Evasion::Drop(p, p + 2)),
                Some(b'{') => {
                    let name = name(p + 2);
                    let end = p + 2 + name.len() + 1;
                    let closed = !name.is_empty() && at(end - 1) == Some(b'}');
                    let glued = glued_left || at(end).is_some_and(is_word_byte);
                    found(closed && glued, expansion(name, end))
                }
                _ => {
                    let name = name(p + 1);
                    let end = p + 1 + name.len();
                    found(!name.is_empty() && glued_left, expansion(name, end))
                }
            }
        }
        b'\\' => found(
            at(p + 1).is_some_and(|c| c.is_ascii_alphabetic()),
            Evasion::Drop(p, p + 1),
        ),
        _ => none,
    }
}

/// Writes `input` without its shell evasions, the first of which is `first`.
fn remove_shell_evasions(input: &[u8], first: Evasion, needles: &Needles, out: &mut Vec<u8>) {
    let mut copied = 0;
    let mut next = Some(first);
    while let Some(evasion) = next {
        copied = match evasion {
            Evasion::Drop(start, end) => {
                out.extend_from_slice(&input[copied..start]);
                end
            }
            Evasion::Space(start, end) => {
                out.extend_from_slice(&input[copied..start]);
                out.push(b' ');
                end
            }
            Evasion::Unquote(open, close) => {
                out.extend_from_slice(&input[copied..open]);
                out.extend_from_slice(&input[open + 1..close]);
                close + 1
            }
        };
        next = shell_evasion(input, copied, needles);
    }
    out.extend_from_slice(&input[copied..]);
}

/// Space, tab, CR, LF, VT, FF and NBSP (one table lookup: it runs per byte).
fn is_space(b: u8) -> bool {
    feature::has(b, feature::SPACE)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn parse_hex(bytes: &[u8]) -> Option<u32> {
    bytes
        .iter()
        .try_fold(0u32, |acc, &b| hex(b).map(|h| acc * 16 + u32::from(h)))
}

fn push_char(out: &mut Vec<u8>, cp: u32) {
    // Code points that are not scalar values (lone surrogates) become U+FFFD, as a
    // browser would render them.
    let c = char::from_u32(cp).unwrap_or('\u{fffd}');
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// `%u` escapes decode to the code point's low byte when it is ASCII-range full-width
/// (IIS behaviour) and to UTF-8 otherwise.
pub(crate) fn url_decode(input: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            if let (Some(&u), true) = (input.get(i + 1), i + 6 <= input.len()) {
                if u == b'u' || u == b'U' {
                    if let Some(cp) = parse_hex(&input[i + 2..i + 6]) {
                        if (0xff01..=0xff5e).contains(&cp) {
                            out.push((cp - 0xff01 + 0x21) as u8);
                        } else if cp < 0x80 {
                            out.push(cp as u8);
                        } else {
                            push_char(out, cp);
                        }
                        i += 6;
                        continue;
                    }
                }
            }
            if i + 2 < input.len() {
                if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(b);
        i += 1;
    }
}

const NAMED_ENTITIES: &[(&[u8], u8)] = &[
    (b"lt", b'<'),
    (b"gt", b'>'),
    (b"amp", b'&'),
    (b"quot", b'"'),
    (b"apos", b'\''),
    (b"nbsp", b' '),
    (b"colon", b':'),
    (b"lpar", b'('),
    (b"rpar", b')'),
    (b"sol", b'/'),
    (b"bsol", b'\\'),
    (b"tab", b'\t'),
    (b"newline", b'\n'),
    (b"num", b'#'),
    (b"equals", b'='),
    (b"grave", b'`'),
    (b"semi", b';'),
    (b"comma", b','),
    (b"period", b'.'),
    (b"excl", b'!'),
];

fn html_decode(input: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'&' {
            if let Some(consumed) = html_entity(&input[i + 1..], out) {
                i += 1 + consumed;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
}

/// Decodes one entity body (after `&`) into `out`; returns bytes consumed after `&`.
fn html_entity(rest: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    if rest.first() == Some(&b'#') {
        let (radix_hex, start) = match rest.get(1) {
            Some(b'x') | Some(b'X') => (true, 2),
            _ => (false, 1),
        };
        let mut end = start;
        while end < rest.len() && end - start < 8 {
            let ok = if radix_hex {
                rest[end].is_ascii_hexdigit()
            } else {
                rest[end].is_ascii_digit()
            };
            if !ok {
                break;
            }
            end += 1;
        }
        if end == start {
            return None;
        }
        let digits = &rest[start..end];
        let cp = if radix_hex {
            parse_hex(digits)?
        } else {
            digits.iter().try_fold(0u32, |a, &d| {
                a.checked_mul(10)?.checked_add(u32::from(d - b'0'))
            })?
        };
        let consumed = if rest.get(end) == Some(&b';') {
            end + 1
        } else {
            end
        };
        push_char(out, cp);
        return Some(consumed);
    }
    let end = rest
        .iter()
        .take(10)
        .position(|b| !b.is_ascii_alphanumeric())
        .unwrap_or(rest.len().min(10));
    let name = &rest[..end];
    let (_, c) = NAMED_ENTITIES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
    out.push(*c);
    let consumed = if rest.get(end) == Some(&b';') {
        end + 1
    } else {
        end
    };
    Some(consumed)
}

fn js_decode(input: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'\\' && i + 1 < input.len() {
            let n = input[i + 1];
            match n {
                b'x' | b'X' if i + 4 <= input.len() => {
                    if let Some(v) = parse_hex(&input[i + 2..i + 4]) {
                        out.push(v as u8);
                        i += 4;
                        continue;
                    }
                }
                b'u' | b'U' if i + 6 <= input.len() => {
                    if let Some(cp) = parse_hex(&input[i + 2..i + 6]) {
                        if (0xff01..=0xff5e).contains(&cp) {
                            out.push((cp - 0xff01 + 0x21) as u8);
                        } else {
                            push_char(out, cp);
                        }
                        i += 6;
                        continue;
                    }
                }
                _ => {}
            }
            let c = match n {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'f' => 0x0c,
                b'v' => 0x0b,
                b'b' => 0x08,
                b'0' => 0,
                other => other,
            };
            out.push(c);
            i += 2;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
}

fn css_decode(input: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'\\' && i + 1 < input.len() {
            let mut end = i + 1;
            while end < input.len() && end - (i + 1) < 6 && input[end].is_ascii_hexdigit() {
                end += 1;
            }
            if end > i + 1 {
                let cp = parse_hex(&input[i + 1..end]).unwrap_or(0xfffd);
                push_char(out, cp);
                i = end;
                if input.get(i) == Some(&b' ') {
                    i += 1;
                }
                continue;
            }
            if input[i + 1] == b'\n' {
                i += 2;
                continue;
            }
            out.push(input[i + 1]);
            i += 2;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
}

fn normalize_path(input: &[u8], out: &mut Vec<u8>) {
    // Work segment by segment on a slash-normalised view; `..` pops a segment unless
    // there is none left, in which case it is kept (an attempt to climb above the root).
    let absolute = matches!(input.first(), Some(b'/') | Some(b'\\'));
    let trailing = matches!(input.last(), Some(b'/') | Some(b'\\'));
    let mut segments: Vec<&[u8]> = Vec::new();
    for seg in input.split(|&b| b == b'/' || b == b'\\') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if matches!(segments.last(), Some(s) if *s != b"..") {
                    segments.pop();
                } else {
                    segments.push(seg);
                }
            }
            _ => segments.push(seg),
        }
    }
    if absolute {
        out.push(b'/');
    }
    for (n, seg) in segments.iter().enumerate() {
        if n > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(seg);
    }
    if trailing && !segments.is_empty() {
        out.push(b'/');
    }
}

fn base64_decode(input: &[u8], out: &mut Vec<u8>) -> bool {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    const LENIENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STD_LENIENT: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
    const URL_LENIENT: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);
    let trimmed = input.trim_ascii();
    if trimmed.len() < 4 {
        return false;
    }
    // Either alphabet's decoder refuses any byte outside it, so one look at the bytes
    // says which decoders can succeed: prose (a space) and most identifiers need neither,
    // and this runs on every argument at paranoia 2.
    let (mut standard, mut url_safe) = (true, true);
    for &b in trimmed {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'=' => {}
            b'+' | b'/' => url_safe = false,
            b'-' | b'_' => standard = false,
            _ => return false,
        }
    }
    if standard && STD_LENIENT.decode_vec(trimmed, out).is_ok() {
        return true;
    }
    out.clear();
    if url_safe && URL_LENIENT.decode_vec(trimmed, out).is_ok() {
        return true;
    }
    out.clear();
    false
}

/// Shortest value `Base64Text` decodes: 12 characters carry 9 bytes, enough for
/// `<script>` or `' or 1=1`, while shorter words that happen to use only base64 letters
/// ("admin", "true") are not worth decoding.
const BASE64_TEXT_MIN: usize = 12;

/// Rules after `Base64Text` judge only text an attacker hid in base64: the value itself
/// was judged by the rules without this step. A value qualifies when, trimmed, it is at
/// least `BASE64_TEXT_MIN` characters of a base64 alphabet (padding optional) and decodes
/// to UTF-8 text without control characters other than tab and line breaks. Binary blobs
/// (images, keys, serialized objects, which other rules judge by their markers), JWTs
/// (dots), prose (spaces) and words that decode to noise all become empty, so they are
/// neither misjudged nor scanned twice. Returns `false` only for an empty input.
fn base64_text(input: &[u8], out: &mut Vec<u8>) -> bool {
    let trimmed = input.trim_ascii();
    let alphabet =
        |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=');
    if trimmed.len() >= BASE64_TEXT_MIN
        && trimmed.iter().all(alphabet)
        && base64_decode(trimmed, out)
        && is_text(out)
    {
        return true;
    }
    out.clear();
    !input.is_empty()
}

/// UTF-8 text whose only control characters are tab, line feed and carriage return.
fn is_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| {
        !s.chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    })
}

fn remove_sql_comments(input: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'/' && input.get(i + 1) == Some(&b'*') {
            match memchr::memmem::find(&input[i + 2..], b"*/") {
                Some(p) => i += 2 + p + 2,
                None => i = input.len(),
            }
            continue;
        }
        if (b == b'-' && input.get(i + 1) == Some(&b'-')) || b == b'#' {
            match memchr::memchr(b'\n', &input[i..]) {
                Some(p) => i += p,
                None => i = input.len(),
            }
            continue;
        }
        out.push(b);
        i += 1;
    }
}

/// Folds the forms that decoders and URL parsers read as ASCII: overlong two-byte
/// encodings, full-width forms (U+FF01..U+FF5E), and what UTS #46 host mapping turns into
/// host characters (ideographic full stops, circled digits and letters), so that
/// `169。254。169。254` or `①②⑦.⓪.⓪.①` cannot hide an address.
fn fold_unicode(input: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if (b == 0xC0 || b == 0xC1) && i + 1 < input.len() && input[i + 1] & 0xC0 == 0x80 {
            out.push(((b & 0x01) << 6) | (input[i + 1] & 0x3F));
            i += 2;
            continue;
        }
        if matches!(b, 0xE2 | 0xE3 | 0xEF)
            && i + 2 < input.len()
            && input[i + 1] & 0xC0 == 0x80
            && input[i + 2] & 0xC0 == 0x80
        {
            let cp = (u32::from(b & 0x0F) << 12)
                | (u32::from(input[i + 1] & 0x3F) << 6)
                | u32::from(input[i + 2] & 0x3F);
            let folded = match cp {
                0xff01..=0xff5e => Some(cp - 0xff01 + 0x21),
                0x3002 | 0xff61 => Some(u32::from(b'.')),
                0x24b6..=0x24cf => Some(cp - 0x24b6 + u32::from(b'a')),
                0x24d0..=0x24e9 => Some(cp - 0x24d0 + u32::from(b'a')),
                0x24ea => Some(u32::from(b'0')),
                _ => None,
            };
            if let Some(ascii) = folded {
                out.push(ascii as u8);
                i += 3;
                continue;
            }
            if let 0x2460..=0x2473 = cp {
                // Circled one to twenty.
                let n = cp - 0x2460 + 1;
                if n >= 10 {
                    out.push(b'0' + (n / 10) as u8);
                }
                out.push(b'0' + (n % 10) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::Transform::{self, *};

    fn run(t: Transform, input: &str) -> String {
        let mut out = Vec::new();
        if t.apply(input.as_bytes(), &mut out) {
            String::from_utf8_lossy(&out).into_owned()
        } else {
            input.to_string()
        }
    }

    /// Calls `check` with every string over `alphabet` of each length in `lengths`.
    fn every_string(
        alphabet: &[u8],
        lengths: std::ops::RangeInclusive<u32>,
        mut check: impl FnMut(&[u8]),
    ) {
        let mut value = Vec::new();
        for len in lengths {
            for mut n in 0..alphabet.len().pow(len) {
                value.clear();
                for _ in 0..len {
                    value.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                check(&value);
            }
        }
    }

    #[test]
    fn base64_decode_agrees_with_trying_both_alphabets() {
        use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
        use base64::Engine as _;
        let lenient =
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
        let engines = [
            GeneralPurpose::new(&base64::alphabet::STANDARD, lenient),
            GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient),
        ];
        let alphabet = [b'Q', b'z', b'0', b'+', b'/', b'-', b'_', b'=', b' ', b'.'];
        let mut out = Vec::new();
        let mut decoded = 0;
        every_string(&alphabet, 4..=6, |value| {
            let trimmed = value.trim_ascii();
            let expected = (trimmed.len() >= 4)
                .then(|| engines.iter().find_map(|e| e.decode(trimmed).ok()))
                .flatten();
            out.clear();
            let got = super::base64_decode(value, &mut out).then(|| out.clone());
            assert_eq!(got, expected, "{}", String::from_utf8_lossy(value));
            decoded += usize::from(got.is_some());
        });
        assert!(decoded > 1000, "only {decoded} inputs decoded");
    }

    fn refine_bytes(features: u16, value: &[u8]) -> u16 {
        super::refine(features, crate::classes::of(value), value)
    }

    #[test]
    fn refine_keeps_every_feature_a_transformation_needs() {
        use super::feature;
        // Every string of up to five bytes over the bytes that matter, and some others.
        let alphabet = [b' ', b'-', b'/', b'*', b'#', b'\t', b'\n', 0xa0, b'a', b'1'];
        let mut out = Vec::new();
        every_string(&alphabet, 0..=5, |value| {
            let refined = refine_bytes(feature::REFINABLE, value);
            if RemoveSqlComments.apply(value, &mut out) {
                assert!(refined & feature::SQL_COMMENT != 0, "{value:?}");
            }
            if CompressWhitespace.apply(value, &mut out) {
                assert!(refined & feature::SPACE_RUN != 0, "{value:?}");
            }
        });
        assert_eq!(
            refine_bytes(feature::REFINABLE, b"SKU-2024-0001 a/b * c"),
            0
        );
        assert_eq!(
            refine_bytes(feature::REFINABLE, b"1 -- x"),
            feature::SQL_COMMENT
        );
        assert_eq!(
            refine_bytes(feature::REFINABLE, b"a/*b"),
            feature::SQL_COMMENT
        );
        assert_eq!(
            refine_bytes(feature::REFINABLE, b"a  b"),
            feature::SPACE_RUN
        );
        assert_eq!(
            refine_bytes(feature::REFINABLE, b"a\tb"),
            feature::SPACE_RUN
        );
    }

    #[test]
    fn refine_keeps_the_shell_feature_of_every_evasion() {
        use super::feature;
        let alphabet = [
            b'\'', b'"', b'`', b'$', b'\\', b'@', b'*', b'(', b')', b'{', b'}', b'a', b'1', b' ',
        ];
        let mut out = Vec::new();
        every_string(&alphabet, 0..=5, |value| {
            RemoveShellEvasions.apply(value, &mut out);
            let refined = refine_bytes(feature::SHELL, value);
            if refined == 0 {
                assert!(out.is_empty(), "{value:?}");
            }
            let needles = super::Needles::of(crate::classes::of(value));
            let evasive = super::shell_evasion(value, 0, &needles).is_some();
            assert_eq!(refined != 0, evasive, "{value:?}");
            if evasive {
                assert!(out.len() < value.len(), "{value:?}");
            }
        });
    }

    #[test]
    fn shell_evasions_are_removed_inside_words_only() {
        for (evasive, plain) in [
            ("c'a't /etc/passwd", "cat /etc/passwd"),
            ("w\"h\"o\"am\"i", "whoami"),
            ("\"\"p\"\"y\"\"t\"\"h\"\"o\"\"n\"\"3 -c x", "python3 -c x"),
            ("ti''me sh", "time sh"),
            ("c$@at /e$*tc/pa$!sswd", "cat /etc/passwd"),
            ("pi``ng 127.0.0.1", "ping 127.0.0.1"),
            ("pi$()ng -c 1", "ping -c 1"),
            ("c\\at /et\\c/passwd", "cat /etc/passwd"),
            ("uname$u -a", "uname -a"),
            ("cat$u /etc$u/passwd", "cat /etc/passwd"),
            ("${x}id", "id"),
            ("sh$XX -c id", "sh -c id"),
            ("c$1at", "cat"),
            ("cat${IFS}/etc/passwd", "cat /etc/passwd"),
            ("cat$IFS/etc/passwd", "cat /etc/passwd"),
            ("/bin/ca't' /e't'*/pa'?s'wd", "/bin/cat /et*/pa?swd"),
            ("c\"a\"'t'", "cat"),
            // Two apostrophes in one word read as a quoted part: the chain runs, and its
            // rules judge the result.
            ("O'Neil's", "ONeils"),
        ] {
            assert_eq!(run(RemoveShellEvasions, evasive), plain, "{evasive}");
        }
        // Values without an evasion are left to the rules without this step.
        for prose in [
            "don't ring the bell; we're out, O'Neil and women's",
            "```bash\nmake\n```",
            "'''docstring'''",
            "say 'hello' and \"bye\"",
            "{\"a\":\"b\",\"c\":[\"d\"]}",
            "a=\"b\" c='d'",
            "$u wget x",
            "Price: $5, $HOME and ${name}",
            "$(document).ready()",
            "C:\\ / 100$ \\1",
        ] {
            assert_eq!(run(RemoveShellEvasions, prose), "", "{prose}");
        }
    }

    #[test]
    fn url_decode_handles_percent_u_and_invalid_escapes() {
        assert_eq!(run(UrlDecode, "%3Cscript%3E"), "<script>");
        assert_eq!(run(UrlDecode, "%u003c%uff1c"), "<<");
        assert_eq!(run(UrlDecode, "100%"), "100%");
        assert_eq!(run(UrlDecode, "%zz%4"), "%zz%4");
        assert_eq!(run(UrlDecode, "%252e"), "%2e");
    }

    #[test]
    fn html_and_js_and_css_decoding() {
        assert_eq!(run(HtmlEntityDecode, "&lt;a&#62;&#x3C&colon;"), "<a><:");
        assert_eq!(
            run(HtmlEntityDecode, "Tom & Jerry &unknown;"),
            "Tom & Jerry &unknown;"
        );
        assert_eq!(run(JsDecode, r"\x3cscript\u003e\'"), "<script>'");
        assert_eq!(run(CssDecode, r"\6a avascript"), "javascript");
    }

    #[test]
    fn path_normalisation_keeps_climbs_above_root() {
        assert_eq!(run(NormalizePath, "/a/./b/../c//d"), "/a/c/d");
        assert_eq!(run(NormalizePath, "..\\..\\etc/passwd"), "../../etc/passwd");
        assert_eq!(run(NormalizePath, "/a/../../etc/passwd"), "/../etc/passwd");
    }

    #[test]
    fn whitespace_nulls_comments_base64_unicode() {
        assert_eq!(run(CompressWhitespace, "a \t\n b"), "a b");
        assert_eq!(run(RemoveWhitespace, "a b\tc"), "abc");
        assert_eq!(run(RemoveNulls, "a\0b"), "ab");
        assert_eq!(
            run(RemoveSqlComments, "UN/**/ION SEL/*x*/ECT -- tail"),
            "UNION SELECT "
        );
        assert_eq!(run(Base64Decode, "PHNjcmlwdD4="), "<script>");
        assert_eq!(run(Base64Decode, "not base64!"), "not base64!");
        assert_eq!(run(Base64Text, "JyBvciAxPTEtLQ=="), "' or 1=1--");
        assert_eq!(
            run(Base64Text, " PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg "),
            "<script>alert(1)</script>"
        );
        assert_eq!(
            run(Base64Text, "Li4vLi4vZXRjL3Bhc3N3ZA"),
            "../../etc/passwd"
        );
        // Prose, short words, JWTs and binary blobs become empty.
        assert_eq!(run(Base64Text, "not base64 at all"), "");
        assert_eq!(run(Base64Text, "dGVzdA=="), "");
        assert_eq!(
            run(
                Base64Text,
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
            ),
            ""
        );
        assert_eq!(run(Base64Text, "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"), "");
        assert_eq!(run(Base64Text, "internationalization"), "");
        assert!(!Base64Text.apply(b"", &mut Vec::new()));
        let mut out = Vec::new();
        assert!(FoldUnicode.apply(b"\xc0\xae\xc0\xae/\xef\xbc\x9c", &mut out));
        assert_eq!(out, b"../<");
        assert_eq!(run(FoldUnicode, "169。254｡169．254"), "169.254.169.254");
        assert_eq!(run(FoldUnicode, "①⑥⑨.②⑤④.⑳.⓪"), "169.254.20.0");
        assert_eq!(run(FoldUnicode, "ⓛⓞⒸⒶⓁⓗⓞⓢⓣ"), "localhost");
        assert_eq!(
            run(FoldUnicode, "don’t — “quoted” €5"),
            "don’t — “quoted” €5"
        );
        assert_eq!(run(Lowercase, "SeLeCt"), "select");
    }

    #[test]
    fn transformations_never_change_values_without_their_trigger() {
        let samples = [
            "plain words here",
            "a%41b",
            "x&lt;y",
            "a\\x41",
            "MiXeD",
            "/a/../b",
            "a\0b",
            "a  b\tc",
            "UN/**/ION -- x #y",
            "\u{ff1c}\u{c0}",
            "3.14",
            "don't 'quote' O'Neil",
            "c'a't w\"h\"o ''x $@ c\\at uname$u",
            "",
        ];
        let all = [
            UrlDecode,
            HtmlEntityDecode,
            JsDecode,
            CssDecode,
            Lowercase,
            NormalizePath,
            RemoveNulls,
            CompressWhitespace,
            RemoveWhitespace,
            Base64Decode,
            Base64Text,
            RemoveSqlComments,
            FoldUnicode,
            RemoveShellEvasions,
        ];
        for s in samples {
            // The features the engine computes (from the value's byte classes).
            let feats = crate::classes::features(crate::classes::of(s.as_bytes()));
            for t in all {
                let mut out = Vec::new();
                if feats & t.trigger() == 0 {
                    let changed = t.apply(s.as_bytes(), &mut out);
                    if t.empties_unchanged() {
                        assert!(!changed || out.is_empty(), "{t:?} kept {s:?}");
                    } else {
                        assert!(!changed, "{t:?} changed {s:?}");
                    }
                }
            }
        }
    }
}
