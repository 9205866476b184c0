//! A validating JSON scanner that borrows everything it can.
//!
//! Every string becomes a value named by its dotted key path (array items take their
//! array's name); every key is also inspected as a name. Numbers, booleans and null cannot
//! carry an attack and are skipped. Unlike a general deserializer it allocates nothing per
//! value: strings without escapes borrow the body, and the key paths are written into one
//! per-request buffer (`names`) that the values then borrow, so the ~100 strings of a 4 KB
//! document cost no allocation each. A path is written once per array, not once per
//! object of it: an object whose key is the one its array's previous object had at the
//! same place reuses that object's path (see `Scan::key_name`).
//!
//! The grammar is checked as strictly as `serde_json` does (numbers, escapes, UTF-8,
//! nesting depth, nothing after the document), so a body that is not JSON falls back to
//! being inspected as one value exactly as before.
//!
//! Speed: most of a document is string contents, so strings are scanned 16 bytes at a
//! time for the closing quote, a backslash or a control byte (SSE2 on x86-64, word
//! arithmetic elsewhere); the body's UTF-8 is checked once as a whole (an ASCII body by a
//! vectorised OR of all its bytes, anything else by `std::str::from_utf8`); and the grammar
//! is walked with one function per container, scalars handled inline, so a string value
//! costs a vector compare or two and two pushes.

use std::borrow::Cow;

use crate::request::{push_value, Kind, Value, MAX_BODY_VALUES};
use crate::util::same_bytes;

#[cfg(test)]
#[path = "json_oracle.rs"]
mod json_oracle;

/// Deepest nesting accepted: deeper documents are not JSON to us, so a hostile body
/// cannot exhaust the stack. (`serde_json` stops one level earlier, at 128 open
/// containers; kept as it was so verdicts do not change.)
const MAX_DEPTH: usize = 128;

/// Parses `body` as JSON into `out`; returns the number of string values. On malformed
/// input, what parsed is kept and the whole body is added as one unnamed argument.
pub(crate) fn json<'a>(body: &'a [u8], names: &'a mut String, out: &mut Vec<Value<'a>>) -> usize {
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
        valid,
        names: buf,
        spans,
        keys: Vec::with_capacity(32),
        fixups: Vec::with_capacity(body.len() / 32),
        dropped: 0,
    };
    let ok = scan.document(out).is_some();
    let Scan {
        names: buf,
        spans,
        fixups,
        dropped,
        ..
    } = scan;
    // Every string value kept has a fixup.
    let count = fixups.len() + dropped;
    // Never fails: the paths are keys cut from the valid text at ASCII quotes, decoded
    // keys and dots.
    *names = String::from_utf8(buf).unwrap_or_default();
    let names: &'a String = names;
    // One slice per distinct name, not per value (the collect reuses `spans`' memory).
    let strs: Vec<&'a str> = spans
        .into_iter()
        .map(|(s, e)| names.get(s..e).unwrap_or_default())
        .collect();
    let values = &mut out[..];
    for (index, name) in fixups {
        // Every value with a fixup was pushed unnamed.
        if let (Some(Cow::Borrowed(slot)), Some(&name)) =
            (values.get_mut(index).map(|v| &mut v.name), strs.get(name))
        {
            *slot = name;
        }
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

/// The scanner's reading of `body`: the number of string values, and every value in
/// order as `(is a key, name, bytes)`; a refused body ends with itself as an unnamed
/// value. Public only for the fuzz targets (hidden from the docs, not part of the API):
/// they check the scanner against `serde_json`, and an engine verdict keeps too little
/// of what was read (64-byte fragments, 64 matches) for that comparison.
#[doc(hidden)]
pub fn scan_for_fuzzing(body: &[u8]) -> (usize, Vec<(bool, String, Vec<u8>)>) {
    let mut names = String::new();
    let mut out = Vec::new();
    let count = json(body, &mut names, &mut out);
    let values = out
        .into_iter()
        .map(|v| {
            (
                v.kind == Kind::BodyArgName,
                v.name.into_owned(),
                v.data.into_owned(),
            )
        })
        .collect();
    (count, values)
}

struct Scan<'a> {
    b: &'a [u8],
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
    /// The number of string values not kept (past `MAX_BODY_VALUES`).
    dropped: usize,
}

