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
    /// Every byte is of a base64 alphabet (letters, digits, `+/-_=`) or whitespace:
    /// without it, decoding base64 fails. Derived from the whole set of a value's byte
    /// classes (`classes::features`), not from any one byte.
    pub const BASE64: u16 = 1 << 9;
    /// Whitespace that compressing would change: a run, or whitespace other than a
    /// space. Set with `SPACE` from the byte classes; `refine` clears it when the order
    /// of the bytes rules it out.
    pub const SPACE_RUN: u16 = 1 << 10;
    /// The features `refine` may clear.
    pub const REFINABLE: u16 = SPACE_RUN | SQL_COMMENT | AMP;

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

    /// The features of each byte, for tables built from it at compile time.
    pub(crate) const BYTES: [u16; 256] = table();

    static TABLE: [u16; 256] = BYTES;

    /// Whether byte `b` carries feature `f`.
    pub fn has(b: u8, f: u16) -> bool {
        TABLE[usize::from(b)] & f != 0
    }
}

impl Transform {
    /// Whether the transformation removes every occurrence of byte `b` and does nothing
    /// else with it.
    pub(crate) fn removes(self, b: u8) -> bool {
        match self {
            Transform::RemoveNulls => b == 0,
            Transform::RemoveWhitespace => is_space(b),
            _ => false,
        }
    }

    /// Whether a value without this transformation's trigger becomes empty rather than
    /// staying as it is: `Base64Text` keeps only text hidden in base64.
    pub(crate) fn empties_untriggered(self) -> bool {
        self == Transform::Base64Text
    }

    /// The feature whose absence proves this transformation leaves a value unchanged
    /// (or, if `empties_untriggered`, empties it).
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
            Transform::Base64Decode | Transform::Base64Text => BASE64,
            Transform::RemoveSqlComments => SQL_COMMENT,
            Transform::FoldUnicode => HIGH,
        }
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
                // Every lead byte is 0xC0 or more: most values are ASCII, and their
                // largest byte (a maximum the compiler vectorises) settles it without a
                // test and branch per byte.
                if input.iter().fold(0u8, |m, &b| m.max(b)) < 0xC0
                    || !input
                        .iter()
                        .any(|&b| matches!(b, 0xC0 | 0xC1 | 0xE2 | 0xE3 | 0xEF))
                {
                    return false;
                }
                fold_unicode(input, out);
            }
        }
        out.as_slice() != input
    }
}

/// Clears the refinable features of `features` (those of `value`'s byte classes) that
/// the order of `value`'s bytes rules out: a lone `-`, `/` or `*` (dates, SKUs, URLs)
/// opens no SQL comment, single spaces between words compress to themselves, and an `&`
/// that starts no entity (`&color=red` in a URL's query) gives the HTML decoder nothing
/// to decode. Prose, identifiers and URLs then skip the chains only those
/// transformations would run, instead of building nothing in them.
pub(crate) fn refine(features: u16, value: &[u8]) -> u16 {
    let refined = refine_order(features, value);
    if refined & feature::AMP != 0 && !decodes_an_entity(value) {
        refined & !feature::AMP
    } else {
        refined
    }
}

/// Whether `html_entity_decode` would change `value`: an `&` of it starts an entity.
/// The decoder looks at every `&` (no entity it consumes holds one), so this asks its
/// own entity reader at each.
fn decodes_an_entity(value: &[u8]) -> bool {
    // Written to only when an entity is read, which ends the search.
    let mut decoded = Vec::new();
    memchr::memchr_iter(b'&', value).any(|at| html_entity(&value[at + 1..], &mut decoded).is_some())
}

