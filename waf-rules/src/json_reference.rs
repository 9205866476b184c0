//! The JSON scanner as it was before its parsing functions took the position as an
//! argument (commit 1c9544a), kept for the tests only: the scanner must read every
//! document, and every prefix of a refused one, exactly as this one did, since verdicts
//! depend on the values kept before a refusal too (which `serde_json` cannot tell).

use std::borrow::Cow;

use crate::request::{Kind, Value, MAX_BODY_VALUES};
use crate::util::same_bytes;

/// Deepest nesting accepted: deeper documents are not JSON to us, so a hostile body
/// cannot exhaust the stack. (`serde_json` stops one level earlier, at 128 open
/// containers; kept as it was so verdicts do not change.)
const MAX_DEPTH: usize = 128;

/// Parses `body` as JSON into `out`; returns the number of string values. On malformed
/// input, what parsed is kept and the whole body is added as one unnamed argument.
pub(super) fn json<'a>(body: &'a [u8], names: &'a mut String, out: &mut Vec<Value<'a>>) -> usize {
    let start = out.len();
    names.clear();
    // JSON text is UTF-8 (RFC 8259). The body is checked once here; its longest valid
    // prefix is what strings may lie in. A string ends at an ASCII quote, so one that
    // ends inside that prefix is valid UTF-8, and one that ends after it contains the
    // first bad byte (parsing cannot get past that byte outside a string, where only
    // ASCII is allowed). So what parses before a bad byte is still inspected by name.
    let valid = if is_ascii(body) {
        body.len()
    } else {
        match std::str::from_utf8(body) {
            Ok(_) => body.len(),
            Err(e) => e.valid_up_to(),
        }
    };
    // The key paths are built as bytes (in `names`' own buffer), so that a key is copied
    // without a check per key, and checked as UTF-8 once at the end.
    let mut buf = std::mem::take(names).into_bytes();
    buf.clear();
    // Sized for a typical document (the paths of a few dozen distinct keys) so that
    // neither grows.
    buf.reserve(64 + body.len() / 4);
    let mut spans = Vec::with_capacity(64);
    // Name 0 is the empty name, the root's.
    spans.push((0, 0));
    let mut scan = Scan {
        b: body,
        i: 0,
        valid,
        names: buf,
        spans,
        keys: Vec::with_capacity(32),
        fixups: Vec::with_capacity(body.len() / 32),
        count: 0,
    };
    let ok = scan.document(out).is_some();
    let Scan {
        names: buf,
        spans,
        fixups,
        count,
        ..
    } = scan;
    // Never fails: the paths are keys cut from the valid text at ASCII quotes, decoded
    // keys and dots.
    *names = String::from_utf8(buf).unwrap_or_default();
    let names: &'a String = names;
    // One slice per distinct name, not per value (the collect reuses `spans`' memory).
    let strs: Vec<&'a str> = spans
        .into_iter()
        .map(|(s, e)| names.get(s..e).unwrap_or_default())
        .collect();
    for (index, name) in fixups {
        out[index].name = Cow::Borrowed(strs[name]);
    }
    if ok {
        count
    } else {
        // Not JSON after all: keep what parsed and inspect the whole body as one value.
        out.push(Value {
            kind: Kind::BodyArg,
            name: Cow::Borrowed(""),
            data: Cow::Borrowed(body),
        });
        (out.len() - start).max(1)
    }
}

struct Scan<'a> {
    b: &'a [u8],
    /// The position: what is before it has been parsed.
    i: usize,
    /// The length of the body's longest valid UTF-8 prefix (all of it, normally).
    valid: usize,
    /// Every key path written, back to back.
    names: Vec<u8>,
    /// The range in `names` of each name, by name number.
    spans: Vec<(usize, usize)>,
    /// (name number, key's start in the body, key length) of each key of the objects
    /// being parsed, and of the previous object of each array being parsed: the objects
    /// of an array mostly have the same keys, so a key's path is written once per array,
    /// not once per object. The start is `usize::MAX` for a key with escapes.
    keys: Vec<(usize, usize, usize)>,
    /// (index in `out`, name number) of values whose name is set once parsing ends.
    fixups: Vec<(usize, usize)>,
    count: usize,
}

/// The name number of a key that named nothing (its value was a number or literal).
const NO_NAME: usize = usize::MAX;
/// A `keys` entry for a key that named nothing.
const NO_KEY: (usize, usize, usize) = (NO_NAME, 0, 0);