/// The name number of a key that named nothing (its value was a number or literal).
const NO_NAME: usize = usize::MAX;
/// A `keys` entry for a key that named nothing.
const NO_KEY: (usize, usize, usize) = (NO_NAME, 0, 0);

/// The parsing functions take the position as an argument and return the position after
/// what they parsed (`None`: not JSON), so that it stays in a register in the loops
/// instead of being stored and reloaded around every push.
impl<'a> Scan<'a> {
    fn document(&mut self, out: &mut Vec<Value<'a>>) -> Option<()> {
        let (c, i) = self.peek(0);
        let i = self.value(out, c, i, 0, 0, 0)?;
        (self.skip_ws(i) == self.b.len()).then_some(())
    }

    /// The byte at `i`, or 0 past the end. A 0 byte is an error wherever the grammar
    /// looks at one (outside strings, and in strings it is a control character), just as
    /// the end is, so one comparison serves for both.
    #[inline(always)]
    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    /// The first byte from `i` on that is not whitespace, and its position. Compact
    /// documents have no whitespace at all, so the common case is one comparison.
    #[inline(always)]
    fn peek(&self, i: usize) -> (u8, usize) {
        let c = self.at(i);
        if c > b' ' {
            return (c, i);
        }
        let i = self.skip_ws(i);
        (self.at(i), i)
    }

    fn skip_ws(&self, mut i: usize) -> usize {
        while let b' ' | b'\t' | b'\n' | b'\r' = self.at(i) {
            i += 1;
        }
        i
    }

    /// The value starting with `c` at `i`, named `name` (a name number). Containers
    /// recurse (one call per container, not per value); scalars are handled here, inline
    /// in the loops. An object's keys start at `keys[base]` (see `object`).
    #[inline(always)]
    fn value(
        &mut self,
        out: &mut Vec<Value<'a>>,
        c: u8,
        i: usize,
        depth: usize,
        name: usize,
        base: usize,
    ) -> Option<usize> {
        match c {
            b'"' => match self.plain_string(i + 1) {
                Ok(data) => {
                    self.emit(out, data, name);
                    Some(i + data.len() + 2)
                }
                Err(end) => {
                    let (data, end) = self.escaped_string(i + 1, end)?;
                    self.emit_owned(out, data, name);
                    Some(end)
                }
            },
            b'{' => self.object(out, i, depth + 1, name, base),
            b'[' => self.array(out, i, depth + 1, name),
            b't' => self.literal(i, b"true"),
            b'f' => self.literal(i, b"false"),
            b'n' => self.literal(i, b"null"),
            _ => self.number(i),
        }
    }