/// `refine` for whitespace and SQL comments, which depend on pairs of bytes. It runs on
/// most prose values of a JSON body (a few KB per request), so on x86-64 it looks at
/// sixteen bytes at a time and only for the features that are set.
#[cfg(target_arch = "x86_64")]
fn refine_order(features: u16, value: &[u8]) -> u16 {
    let (comment, space_run) = match (
        features & feature::SQL_COMMENT != 0,
        features & feature::SPACE_RUN != 0,
    ) {
        // SAFETY: `refine_blocks` only needs SSE2, which every x86-64 CPU has (it is part
        // of the target's baseline); it reads memory through slices only.
        (true, true) => unsafe { refine_blocks::<true, true>(value) },
        (true, false) => unsafe { refine_blocks::<true, false>(value) },
        (false, true) => unsafe { refine_blocks::<false, true>(value) },
        (false, false) => return features,
    };
    let mut refined = features;
    if !comment {
        refined &= !feature::SQL_COMMENT;
    }
    if !space_run {
        refined &= !feature::SPACE_RUN;
    }
    refined
}

/// Whether `value` opens an SQL comment (`--`, `/*` or `#`; looked for only if
/// `COMMENT`) and holds whitespace that compressing changes (a run, or whitespace other
/// than a space; only if `SPACE`), as `refine_portable` decides them byte by byte.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn refine_blocks<const COMMENT: bool, const SPACE: bool>(value: &[u8]) -> (bool, bool) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_set_epi64x, _mm_sub_epi8,
    };
    let eq = |v: __m128i, c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
    let bits = |m: __m128i| _mm_movemask_epi8(m) as u32;
    // Bit k of each mask is byte k's; a pair is a completing byte whose previous byte
    // opens it: within a block the opener's bit shifted up by one, across blocks the
    // previous block's bit 15 (`carry`, entering at bit 0). The last block of a value of
    // 16 bytes or more overlaps the one before it instead (so no bytes are copied): its
    // bytes seen already (bit 0 among them) are dropped from the completions, and each
    // new byte's previous byte is in the block itself.
    let (mut comment, mut space) = (false, false);
    let (mut carry_ws, mut carry_dash, mut carry_slash) = (0u32, 0u32, 0u32);
    let mut at = 0;
    while at < value.len() {
        let (block, fresh) = match value.get(at..at + 16) {
            Some(b) => (b, !0u32),
            None if value.len() >= 16 => (
                &value[value.len() - 16..],
                !0u32 << (16 - (value.len() - at)),
            ),
            None => (&value[at..], !0u32),
        };
        let mut bytes = [0u8; 16];
        if block.len() == 16 {
            bytes.copy_from_slice(block);
        } else {
            // NUL opens and completes nothing.
            bytes[..block.len()].copy_from_slice(block);
        }
        let lo = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
        let hi = u64::from_le_bytes(bytes[8..].try_into().unwrap_or_default());
        let v = _mm_set_epi64x(hi as i64, lo as i64);
        if SPACE {
            let sp = bits(eq(v, b' '));
            // Tab, LF, VT, FF and CR are 9..=13: byte - 9 is at most 4 only for them.
            let low = _mm_sub_epi8(v, _mm_set1_epi8(9));
            let other = bits(_mm_or_si128(
                _mm_cmpeq_epi8(_mm_min_epu8(low, _mm_set1_epi8(4)), low),
                eq(v, 0xa0),
            ));
            let ws = sp | other;
            space |= (other | sp & (ws << 1 | carry_ws)) & fresh != 0;
            carry_ws = ws >> 15 & 1;
        }
        if COMMENT {
            let dash = bits(eq(v, b'-'));
            let slash = bits(eq(v, b'/'));
            let opens = bits(eq(v, b'#'))
                | dash & (dash << 1 | carry_dash)
                | bits(eq(v, b'*')) & (slash << 1 | carry_slash);
            comment |= opens & fresh != 0;
            carry_dash = dash >> 15 & 1;
            carry_slash = slash >> 15 & 1;
        }
        if (comment || !COMMENT) && (space || !SPACE) {
            break;
        }
        at += 16;
    }
    (comment, space)
}

