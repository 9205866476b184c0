//! A validating JSON scanner that borrows everything it can.
//!
//! Every string becomes a value named by its dotted key path (array items take their
//! array's name); every key is also inspected as a name. Numbers, booleans and null cannot
//! carry an attack and are skipped. Unlike a general deserializer it allocates nothing per
//! value: strings without escapes borrow the body, and the key paths are written once each
//! into one per-request buffer (`names`) that the values then borrow, so the ~100 strings
//! of a 4 KB document cost no allocation each.
//!
//! The grammar is checked as strictly as `serde_json` does (numbers, escapes, UTF-8,
//! nesting depth, nothing after the document), so a body that is not JSON falls back to
//! being inspected as one value exactly as before.

use std::borrow::Cow;

use crate::request::{Kind, Value, MAX_BODY_VALUES};

/// Deepest nesting accepted (as `serde_json`): deeper documents are not JSON to us, so a
/// hostile body cannot exhaust the stack.
const MAX_DEPTH: usize = 128;

/// Parses `body` as JSON into `out`; returns the number of string values. On malformed
/// input, what parsed is kept and the whole body is added as one unnamed argument.
pub(crate) fn json<'a>(body: &'a [u8], names: &'a mut String, out: &mut Vec<Value<'a>>) -> usize {
    let start = out.len();
    names.clear();
    // JSON text is UTF-8 (RFC 8259). A body valid as a whole is checked once here, so
    // its strings, which start and end at ASCII quotes, need no check of their own; in
    // any other body each string is checked, so what parses before a bad byte is still
    // inspected by name.
    let text = std::str::from_utf8(body).ok();
    // Sized for a typical document (a key or string every dozen bytes or so) so that
    // neither grows more than once or twice.
    names.reserve(body.len() / 2);
    let mut scan = Scan {
        b: body,
        i: 0,
        path: String::with_capacity(64),
        names,
        emitted: None,
        fixups: Vec::with_capacity(body.len() / 16),
        count: 0,
        text,
        borrowed: (0, 0),
    };
    let ok = scan.document(out).is_some();
    let Scan {
        names,
        fixups,
        count,
        ..
    } = scan;
    let names: &'a str = names;
    for (index, s, e) in fixups {
        out[index].name = Cow::Borrowed(&names[s..e]);
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
    i: usize,
    /// The dotted key path of the current position.
    path: String,
    /// Every key path a value was named by, back to back.
    names: &'a mut String,
    /// Range in `names` holding the current `path`, while it is unchanged since written.
    emitted: Option<(usize, usize)>,
    /// (index in `out`, range in `names`) of values whose name is set once parsing ends.
    fixups: Vec<(usize, usize, usize)>,
    count: usize,
    /// The whole body, when it is valid UTF-8.
    text: Option<&'a str>,
    /// The range in the body of the last string `string` borrowed.
    borrowed: (usize, usize),
}

impl<'a> Scan<'a> {
    fn document(&mut self, out: &mut Vec<Value<'a>>) -> Option<()> {
        self.value(out, 0)?;
        self.skip_ws();
        (self.i == self.b.len()).then_some(())
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn value(&mut self, out: &mut Vec<Value<'a>>, depth: usize) -> Option<()> {
        self.skip_ws();
        match *self.b.get(self.i)? {
            b'{' => self.object(out, depth + 1),
            b'[' => self.array(out, depth + 1),
            b'"' => {
                let data = self.string()?;
                self.count += 1;
                if out.len() < MAX_BODY_VALUES {
                    let (s, e) = match self.emitted {
                        Some(r) => r,
                        None => {
                            let s = self.names.len();
                            self.names.push_str(&self.path);
                            let r = (s, self.names.len());
                            self.emitted = Some(r);
                            r
                        }
                    };
                    self.fixups.push((out.len(), s, e));
                    out.push(Value {
                        kind: Kind::BodyArg,
                        name: Cow::Borrowed(""),
                        data,
                    });
                }
                Some(())
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    fn object(&mut self, out: &mut Vec<Value<'a>>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.skip_ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Some(());
        }
        loop {
            self.skip_ws();
            if self.b.get(self.i) != Some(&b'"') {
                return None;
            }
            let key = self.string()?;
            self.skip_ws();
            if self.b.get(self.i) != Some(&b':') {
                return None;
            }
            self.i += 1;
            let saved = self.path.len();
            if !self.path.is_empty() {
                self.path.push('.');
            }
            // `string` validated the key as UTF-8; a key borrowed from a body valid as a
            // whole is cut from its text at ASCII quotes, without a second check.
            let key_text = match (&key, self.text) {
                (Cow::Borrowed(_), Some(text)) => text.get(self.borrowed.0..self.borrowed.1)?,
                _ => std::str::from_utf8(&key).ok()?,
            };
            self.path.push_str(key_text);
            self.emitted = None;
            if out.len() < MAX_BODY_VALUES {
                out.push(Value {
                    kind: Kind::BodyArgName,
                    name: Cow::Borrowed(""),
                    data: key,
                });
            }
            self.value(out, depth)?;
            self.path.truncate(saved);
            self.emitted = None;
            self.skip_ws();
            match self.b.get(self.i)? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, out: &mut Vec<Value<'a>>, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.skip_ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Some(());
        }
        loop {
            self.value(out, depth)?;
            self.skip_ws();
            match self.b.get(self.i)? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
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
    fn string(&mut self) -> Option<Cow<'a, [u8]>> {
        let b = self.b;
        let start = self.i + 1;
        let mut i = start;
        let mut owned: Option<Vec<u8>> = None;
        let mut run = start;
        loop {
            let p = next_string_stop(b, i)?;
            if b[p] < 0x20 {
                return None;
            }
            let end_run = p;
            if self.text.is_none() {
                std::str::from_utf8(&b[run..end_run]).ok()?;
            }
            if b[p] == b'"' {
                self.i = p + 1;
                return Some(match owned {
                    None => {
                        self.borrowed = (start, p);
                        Cow::Borrowed(&b[start..p])
                    }
                    Some(mut v) => {
                        v.extend_from_slice(&b[run..end_run]);
                        Cow::Owned(v)
                    }
                });
            }
            let v = owned.get_or_insert_with(|| Vec::with_capacity(p - start + 16));
            v.extend_from_slice(&b[run..end_run]);
            i = p + 1;
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
        }
    }
}

/// Bytes that end a run of plain string content: the closing quote, a backslash, and the
/// control characters JSON forbids unescaped.
static STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The first byte at or after `from` that ends a run of plain string content. Eight bytes
/// at a time (a quote, a backslash or a control byte in a word, found with carry-free
/// byte arithmetic), then a table for the last few: JSON strings are short, and a vector
/// search's set-up would cost more than this per run.
fn next_string_stop(b: &[u8], from: usize) -> Option<usize> {
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Per byte, the high bit is set iff the byte is zero (no carry crosses a byte).
    let zero = |x: u64| !(((x & LOW) + LOW) | x) & HIGH;
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // High bit set iff the byte is below 0x20.
        let control = !(((w & LOW) + 0x6060_6060_6060_6060) | w) & HIGH;
        let stops = zero(w ^ 0x2222_2222_2222_2222) | zero(w ^ 0x5c5c_5c5c_5c5c_5c5c) | control;
        if stops != 0 {
            return Some(i + (stops.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| STRING_STOP[usize::from(c)])
        .map(|p| i + p)
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
                        assert_eq!(next_string_stop(&b, from), Some(at), "{stop} {len} {at}");
                    }
                    assert_eq!(next_string_stop(&b, at + 1), None);
                }
            }
        }
        let plain: Vec<u8> = (0x20..=0xffu8)
            .filter(|&c| c != b'"' && c != b'\\')
            .collect();
        assert_eq!(next_string_stop(&plain, 0), None);
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
}