impl<'a> Scan<'a> {
    fn document(&mut self, out: &mut Vec<Value<'a>>) -> Option<()> {
        let c = self.peek()?;
        self.value(out, c, 0, 0, 0)?;
        self.skip_ws();
        (self.i == self.b.len()).then_some(())
    }

    /// The next byte that is not whitespace, moving up to it. Compact documents have no
    /// whitespace at all, so the common case is one comparison.
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        if c > b' ' {
            return Some(c);
        }
        self.skip_ws();
        self.b.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The value starting with `c` at the current position, named `name` (a name
    /// number). Containers recurse (one call per container, not per value); scalars are
    /// handled here, inline in the loops. An object's keys start at `keys[base]` (see
    /// `object`).
    #[inline(always)]
    fn value(
        &mut self,
        out: &mut Vec<Value<'a>>,
        c: u8,
        depth: usize,
        name: usize,
        base: usize,
    ) -> Option<()> {
        match c {
            b'"' => {
                let data = self.string()?;
                self.emit(out, data, name);
                Some(())
            }
            b'{' => self.object(out, depth + 1, name, base),
            b'[' => self.array(out, depth + 1, name),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    /// Adds a string value named `name` (a name number).
    #[inline(always)]
    fn emit(&mut self, out: &mut Vec<Value<'a>>, data: Cow<'a, [u8]>, name: usize) {
        self.count += 1;
        if out.len() < MAX_BODY_VALUES {
            self.fixups.push((out.len(), name));
            push(out, Kind::BodyArg, data);
        }
    }

    /// The name number of the path `parent.key` for the key at `keys[slot]`: the one
    /// already there if it is the same key (the previous object of the same array had
    /// it at the same place, so the same parent too), else a path written now. `at` is
    /// where the key's bytes start in the body, if they are borrowed from it.
    #[inline(always)]
    fn key_name(&mut self, parent: usize, key: &[u8], at: Option<usize>, slot: usize) -> usize {
        let entry = self.keys.get(slot).copied().unwrap_or(NO_KEY);
        if let Some(at) = at {
            if entry.0 != NO_NAME && self.same_key(entry, at, key.len()) {
                return entry.0;
            }
        }
        let (ps, pe) = self.spans[parent];
        let s = self.names.len();
        self.names.extend_from_within(ps..pe);
        if pe > ps {
            self.names.push(b'.');
        }
        self.names.extend_from_slice(key);
        let name = self.spans.len();
        self.spans.push((s, self.names.len()));
        self.set_key(slot, (name, at.unwrap_or(usize::MAX), key.len()));
        name
    }

    /// Whether the key `entry` recorded is the `len` bytes at `at` in the body.
    #[inline(always)]
    fn same_key(&self, entry: (usize, usize, usize), at: usize, len: usize) -> bool {
        let (_, was, was_len) = entry;
        if was_len != len {
            return false;
        }
        // `was` is `usize::MAX` for a key with escapes: no match.
        let (Some(x), Some(y)) = (self.b.get(was..), self.b.get(at..)) else {
            return false;
        };
        // Most keys are at most a word long, and a word from either start lies in the
        // body (the key is followed by at least `":` and a value): one masked compare.
        if len <= 8 {
            if let (Some(x), Some(y)) = (x.first_chunk::<8>(), y.first_chunk::<8>()) {
                let differ = u64::from_le_bytes(*x) ^ u64::from_le_bytes(*y);
                return len == 0 || differ << (64 - 8 * len) == 0;
            }
        }
        match (x.get(..len), y.get(..len)) {
            (Some(x), Some(y)) => same_bytes(x, y),
            _ => false,
        }
    }

    /// Sets `keys[slot]`, which is at most one past the end.
    #[inline(always)]
    fn set_key(&mut self, slot: usize, entry: (usize, usize, usize)) {
        match self.keys.get_mut(slot) {
            Some(k) => *k = entry,
            None => self.keys.push(entry),
        }
    }

    /// An object named `parent`, whose keys' entries go from `keys[base]` on. An object
    /// of an array starts where the array's previous object started, so the entries it
    /// finds there (up to `keys`' length on entry) are that object's.
    fn object(
        &mut self,
        out: &mut Vec<Value<'a>>,
        depth: usize,
        parent: usize,
        base: usize,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        let mut c = self.peek()?;
        if c == b'}' {
            self.i += 1;
            return Some(());
        }
        let previous = self.keys.len();
        let mut slot = base;
        loop {
            if c != b'"' {
                return None;
            }
            let key = self.string()?;
            let at = matches!(key, Cow::Borrowed(_)).then(|| self.i - 1 - key.len());
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            // Only strings and containers are named by the path: numbers and literals
            // need no name.
            let v = self.peek();
            let name = if let Some(b'"' | b'{' | b'[') = v {
                self.key_name(parent, &key, at, slot)
            } else {
                // An entry already there is the previous object's, still right for it.
                if slot == self.keys.len() {
                    self.keys.push(NO_KEY);
                }
                0
            };
            slot += 1;
            if out.len() < MAX_BODY_VALUES {
                push(out, Kind::BodyArgName, key);
            }
            // A nested object's entries go after this one's (and after the previous
            // object's, which the next keys may still find).
            let nested = self.keys.len();
            self.value(out, v?, depth, name, nested)?;
            self.keys.truncate(nested);
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    c = self.peek()?;
                }
                b'}' => {
                    self.i += 1;
                    debug_assert!(self.keys.len() == previous.max(slot));
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array named `name`: its items are named by it too.
    fn array(&mut self, out: &mut Vec<Value<'a>>, depth: usize, name: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        let mut c = self.peek()?;
        if c == b']' {
            self.i += 1;
            return Some(());
        }
        // Each object of the array starts its keys here, where the previous one did.
        let base = self.keys.len();
        loop {
            self.value(out, c, depth, name, base)?;
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    c = self.peek()?;
                }
                b']' => {
                    self.i += 1;
                    self.keys.truncate(base);
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        let b = self.b;
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > from
        };
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        if b.get(i) == Some(&b'0') {
            i += 1;
        } else if !digits(&mut i) {
            return None;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return None;
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
        }
        self.i = i;
        Some(())
    }

    /// A string starting at the opening quote: borrowed from the body unless it holds
    /// escapes. Rejects control characters, bad escapes, lone surrogates and invalid UTF-8.
    #[inline(always)]
    fn string(&mut self) -> Option<Cow<'a, [u8]>> {
        let b = self.b;
        let start = self.i + 1;
        // Most keys and strings end within their first block.
        if let Some(block) = b.get(start..).and_then(<[u8]>::first_chunk::<16>) {
            let k = string_stops(block).trailing_zeros() as usize;
            if block.get(k) == Some(&b'"') && start + k <= self.valid {
                self.i = start + k + 1;
                return Some(Cow::Borrowed(&block[..k]));
            }
            // The search goes on from the first stop, or after the block if it has none
            // (`k` is 32 then): the block is not scanned twice.
            return self.long_string(start, start + k.min(16));
        }
        self.long_string(start, start)
    }

    /// `string` from `from` on, where `start..from` holds no stop.
    #[inline(always)]
    fn long_string(&mut self, start: usize, from: usize) -> Option<Cow<'a, [u8]>> {
        let b = self.b;
        let p = next_string_stop(b, from);
        // The common case: no escape, and the contents end inside the valid text.
        if b.get(p) == Some(&b'"') && p <= self.valid {
            self.i = p + 1;
            return Some(Cow::Borrowed(&b[start..p]));
        }
        self.escaped_string(start, p)
    }

    /// The rest of a string whose first stop, at `p`, is not its closing quote: decodes
    /// its escapes, or rejects it.
    #[cold]
    fn escaped_string(&mut self, start: usize, mut p: usize) -> Option<Cow<'a, [u8]>> {
        let b = self.b;
        let mut v = Vec::with_capacity(p - start + 16);
        let mut run = start;
        loop {
            match *b.get(p)? {
                b'"' => break,
                b'\\' => {}
                _ => return None,
            }
            v.extend_from_slice(&b[run..p]);
            let mut i = p + 1;
            let esc = *b.get(i)?;
            i += 1;
            let c = match esc {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let hi = hex4(b.get(i..i + 4)?)?;
                    i += 4;
                    let cp = if (0xD800..0xDC00).contains(&hi) {
                        if b.get(i..i + 2)? != b"\\u" {
                            return None;
                        }
                        let lo = hex4(b.get(i + 2..i + 6)?)?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return None;
                        }
                        i += 6;
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    } else {
                        hi
                    };
                    char::from_u32(cp)?
                }
                _ => return None,
            };
            let mut buf = [0u8; 4];
            v.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            run = i;
            p = next_string_stop(b, i);
        }
        // UTF-8: see `json`.
        if p > self.valid {
            return None;
        }
        v.extend_from_slice(&b[run..p]);
        self.i = p + 1;
        Some(Cow::Owned(v))
    }
}