/// `refine_order` a byte at a time, for other targets (and tested against the blocks on
/// x86-64).
#[cfg(any(test, not(target_arch = "x86_64")))]
fn refine_order_portable(features: u16, value: &[u8]) -> u16 {
    // One table entry per byte: its low bits say what it completes after the previous
    // byte (a space after a space, `-` after `-`, `*` after `/`) or decides alone (`#`,
    // whitespace other than a space); its high byte what it opens for the next byte, in
    // the same bit positions as the completions.
    const SPACE_SPACE: u16 = 1;
    const DASH_DASH: u16 = 1 << 1;
    const SLASH_STAR: u16 = 1 << 2;
    const COMMENT_ALONE: u16 = 1 << 3;
    const SPACE_ALONE: u16 = 1 << 4;
    const ALONE: u16 = COMMENT_ALONE | SPACE_ALONE;

    static REFINE_ROLES: [u16; 256] = {
        let mut t = [0u16; 256];
        t[b' ' as usize] = SPACE_SPACE | SPACE_SPACE << 8;
        t[b'-' as usize] = DASH_DASH | DASH_DASH << 8;
        t[b'/' as usize] = SLASH_STAR << 8;
        t[b'*' as usize] = SLASH_STAR;
        t[b'#' as usize] = COMMENT_ALONE;
        const OTHER_SPACES: [u8; 6] = [b'\t', b'\n', b'\r', 0x0b, 0x0c, 0xa0];
        let mut i = 0;
        while i < OTHER_SPACES.len() {
            t[OTHER_SPACES[i] as usize] = SPACE_ALONE | SPACE_SPACE << 8;
            i += 1;
        }
        t
    };
    let mut seen = 0u16;
    let mut previous = 0u16;
    for &b in value {
        let role = REFINE_ROLES[usize::from(b)];
        seen |= role & (previous >> 8) | role & ALONE;
        previous = role;
    }
    let mut refined = features;
    if seen & (DASH_DASH | SLASH_STAR | COMMENT_ALONE) == 0 {
        refined &= !feature::SQL_COMMENT;
    }
    if seen & (SPACE_SPACE | SPACE_ALONE) == 0 {
        refined &= !feature::SPACE_RUN;
    }
    refined
}

#[cfg(not(target_arch = "x86_64"))]
use refine_order_portable as refine_order;

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
/// (IIS behaviour) and to UTF-8 otherwise. The bytes between escapes are copied as runs:
/// a query string is mostly plain text, and a push per byte cost a dozen instructions.
pub(crate) fn url_decode(input: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'%', &input[i..]) {
        out.extend_from_slice(&input[i..i + k]);
        i += k;
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
        out.push(b'%');
        i += 1;
    }
    out.extend_from_slice(&input[i..]);
}

/// The byte a named entity stands for, its name in any case. A `match` on the lowercased
/// name rather than a search of a list: `refine` asks the entity reader at every `&` of
/// every URL's query string (`?ref=home&color=red`), and the list's search was 4 % of a
/// JSON body of links.
fn named_entity(name: &[u8]) -> Option<u8> {
    let mut lower = [0u8; 7];
    if name.len() > lower.len() {
        return None;
    }
    for (l, &b) in lower.iter_mut().zip(name) {
        *l = b.to_ascii_lowercase();
    }
    Some(match &lower[..name.len()] {
        b"lt" => b'<',
        b"gt" => b'>',
        b"amp" => b'&',
        b"quot" => b'"',
        b"apos" => b'\'',
        b"nbsp" => b' ',
        b"colon" => b':',
        b"lpar" => b'(',
        b"rpar" => b')',
        b"sol" => b'/',
        b"bsol" => b'\\',
        b"tab" => b'\t',
        b"newline" => b'\n',
        b"num" => b'#',
        b"equals" => b'=',
        b"grave" => b'`',
        b"semi" => b';',
        b"comma" => b',',
        b"period" => b'.',
        b"excl" => b'!',
        _ => return None,
    })
}