    /// The contents of the string starting at `start` (after its opening quote) if it
    /// has no escape and ends inside the valid UTF-8 text (see `json`), else its first
    /// stop (see `next_string_stop`). Most keys and strings end within their first
    /// block, which is searched inline.
    #[inline(always)]
    fn plain_string(&self, start: usize) -> Result<&'a [u8], usize> {
        let b = self.b;
        if let Some(block) = b
            .get(start..start.wrapping_add(16))
            .and_then(<[u8]>::first_chunk::<16>)
        {
            // 32 if the block has no stop.
            let k = string_stops(block).trailing_zeros() as usize;
            if block.get(k) == Some(&b'"') && start + k <= self.valid {
                return Ok(&block[..k]);
            }
            // The search goes on from the first stop, or after the block: the block is
            // not scanned twice.
            return self.long_plain_string(start, start + k.min(16));
        }
        self.long_plain_string(start, start)
    }

    /// `plain_string` from `from` on, where `start..from` holds no stop.
    #[inline(always)]
    fn long_plain_string(&self, start: usize, from: usize) -> Result<&'a [u8], usize> {
        let b = self.b;
        let p = next_string_stop(b, from);
        match b.get(start..p) {
            Some(s) if b.get(p) == Some(&b'"') && p <= self.valid => Ok(s),
            _ => Err(p),
        }
    }

    /// Adds a string value named `name` (a name number).
    #[inline(always)]
    fn emit(&mut self, out: &mut Vec<Value<'a>>, data: &'a [u8], name: usize) {
        if out.len() < MAX_BODY_VALUES {
            self.fixups.push((out.len(), name));
            push(out, Kind::BodyArg, data);
        } else {
            self.dropped += 1;
        }
    }

    #[cold]
    fn emit_owned(&mut self, out: &mut Vec<Value<'a>>, data: Vec<u8>, name: usize) {
        if out.len() < MAX_BODY_VALUES {
            self.fixups.push((out.len(), name));
            push_owned(out, Kind::BodyArg, data);
        } else {
            self.dropped += 1;
        }
    }

    /// The name number of the path `parent.key` for the key at `keys[slot]`: the one
    /// already there if it is the same key (the previous object of the same array had
    /// it at the same place, so the same parent too), else a path written now. `at` is
    /// where the key's bytes start in the body, if they are borrowed from it.
    #[inline(always)]
    fn key_name(&mut self, parent: usize, key: &[u8], at: Option<usize>, slot: usize) -> usize {
        if let (Some(at), Some(&entry)) = (at, self.keys.get(slot)) {
            if entry.0 != NO_NAME && self.same_key(entry, at, key.len()) {
                return entry.0;
            }
        }
        self.new_name(parent, key, at, slot)
    }

    /// `key_name` for a key not seen at `slot` before: writes its path.
    fn new_name(&mut self, parent: usize, key: &[u8], at: Option<usize>, slot: usize) -> usize {
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

    /// An object at `i` named `parent`, whose keys' entries go from `keys[base]` on. An
    /// object of an array starts where the array's previous object started, so the
    /// entries it finds there (up to `keys`' length on entry) are that object's.
    fn object(
        &mut self,
        out: &mut Vec<Value<'a>>,
        i: usize,
        depth: usize,
        parent: usize,
        base: usize,
    ) -> Option<usize> {
        if depth > MAX_DEPTH {
            return None;
        }
        let (mut c, mut i) = self.peek(i + 1);
        if c == b'}' {
            return Some(i + 1);
        }
        // For the check at the end only (the release build keeps no trace of it).
        #[cfg(debug_assertions)]
        let previous = self.keys.len();
        let mut slot = base;
        loop {
            if c != b'"' {
                return None;
            }
            let (v, j, name) = match self.plain_string(i + 1) {
                Ok(key) => {
                    let (v, j) = self.member_value(i + key.len() + 2)?;
                    let name = self.member_name(v, parent, key, Some(i + 1), slot);
                    if out.len() < MAX_BODY_VALUES {
                        push(out, Kind::BodyArgName, key);
                    }
                    (v, j, name)
                }
                Err(end) => self.escaped_key(out, i + 1, end, parent, slot)?,
            };
            slot += 1;
            // A nested object's entries go after this one's (and after the previous
            // object's, which the next keys may still find).
            let nested = self.keys.len();
            let j = self.value(out, v, j, depth, name, nested)?;
            self.keys.truncate(nested);
            match self.peek(j) {
                (b',', j) => (c, i) = self.peek(j + 1),
                (b'}', j) => {
                    #[cfg(debug_assertions)]
                    assert!(self.keys.len() == previous.max(slot));
                    return Some(j + 1);
                }
                _ => return None,
            }
        }
    }

    /// The first byte of a member's value and its position, from `i` just after the
    /// key's closing quote.
    #[inline(always)]
    fn member_value(&self, i: usize) -> Option<(u8, usize)> {
        let (colon, i) = self.peek(i);
        if colon != b':' {
            return None;
        }
        Some(self.peek(i + 1))
    }

    /// The name number for a member whose value starts with `v`: only strings and
    /// containers are named by the path (numbers and literals need no name).
    #[inline(always)]
    fn member_name(
        &mut self,
        v: u8,
        parent: usize,
        key: &[u8],
        at: Option<usize>,
        slot: usize,
    ) -> usize {
        if let b'"' | b'{' | b'[' = v {
            self.key_name(parent, key, at, slot)
        } else {
            // An entry already there is the previous object's, still right for it.
            if slot == self.keys.len() {
                self.keys.push(NO_KEY);
            }
            0
        }
    }

    /// The key-and-colon part of an object's loop for a key whose first stop, at `end`,
    /// is not its closing quote: as there, but with the key decoded.
    #[cold]
    fn escaped_key(
        &mut self,
        out: &mut Vec<Value<'a>>,
        start: usize,
        end: usize,
        parent: usize,
        slot: usize,
    ) -> Option<(u8, usize, usize)> {
        let (key, after) = self.escaped_string(start, end)?;
        let (v, j) = self.member_value(after)?;
        let name = self.member_name(v, parent, &key, None, slot);
        if out.len() < MAX_BODY_VALUES {
            push_owned(out, Kind::BodyArgName, key);
        }
        Some((v, j, name))
    }

    /// An array at `i` named `name`: its items are named by it too.
    fn array(
        &mut self,
        out: &mut Vec<Value<'a>>,
        i: usize,
        depth: usize,
        name: usize,
    ) -> Option<usize> {
        if depth > MAX_DEPTH {
            return None;
        }
        let (mut c, mut i) = self.peek(i + 1);
        if c == b']' {
            return Some(i + 1);
        }
        // Each object of the array starts its keys here, where the previous one did.
        let base = self.keys.len();
        loop {
            let j = self.value(out, c, i, depth, name, base)?;
            match self.peek(j) {
                (b',', j) => (c, i) = self.peek(j + 1),
                (b']', j) => {
                    self.keys.truncate(base);
                    return Some(j + 1);
                }
                _ => return None,
            }
        }
    }

    #[inline(always)]
    fn literal(&self, i: usize, word: &[u8]) -> Option<usize> {
        (self.b.get(i..i + word.len())? == word).then_some(i + word.len())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` at `i`.
    fn number(&self, mut i: usize) -> Option<usize> {
        let digits = |mut i: usize| {
            while self.at(i).is_ascii_digit() {
                i += 1;
            }
            i
        };
        if self.at(i) == b'-' {
            i += 1;
        }
        match self.at(i) {
            b'0' => i += 1,
            b'1'..=b'9' => i = digits(i + 1),
            _ => return None,
        }
        if self.at(i) == b'.' {
            if !self.at(i + 1).is_ascii_digit() {
                return None;
            }
            i = digits(i + 2);
        }
        if self.at(i) | 0x20 == b'e' {
            i += 1;
            if let b'+' | b'-' = self.at(i) {
                i += 1;
            }
            if !self.at(i).is_ascii_digit() {
                return None;
            }
            i = digits(i + 1);
        }
        Some(i)
    }

    /// The rest of a string starting at `start` whose first stop, at `p`, is not a
    /// closing quote inside the valid text: decodes its escapes, or rejects it. Returns
    /// the contents and the position after the closing quote.
    #[cold]
    fn escaped_string(&self, start: usize, mut p: usize) -> Option<(Vec<u8>, usize)> {
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
        Some((v, p + 1))
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
#[cfg(any(test, not(target_arch = "x86_64")))]
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
fn push<'a>(out: &mut Vec<Value<'a>>, kind: Kind, data: &'a [u8]) {
    push_value(out, kind, Cow::Borrowed(""), Cow::Borrowed(data));
}

/// `push` for decoded contents (escapes are rare).
#[cold]
fn push_owned<'a>(out: &mut Vec<Value<'a>>, kind: Kind, data: Vec<u8>) {
    out.push(Value {
        kind,
        name: Cow::Borrowed(""),
        data: Cow::Owned(data),
    });
}

fn hex4(h: &[u8]) -> Option<u32> {
    h.iter().try_fold(0u32, |acc, &c| {
        let d = (c as char).to_digit(16)?;
        Some(acc * 16 + d)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    fn scan(body: &str) -> (usize, Vec<(Kind, String, String)>) {
        let mut names = String::new();
        let mut out = Vec::new();
        let n = json(body.as_bytes(), &mut names, &mut out);
        let v = out
            .into_iter()
            .map(|v| {
                (
                    v.kind,
                    v.name.into_owned(),
                    String::from_utf8_lossy(&v.data).into_owned(),
                )
            })
            .collect();
        (n, v)
    }

    #[test]
    fn names_follow_key_paths_and_arrays() {
        let (n, v) =
            scan(r#" {"a":{"b":"x","c":["y",{"d":"z"}],"n":-1.5e3,"t":true},"e":"w","z":null} "#);
        assert_eq!(n, 4);
        assert!(v.contains(&(Kind::BodyArg, "a.b".into(), "x".into())));
        assert!(v.contains(&(Kind::BodyArg, "a.c".into(), "y".into())));
        assert!(v.contains(&(Kind::BodyArg, "a.c.d".into(), "z".into())));
        assert!(v.contains(&(Kind::BodyArg, "e".into(), "w".into())));
        assert!(v.contains(&(Kind::BodyArgName, "".into(), "n".into())));
    }

    #[test]
    fn escapes_are_decoded() {
        let (_, v) = scan(r#"{"k\u0041":"a\"b\\c\/d\n\u00e9\ud83d\ude00"}"#);
        assert!(v.contains(&(Kind::BodyArgName, "".into(), "kA".into())));
        assert!(v.contains(&(Kind::BodyArg, "kA".into(), "a\"b\\c/d\né😀".into())));
    }

    #[test]
    fn malformed_documents_fall_back_to_the_whole_body() {
        for bad in [
            "{\"a\": [1, 2",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"tab\there\"}",
            "{\"a\":tru}",
            "{\"a\":1} x",
            "{'a':1}",
            "[1,]",
        ] {
            let (_, v) = scan(bad);
            assert!(
                v.iter()
                    .any(|(k, n, d)| *k == Kind::BodyArg && n.is_empty() && d == bad),
                "{bad:?} was accepted: {v:?}"
            );
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        let (_, v) = scan(&deep);
        assert_eq!(v.len(), 1);
        let ok = "[".repeat(100) + &"]".repeat(100);
        assert!(scan(&ok).1.is_empty());
    }

    #[test]
    fn string_stops_are_found_at_every_offset() {
        for stop in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for len in 0..20 {
                for at in 0..len {
                    let mut b = vec![b'a'; len];
                    b[at] = stop;
                    for from in 0..=at {
                        assert_eq!(next_string_stop(&b, from), at, "{stop} {len} {at}");
                    }
                    assert_eq!(next_string_stop(&b, at + 1), b.len());
                }
            }
        }
        let plain: Vec<u8> = (0x20..=0xffu8)
            .filter(|&c| c != b'"' && c != b'\\')
            .collect();
        assert_eq!(next_string_stop(&plain, 0), plain.len());
    }

    #[test]
    fn invalid_utf8_is_not_json() {
        let mut names = String::new();
        let mut out = Vec::new();
        json(b"{\"a\":\"\xff\"}", &mut names, &mut out);
        assert_eq!(
            out.last().map(|v| v.data.as_ref()),
            Some(&b"{\"a\":\"\xff\"}"[..])
        );
    }

    /// Values as owned tuples, from raw bytes (`scan` takes text).
    fn scan_bytes(body: &[u8]) -> (usize, Vec<(Kind, String, Vec<u8>)>) {
        let mut names = String::new();
        let mut out = Vec::new();
        let n = json(body, &mut names, &mut out);
        let v = out
            .into_iter()
            .map(|v| (v.kind, v.name.into_owned(), v.data.into_owned()))
            .collect();
        (n, v)
    }

    /// What `serde_json` reads from `body` as this scanner reports it, or `None` if
    /// `serde_json` refuses the body.
    fn serde_values(body: &[u8]) -> Option<Vec<(Kind, String, Vec<u8>)>> {
        let reading = super::json_oracle::serde_reading(body).ok()?;
        let kind = |key| {
            if key {
                Kind::BodyArgName
            } else {
                Kind::BodyArg
            }
        };
        Some(
            reading
                .into_iter()
                .map(|(key, name, data)| (kind(key), name, data))
                .collect(),
        )
    }

    /// Checks the scanner against `serde_json` on `body`: the same values in the same
    /// order when it accepts, the whole body as the last value when it refuses.
    fn agrees_with_serde(body: &[u8]) {
        let (n, ours) = scan_bytes(body);
        match serde_values(body) {
            Some(theirs) => {
                assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(body));
                let strings = theirs.iter().filter(|v| v.0 == Kind::BodyArg).count();
                assert_eq!(n, strings, "{:?}", String::from_utf8_lossy(body));
            }
            None => {
                let last = ours.last().expect("the fallback value");
                assert_eq!(
                    (last.0, last.1.as_str(), last.2.as_slice()),
                    (Kind::BodyArg, "", body),
                    "{:?} was accepted: {ours:?}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    #[test]
    fn string_stops_match_a_byte_by_byte_reference() {
        let reference = |block: &[u8; 16]| {
            (0..16).fold(0u32, |m, k| {
                let c = block[k];
                m | u32::from(c == b'"' || c == b'\\' || c < 0x20) << k
            })
        };
        for at in 0..16 {
            for c in 0..=255u8 {
                for fill in [b'a', 0xff, 0x80, b' ', b'!'] {
                    let mut block = [fill; 16];
                    block[at] = c;
                    assert_eq!(string_stops(&block), reference(&block), "{c} at {at}");
                    assert_eq!(
                        string_stops_portable(&block),
                        reference(&block),
                        "{c} at {at}"
                    );
                }
            }
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let interesting = [
            b'"', b'\\', 0, 0x1f, 0x20, 0x21, 0x5b, 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff,
        ];
        for _ in 0..20_000 {
            let mut block = [0u8; 16];
            for c in &mut block {
                *c = if rng.below(2) == 0 {
                    interesting[rng.below(interesting.len())]
                } else {
                    rng.next() as u8
                };
            }
            assert_eq!(string_stops(&block), reference(&block), "{block:?}");
            assert_eq!(
                string_stops_portable(&block),
                reference(&block),
                "{block:?}"
            );
        }
    }

    /// Strings whose end, escape or forbidden byte falls at every offset from a 16-byte
    /// block boundary, for every alignment of the string in the body, and at the body's
    /// end (where the last block is padded).
    #[test]
    fn strings_are_read_at_every_offset_and_alignment() {
        let specials: [&[u8]; 12] = [
            b"",
            b"\\n",
            b"\\\"",
            b"\\\\",
            b"\\u00e9",
            b"\\ud83d\\ude00",
            "é".as_bytes(),
            "€".as_bytes(),
            "😀".as_bytes(),
            b"\t",
            b"\x00",
            b"\x1f",
        ];
        for pad in 0..17 {
            for before in 0..34 {
                for special in specials {
                    for after in [0, 1, 7, 15, 16, 17] {
                        let mut s = vec![b'x'; before];
                        s.extend_from_slice(special);
                        s.extend(std::iter::repeat_n(b'y', after));
                        // A key and a string value, and a string at the very end.
                        let mut body = b" ".repeat(pad);
                        body.extend_from_slice(b"{\"");
                        body.extend_from_slice(&s);
                        body.extend_from_slice(b"\":\"");
                        body.extend_from_slice(&s);
                        body.extend_from_slice(b"\"}");
                        agrees_with_serde(&body);
                        let mut body = b" ".repeat(pad);
                        body.push(b'"');
                        body.extend_from_slice(&s);
                        body.push(b'"');
                        agrees_with_serde(&body);
                        // Unterminated.
                        body.pop();
                        agrees_with_serde(&body);
                    }
                }
            }
        }
    }

    /// Invalid UTF-8 at every position of a document: the strings before it are still
    /// inspected by name, and the body falls back to one value.
    #[test]
    fn invalid_utf8_at_every_position() {
        let doc = r#"{"first":"a plain value","é key":["x","ünïcødé value 😀"],"n":1,"last":"z"}"#;
        for bad in [
            &b"\xff"[..],
            b"\xc3",
            b"\xe2\x82",
            b"\xed\xa0\x80",
            b"\xc0\xaf",
            b"\xf4\x90\x80\x80",
        ] {
            for at in 0..=doc.len() {
                let mut body = doc.as_bytes()[..at].to_vec();
                body.extend_from_slice(bad);
                body.extend_from_slice(&doc.as_bytes()[at..]);
                agrees_with_serde(&body);
                let (_, v) = scan_bytes(&body);
                // Every string that ends before the bad byte is kept.
                let before = serde_values(&doc.as_bytes()[..at]).unwrap_or_default();
                assert!(before.iter().all(|b| v.contains(b)));
                assert_eq!(v.last().map(|v| v.2.as_slice()), Some(body.as_slice()));
            }
        }
    }

    #[test]
    fn empty_strings_and_keys() {
        agrees_with_serde(br#"{"":"","a":{"":[""]},"b":[]}"#);
        let (n, v) = scan(r#"{"":{"a":""}}"#);
        assert_eq!(n, 1);
        assert_eq!(v[2], (Kind::BodyArg, "a".into(), "".into()));
    }

    #[test]
    fn nesting_depth() {
        for depth in [1, 2, 64, 127, 128, 129, 200] {
            let arrays = "[".repeat(depth) + "\"s\"" + &"]".repeat(depth);
            let objects = "{\"k\":".repeat(depth) + "\"s\"" + &"}".repeat(depth);
            for doc in [arrays, objects] {
                let (n, v) = scan(&doc);
                if depth <= MAX_DEPTH {
                    assert_eq!(n, 1, "{depth}");
                    assert_eq!(v.last().map(|v| v.2.as_str()), Some("s"));
                } else {
                    assert_eq!(v.last().map(|v| v.2.as_str()), Some(doc.as_str()));
                }
                if depth < MAX_DEPTH {
                    agrees_with_serde(doc.as_bytes());
                } else {
                    // serde_json stops at 128 open containers; we at 129.
                    assert!(serde_values(doc.as_bytes()).is_none(), "{depth}");
                }
            }
        }
        let (_, v) = scan(&("{\"a\":".repeat(3) + "[\"x\",{\"b\":\"y\"},\"z\"]" + &"}".repeat(3)));
        let names: Vec<_> = v
            .iter()
            .filter(|v| v.0 == Kind::BodyArg)
            .map(|v| v.1.as_str())
            .collect();
        assert_eq!(names, ["a.a.a", "a.a.a.b", "a.a.a"]);
    }

    /// A random JSON value whose objects draw their keys from a few similar ones (equal
    /// but for one byte, the same with escapes, empty, longer than a word or a block),
    /// mostly in arrays of objects: the objects of an array reuse the key paths the
    /// previous one wrote, and that must never give a value the wrong name.
    fn similar_keys_value(rng: &mut Rng, depth: usize, out: &mut String) {
        const KEYS: [&str; 12] = [
            "sku",
            "skv",
            "sk",
            "skuu",
            "",
            "s\\u006bu",
            "name",
            "tags",
            "a_key_of_twelve",
            "a_key_of_twelvE",
            "a key longer than one block",
            "a key longer than one blocK",
        ];
        match rng.below(if depth > 3 { 3 } else { 6 }) {
            0 => {
                out.push_str(["\"x\"", "\"\"", "\"y\\n\"", "\"zzzzzzzzzzzzzzzzzz\""][rng.below(4)])
            }
            1 => out.push_str(["1", "-2.5", "true", "null"][rng.below(4)]),
            2 => out.push_str(["[]", "{}"][rng.below(2)]),
            3 | 4 => {
                out.push('[');
                for i in 0..rng.below(5) {
                    if i > 0 {
                        out.push(',');
                    }
                    if rng.below(4) == 0 {
                        similar_keys_value(rng, depth + 1, out);
                    } else {
                        similar_keys_object(rng, depth + 1, out);
                    }
                }
                out.push(']');
            }
            _ => similar_keys_object(rng, depth + 1, out),
        }

        fn similar_keys_object(rng: &mut Rng, depth: usize, out: &mut String) {
            out.push('{');
            for i in 0..rng.below(6) {
                if i > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(KEYS[rng.below(KEYS.len())]);
                out.push_str("\":");
                similar_keys_value(rng, depth, out);
            }
            out.push('}');
        }
    }

    #[test]
    fn arrays_of_objects_with_similar_keys_agree_with_serde_json() {
        let mut rng = Rng(0x5851_f42d_4c95_7f2d);
        for _ in 0..20_000 {
            let mut doc = String::new();
            similar_keys_value(&mut rng, 0, &mut doc);
            agrees_with_serde(doc.as_bytes());
            // The same at the very end of a body, where a key's words would overrun it.
            let key_last = format!("[{doc},{{\"sk\":\"x\"}},{{\"sk\":\"y\"}}]");
            agrees_with_serde(key_last.as_bytes());
        }
    }

    #[test]
    fn is_ascii_agrees_with_the_standard_library() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for len in 0..300 {
            for _ in 0..20 {
                let mut b: Vec<u8> = (0..len).map(|_| rng.below(0x80) as u8).collect();
                assert!(is_ascii(&b));
                if len > 0 {
                    b[rng.below(len)] |= 0x80;
                }
                assert_eq!(is_ascii(&b), b.is_ascii(), "{b:?}");
            }
        }
    }

    /// Generated documents and their mutations (bytes flipped, inserted, deleted,
    /// repeated) read as `serde_json` reads them, or fall back when it refuses them.
    #[test]
    fn agrees_with_serde_json_on_mutated_documents() {
        let seeds: &[&[u8]] = &[
            br#"{"order":{"id":"ORD-1","customer":{"name":"Ana O'Neil","email":"a+b@example.com"},"items":[{"sku":"SKU-1","qty":1,"price":49.9,"tags":["a","b","size-36"],"note":"please don't ring the bell; leave it at the door"}],"ok":true,"none":null}}"#,
            br#"[1,-0,0.5,-1.25e+10,3E-2,"\u00e9\ud83d\ude00\n\t\"\\\/\b\f\r",[],{},[[{}]],{"":""}]"#,
            "{\"k\u{e9}y\":\"v\u{e0}l\u{fc}\u{e9} \u{20ac} \u{1f600}\",\"a b\":[\"x\",\"y\"]}".as_bytes(),
            b"  {\n  \"pretty\" : [\r\n    \"printed\" ,\t\"json\"\n  ]\n}\n",
        ];
        let alphabet =
            b"\"\\{}[]:,0123456789eE+-.tfnul \t\n\r/bu\x00\x1f\x7f\x80\xbf\xc3\xe2\xed\xf0\xffax";
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for seed in seeds {
            agrees_with_serde(seed);
        }
        for _ in 0..30_000 {
            let mut body = seeds[rng.below(seeds.len())].to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(body.len() + 1);
                match rng.below(5) {
                    0 if at < body.len() => body[at] = alphabet[rng.below(alphabet.len())],
                    1 => body.insert(at, alphabet[rng.below(alphabet.len())]),
                    2 if at < body.len() => {
                        body.remove(at);
                    }
                    3 => {
                        let end = (at + rng.below(24)).min(body.len());
                        let piece = body[at..end].to_vec();
                        body.splice(at..at, piece);
                    }
                    _ => {
                        let end = (at + rng.below(24)).min(body.len());
                        body.truncate(at.max(end));
                    }
                }
            }
            // serde_json refuses numbers beyond f64 (1e400), which JSON allows.
            let huge = serde_json::from_slice::<serde_json::Value>(&body)
                .err()
                .is_some_and(|e| e.to_string().contains("number out of range"));
            if !huge {
                agrees_with_serde(&body);
            }
        }
    }
}