/// The first byte at or after `from` that ends a run of plain string content (the
/// closing quote, a backslash, or a control character JSON forbids unescaped), or
/// `b.len()` if none does. Sixteen bytes at a time; the last few are copied into a
/// block padded with plain bytes, so every string takes the same path.
#[inline(always)]
fn next_string_stop(b: &[u8], from: usize) -> usize {
    let mut rest = b.get(from..).unwrap_or_default();
    while let Some((block, tail)) = rest.split_first_chunk() {
        let stops = string_stops(block);
        if stops != 0 {
            return b.len() - rest.len() + stops.trailing_zeros() as usize;
        }
        rest = tail;
    }
    let mut block = [b'a'; 16];
    block[..rest.len()].copy_from_slice(rest);
    match string_stops(&block) {
        0 => b.len(),
        stops => b.len() - rest.len() + stops.trailing_zeros() as usize,
    }
}

/// Bit k is set iff byte k of `block` ends a run of plain string content.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn string_stops(block: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: `block` is 16 readable bytes, and `_mm_loadu_si128` reads exactly 16 bytes
    // with no alignment requirement. The other intrinsics only compute on registers;
    // SSE2 is part of the x86-64 baseline, so every x86-64 CPU has them. (Unsafe for the
    // load only; the word arithmetic below does the same in safe code at about twice the
    // instructions per byte.)
    unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned c < 0x20 iff min(c, 0x1f) == c.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn string_stops(block: &[u8; 16]) -> u32 {
    string_stops_portable(block)
}