/// Copies the bytes between `&`s as runs, as `url_decode` does.
fn html_decode(input: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'&', &input[i..]) {
        out.extend_from_slice(&input[i..i + k]);
        i += k + 1;
        match html_entity(&input[i..], out) {
            Some(consumed) => i += consumed,
            None => out.push(b'&'),
        }
    }
    out.extend_from_slice(&input[i..]);
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
    out.push(named_entity(name)?);
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

/// Writes the segments straight into `out`, `..` cutting the last one off again, rather
/// than collecting them first: every URL value runs this (the `//` of `https://` always
/// changes it), and a list of segments per value was an allocation per value.
fn normalize_path(input: &[u8], out: &mut Vec<u8>) {
    // Segment by segment on a slash-normalised view; `..` pops a segment unless there is
    // none left, in which case it is kept (an attempt to climb above the root).
    let absolute = matches!(input.first(), Some(b'/') | Some(b'\\'));
    let trailing = matches!(input.last(), Some(b'/') | Some(b'\\'));
    if absolute {
        out.push(b'/');
    }
    // Segments written so far lie in `out[base..]`, joined by `/`; none is empty.
    let base = out.len();
    for seg in input.split(|&b| b == b'/' || b == b'\\') {
        match seg {
            b"" | b"." => continue,
            b".." => {
                let last = out[base..]
                    .iter()
                    .rposition(|&b| b == b'/')
                    .map_or(base, |slash| base + slash + 1);
                if out.len() > base && out[last..] != *b".." {
                    out.truncate(last.saturating_sub(1).max(base));
                    continue;
                }
            }
            _ => {}
        }
        if out.len() > base {
            out.push(b'/');
        }
        out.extend_from_slice(seg);
    }
    if trailing && out.len() > base {
        out.push(b'/');
    }
}

/// Each byte's 6-bit value in base64, with `STANDARD_ONLY` or `URL_SAFE_ONLY` set on the
/// bytes only one alphabet has (`+`, `/` against `-`, `_`); both bits for every byte
/// neither has (`=` included: padding is cut off before the table is read).
const BASE64_VALUES: [u8; 256] = {
    let mut t = [STANDARD_ONLY | URL_SAFE_ONLY; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        if i < 10 {
            t[b'0' as usize + i] = 52 + i as u8;
        }
        i += 1;
    }
    t[b'+' as usize] = 62 | STANDARD_ONLY;
    t[b'/' as usize] = 63 | STANDARD_ONLY;
    t[b'-' as usize] = 62 | URL_SAFE_ONLY;
    t[b'_' as usize] = 63 | URL_SAFE_ONLY;
    t
};
const STANDARD_ONLY: u8 = 0x40;
const URL_SAFE_ONLY: u8 = 0x80;