/// `string_stops` in word arithmetic, for other targets (and tested against the SSE2
/// version on x86-64).
#[cfg(not(target_arch = "x86_64"))]
fn string_stops_portable(block: &[u8; 16]) -> u32 {
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Per byte, the high bit is set iff the byte is zero (no carry crosses a byte).
    let zero = |x: u64| !(((x & LOW) + LOW) | x) & HIGH;
    let half = |bytes: &[u8]| {
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        let w = u64::from_le_bytes(word);
        // High bit set iff the byte is below 0x20.
        let control = !(((w & LOW) + 0x6060_6060_6060_6060) | w) & HIGH;
        let stops = zero(w ^ 0x2222_2222_2222_2222) | zero(w ^ 0x5c5c_5c5c_5c5c_5c5c) | control;
        // Gathers the eight high bits into the top byte, byte k's into bit 56 + k.
        ((stops >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32
    };
    half(&block[..8]) | half(&block[8..]) << 8
}

/// Whether `b` is all ASCII, as `<[u8]>::is_ascii` but without an early exit: the bytes
/// are ORed together 64 at a time (four vector ORs) and tested once, which is about half
/// the instructions of the standard library's word-at-a-time check on a JSON body.
fn is_ascii(b: &[u8]) -> bool {
    let mut acc = [0u8; 64];
    let mut chunks = b.chunks_exact(64);
    for chunk in &mut chunks {
        for (a, &c) in acc.iter_mut().zip(chunk) {
            *a |= c;
        }
    }
    let rest = chunks.remainder().iter().fold(0, |a, &c| a | c);
    acc.iter().fold(rest, |a, &c| a | c) < 0x80
}

/// Adds an unnamed value (JSON values are named once parsing ends).
#[inline(always)]
fn push<'a>(out: &mut Vec<Value<'a>>, kind: Kind, data: Cow<'a, [u8]>) {
    match data {
        Cow::Borrowed(d) => out.push(Value {
            kind,
            name: Cow::Borrowed(""),
            data: Cow::Borrowed(d),
        }),
        data => push_owned(out, kind, data),
    }
}

#[cold]
fn push_owned<'a>(out: &mut Vec<Value<'a>>, kind: Kind, data: Cow<'a, [u8]>) {
    out.push(Value {
        kind,
        name: Cow::Borrowed(""),
        data,
    });
}

fn hex4(h: &[u8]) -> Option<u32> {
    h.iter().try_fold(0u32, |acc, &c| {
        let d = (c as char).to_digit(16)?;
        Some(acc * 16 + d)
    })
}