/// Decodes standard or URL-safe base64 as the `base64` crate's decoders for either
/// alphabet would, padding optional (the test below holds it to them): a value may not
/// mix the alphabets' own bytes, `=` may only end it and only after at least two symbols
/// of its last group, a last group of one symbol is no group, and the bits a short last
/// group leaves over must be zero. Our own loop, because this runs on every argument at
/// paranoia 2 and the crate's decoder cost more per value than the scans that follow it;
/// a value with a byte outside base64 (prose: its first space) stops at that byte's group.
fn base64_decode(input: &[u8], out: &mut Vec<u8>) -> bool {
    let trimmed = input.trim_ascii();
    if trimmed.len() < 4 {
        return false;
    }
    let symbols = trimmed.len() - trimmed.iter().rev().take_while(|&&b| b == b'=').count();
    // The last group's length counting its padding, and without it.
    let group = match trimmed.len() % 4 {
        0 => 4,
        r => r,
    };
    let Some(last) = group
        .checked_sub(trimmed.len() - symbols)
        .filter(|&n| n >= 2)
    else {
        return false;
    };
    let (whole, tail) = trimmed[..symbols].split_at(symbols - last);
    let start = out.len();
    out.reserve(whole.len() / 4 * 3 + 3);
    let mut alphabets = 0u8;
    for quad in whole.chunks_exact(4) {
        let [a, b, c, d] = [0, 1, 2, 3].map(|i| BASE64_VALUES[usize::from(quad[i])]);
        alphabets |= a | b | c | d;
        if alphabets & (STANDARD_ONLY | URL_SAFE_ONLY) == STANDARD_ONLY | URL_SAFE_ONLY {
            out.truncate(start);
            return false;
        }
        let n = u32::from(a & 63) << 18 | u32::from(b & 63) << 12 | u32::from(c & 63) << 6;
        let n = n | u32::from(d & 63);
        out.extend_from_slice(&n.to_be_bytes()[1..]);
    }
    let mut n = 0u32;
    for &symbol in tail {
        let v = BASE64_VALUES[usize::from(symbol)];
        alphabets |= v;
        n = n << 6 | u32::from(v & 63);
    }
    // `last` symbols carry `last * 6 / 8` bytes; the bits below them must be zero.
    let bytes = last * 6 / 8;
    let spare = last * 6 - bytes * 8;
    if alphabets & (STANDARD_ONLY | URL_SAFE_ONLY) == STANDARD_ONLY | URL_SAFE_ONLY
        || n & ((1 << spare) - 1) != 0
    {
        out.truncate(start);
        return false;
    }
    let n = n >> spare;
    out.extend_from_slice(&n.to_be_bytes()[4 - bytes..]);
    true
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

    #[test]
    fn removes_names_exactly_the_bytes_a_step_drops() {
        for t in [
            RemoveNulls,
            RemoveWhitespace,
            CompressWhitespace,
            Lowercase,
            UrlDecode,
        ] {
            for b in 0..=255u8 {
                let input = [b'x', b, b'y'];
                let mut out = Vec::new();
                let dropped = t.apply(&input, &mut out) && out == b"xy";
                assert_eq!(t.removes(b), dropped, "{t:?} {b:#04x}");
            }
        }
    }

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
        check: &mut impl FnMut(&[u8]),
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

    /// What the `base64` crate's lenient decoders give for `value` trimmed, trying the
    /// standard alphabet first: the decoding `base64_decode` must reproduce.
    fn crate_decoding(value: &[u8]) -> Option<Vec<u8>> {
        use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
        use base64::Engine as _;
        let lenient =
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
        let engines = [
            GeneralPurpose::new(&base64::alphabet::STANDARD, lenient),
            GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient),
        ];
        let trimmed = value.trim_ascii();
        (trimmed.len() >= 4)
            .then(|| engines.iter().find_map(|e| e.decode(trimmed).ok()))
            .flatten()
    }

    #[test]
    fn base64_decode_agrees_with_trying_both_alphabets() {
        let mut out = b"kept".to_vec();
        let mut decoded = 0;
        let mut check = |value: &[u8]| {
            out.truncate(4);
            let got = super::base64_decode(value, &mut out).then(|| out[4..].to_vec());
            assert_eq!(out.len() > 4, got.is_some(), "{value:?} left bytes behind");
            assert_eq!(
                got,
                crate_decoding(value),
                "{}",
                String::from_utf8_lossy(value)
            );
            decoded += usize::from(got.is_some());
        };
        // Every string over symbols whose low bits a short last group must have zero
        // or not (`Q` 16, `z` 51, `0` 52), both alphabets' own bytes, padding and bytes
        // of neither; then longer ones, for groups before the last.
        let symbols = [b'Q', b'z', b'0', b'+', b'/', b'-', b'_', b'=', b' ', b'.'];
        every_string(&symbols, 1..=6, &mut check);
        every_string(b"ABQ+_=", 7..=8, &mut check);
        // Long values: whole groups before the last one, bad bytes anywhere.
        let mut rng = crate::test_rng::Rng(0x9e37_79b9_7f4a_7c15);
        let alphabets = [
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        ];
        for _ in 0..200_000 {
            let alphabet = alphabets[rng.below(2)];
            let len = rng.below(70);
            let mut value: Vec<u8> = (0..len).map(|_| alphabet[rng.below(64)]).collect();
            match rng.below(8) {
                0 => value.extend(std::iter::repeat_n(b'=', rng.below(4))),
                1 if len > 0 => value[rng.below(len)] = b"=-_+/ .\\"[rng.below(8)],
                2 => value.insert(0, b' '),
                _ => {}
            }
            check(&value);
        }
        assert!(decoded > 100_000, "only {decoded} inputs decoded");
    }

    #[test]
    fn refine_keeps_every_feature_a_transformation_needs() {
        use super::{feature, refine};
        // Every string of up to five bytes over the bytes that matter, and some others.
        let alphabet = [b' ', b'-', b'/', b'*', b'#', b'\t', b'\n', 0xa0, b'a', b'1'];
        let mut out = Vec::new();
        every_string(&alphabet, 0..=5, &mut |value| {
            let refined = refine(feature::REFINABLE, value);
            if RemoveSqlComments.apply(value, &mut out) {
                assert!(refined & feature::SQL_COMMENT != 0, "{value:?}");
            }
            if CompressWhitespace.apply(value, &mut out) {
                assert!(refined & feature::SPACE_RUN != 0, "{value:?}");
            }
        });
        assert_eq!(refine(feature::REFINABLE, b"SKU-2024-0001 a/b * c"), 0);
        assert_eq!(refine(feature::REFINABLE, b"1 -- x"), feature::SQL_COMMENT);
        assert_eq!(refine(feature::REFINABLE, b"a/*b"), feature::SQL_COMMENT);
        assert_eq!(refine(feature::REFINABLE, b"a  b"), feature::SPACE_RUN);
        assert_eq!(refine(feature::REFINABLE, b"a\tb"), feature::SPACE_RUN);
        assert_eq!(
            refine(feature::REFINABLE, b"?w=640&fmt=webp&copyright=1"),
            0
        );
        assert_eq!(refine(feature::REFINABLE, b"a&lt;b"), feature::AMP);
        // `#` opens an SQL comment too.
        assert_eq!(
            refine(feature::REFINABLE, b"&#x3c;"),
            feature::AMP | feature::SQL_COMMENT
        );
    }

    /// `refine` keeps `AMP` exactly when the HTML decoder changes the value: every `&`
    /// placed before names, numbers and their near misses, at the start, the end and
    /// beside another `&`.
    #[test]
    fn refine_keeps_amp_exactly_when_html_decoding_changes_the_value() {
        use super::{feature, refine};
        let tails: [&[u8]; 16] = [
            b"",
            b"amp",
            b"amp;",
            b"lt",
            b"LT;",
            b"ampx",
            b"color=red",
            b"copy",
            b"#",
            b"#x",
            b"#xg",
            b"#38",
            b"#x26;",
            b"#12345678901",
            b"&lt",
            b"quotation",
        ];
        let mut out = Vec::new();
        for head in [&b""[..], b"a", b"a=1&", b"&"] {
            for tail in tails {
                let value = [head, b"&", tail].concat();
                out.clear();
                let changes = HtmlEntityDecode.apply(&value, &mut out);
                let kept = refine(feature::AMP, &value) & feature::AMP != 0;
                assert_eq!(kept, changes, "{:?}", String::from_utf8_lossy(&value));
            }
        }
    }

    /// The sixteen-byte `refine_order` agrees with the byte-at-a-time one for every set of
    /// features, on pairs placed at every offset around block boundaries and on random
    /// values of every length up to five blocks.
    #[test]
    fn refine_order_agrees_with_the_portable_version() {
        use super::{feature, refine_order, refine_order_portable};
        use crate::test_rng::Rng;
        let feature_sets = [
            0,
            feature::SQL_COMMENT,
            feature::SPACE_RUN,
            feature::REFINABLE,
            feature::REFINABLE | feature::SPACE | feature::UPPER,
        ];
        let check = |value: &[u8]| {
            for f in feature_sets {
                assert_eq!(
                    refine_order(f, value),
                    refine_order_portable(f, value),
                    "{f:#x} {value:?}"
                );
            }
        };
        let pairs: [&[u8]; 12] = [
            b"  ", b"--", b"/*", b"#", b"\t", b"\n", b"\r", b"\x0b", b"\x0c", b"\xa0", b" -", b"*/",
        ];
        for len in 0..70 {
            for at in 0..len {
                for pair in pairs {
                    let mut value = vec![b'a'; len];
                    for (k, &b) in pair.iter().enumerate() {
                        if let Some(slot) = value.get_mut(at + k) {
                            *slot = b;
                        }
                    }
                    check(&value);
                    // One half of a pair at the end of a block, and the other not.
                    value[at] = pair[pair.len() - 1];
                    check(&value);
                }
            }
        }
        let alphabet = [
            b' ', b'-', b'/', b'*', b'#', b'\t', b'\n', b'\r', 0x0b, 0x0c, 0x08, 0x0e, 0xa0, 0,
            b'a', b'Z', b'1', 0xff, 0x89,
        ];
        let mut rng = Rng(0x51a9_c0de_7e57_f00d);
        for _ in 0..20_000 {
            let len = rng.below(80);
            let sparse = rng.below(4) + 1;
            let value: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.below(sparse) == 0 {
                        alphabet[rng.below(alphabet.len())]
                    } else {
                        b'x'
                    }
                })
                .collect();
            check(&value);
        }
    }

    /// The quick test for ASCII values lets no lead byte through unfolded, wherever it
    /// stands.
    #[test]
    fn fold_unicode_finds_a_lead_byte_anywhere() {
        for len in 1..48 {
            for at in 0..len {
                for lead in 0x80..=0xffu8 {
                    let mut value = vec![b'a'; len];
                    value[at] = lead;
                    value.extend_from_slice(&[0x80, 0x81]);
                    let mut out = Vec::new();
                    let folds = FoldUnicode.apply(&value, &mut out);
                    let mut reference = Vec::new();
                    super::fold_unicode(&value, &mut reference);
                    assert_eq!(folds, reference != value, "{lead:#x} at {at} of {len}");
                }
            }
        }
    }

    /// The decoder as it was, a byte at a time: the run-copying one must agree with it.
    fn url_decode_bytewise(input: &[u8], out: &mut Vec<u8>) {
        use super::{hex, parse_hex, push_char};
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

    /// `ours` and `theirs` decode 50,000 random values over `alphabet` alike.
    fn decoders_agree(
        alphabet: &[u8],
        seed: u64,
        ours: fn(&[u8], &mut Vec<u8>),
        theirs: fn(&[u8], &mut Vec<u8>),
    ) {
        let mut rng = crate::test_rng::Rng(seed);
        for _ in 0..50_000 {
            let len = rng.below(24);
            let value: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            ours(&value, &mut a);
            theirs(&value, &mut b);
            assert_eq!(a, b, "{value:?}");
        }
    }

    #[test]
    fn url_decode_copies_runs_as_the_bytewise_decoder_did() {
        decoders_agree(
            b"%%%uU0aFfg2Cx+\xff\xc3 ",
            0x0dd_ba11_5eed_1e55,
            super::url_decode,
            url_decode_bytewise,
        );
    }

    /// The entity decoder as it was, a byte at a time.
    fn html_decode_bytewise(input: &[u8], out: &mut Vec<u8>) {
        use super::html_entity;
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

    #[test]
    fn html_decode_copies_runs_as_the_bytewise_decoder_did() {
        decoders_agree(
            b"&&&#;xX3c9ltamp;gtquo",
            0xfeed_f00d_dead_beef,
            super::html_decode,
            html_decode_bytewise,
        );
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
        // Every named entity, in any case, with or without its `;`; names one byte
        // longer or shorter, or past the longest, are left as they are.
        assert_eq!(
            run(
                HtmlEntityDecode,
                "&LT;&gt&Amp;&quot;&APOS;&nbsp;&Colon;&lpar;&rpar;&sol;&bsol;&tab;&NewLine;\
                 &num;&equals;&grave;&semi;&comma;&period;&excl;"
            ),
            "<>&\"' :()/\\\t\n#=`;,.!"
        );
        assert_eq!(
            run(HtmlEntityDecode, "&l;&ltt;&newlines;&newlinex;&colonx;&e;"),
            "&l;&ltt;&newlines;&newlinex;&colonx;&e;"
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

    /// The segment rules spelled out with a list of segments, the way they read: the
    /// engine's version writes into its buffer instead and must give the same bytes.
    fn normalized_by_segments(input: &[u8]) -> Vec<u8> {
        let mut segments: Vec<&[u8]> = Vec::new();
        for seg in input.split(|&b| b == b'/' || b == b'\\') {
            match seg {
                b"" | b"." => {}
                b".." if matches!(segments.last(), Some(s) if *s != b"..") => {
                    segments.pop();
                }
                _ => segments.push(seg),
            }
        }
        let mut out = Vec::new();
        if matches!(input.first(), Some(b'/' | b'\\')) {
            out.push(b'/');
        }
        out.extend_from_slice(&segments.join(&b'/'));
        if matches!(input.last(), Some(b'/' | b'\\')) && !segments.is_empty() {
            out.push(b'/');
        }
        out
    }

    #[test]
    fn path_normalisation_agrees_with_the_segment_rules() {
        let pieces: [&[u8]; 9] = [b"/", b"\\", b".", b"..", b"...", b"a", b"bc", b"..a", b"/"];
        let mut rng = crate::test_rng::Rng(0x5eed_0f9a_7c01);
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..rng.below(9) {
                input.extend_from_slice(pieces[rng.below(pieces.len())]);
            }
            let mut out = Vec::new();
            if NormalizePath.apply(&input, &mut out) {
                assert_eq!(
                    out,
                    normalized_by_segments(&input),
                    "{:?}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
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
            "",
            "JyBvciAxPTEtLQ==",
            "JyBvciAx.PTEtLQ==",
            " PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg'",
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
        ];
        for s in samples {
            // The features the engine computes (from the value's byte classes).
            let feats = crate::classes::features(crate::classes::of(s.as_bytes()));
            for t in all {
                let mut out = Vec::new();
                if feats & t.trigger() == 0 {
                    if t.empties_untriggered() {
                        t.apply(s.as_bytes(), &mut out);
                        assert!(out.is_empty(), "{t:?} kept {s:?}");
                    } else {
                        assert!(!t.apply(s.as_bytes(), &mut out), "{t:?} changed {s:?}");
                    }
                }
            }
        }
    }

    /// The `BASE64` feature's promise, byte by byte: a value holding a byte whose classes
    /// lack it cannot be decoded, wherever the byte stands in otherwise valid base64.
    #[test]
    fn a_byte_without_the_base64_feature_defeats_decoding_anywhere() {
        let valid = [
            "JyBvciAxPTEtLQ==",
            "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg",
            "Li4vLi4vZXRjL3Bhc3N3ZA",
        ];
        let mut excluded = 0;
        for b in 0..=255u8 {
            let feats = crate::classes::features(crate::classes::of(&[b]));
            if feats & super::feature::BASE64 != 0 {
                continue;
            }
            excluded += 1;
            for v in valid {
                for at in [0, 1, v.len() / 2, v.len() - 1, v.len()] {
                    let mut value = v.as_bytes().to_vec();
                    value.insert(at, b);
                    let mut out = Vec::new();
                    assert!(
                        !Base64Decode.apply(&value, &mut out),
                        "{b:#04x} at {at} of {v}"
                    );
                    Base64Text.apply(&value, &mut out);
                    assert!(out.is_empty(), "{b:#04x} at {at} of {v}");
                }
            }
        }
        // Every byte but the 64 symbols of each alphabet, `=` and the trimmed whitespace.
        assert_eq!(excluded, 256 - 62 - 4 - 1 - 6);
    }
}
