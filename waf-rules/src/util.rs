//! Small helpers shared by the engine and operators.

/// Renders at most `max` bytes of `bytes` as text, cut on a character boundary, with
/// invalid UTF-8 and control characters escaped so a fragment is safe to log.
pub(crate) fn fragment(bytes: &[u8], max: usize) -> String {
    let mut end = bytes.len().min(max);
    // A cut inside a character would show it as U+FFFD in the audit log: end before it
    // (UTF-8 continuation bytes are 0b10xxxxxx, at most three of them per character).
    if end < bytes.len() {
        let lead = (end.saturating_sub(3)..=end)
            .rev()
            .find(|&i| bytes[i] & 0xC0 != 0x80);
        if let Some(i) = lead {
            let len = match bytes[i] {
                0xF0.. => 4,
                0xE0.. => 3,
                0xC0.. => 2,
                _ => 1,
            };
            if i + len > end {
                end = i;
            }
        }
    }
    let cut = &bytes[..end];
    let text = String::from_utf8_lossy(cut);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Offset of the first `%` not followed by two hex digits or `u` and four hex digits.
pub(crate) fn invalid_url_encoding(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = memchr::memchr(b'%', &data[from..]) {
        let i = from + p;
        let rest = &data[i + 1..];
        let ok = (rest.len() >= 2 && rest[0].is_ascii_hexdigit() && rest[1].is_ascii_hexdigit())
            || (rest.len() >= 5
                && matches!(rest[0], b'u' | b'U')
                && rest[1..5].iter().all(u8::is_ascii_hexdigit));
        if !ok {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// Whether two short byte strings are equal, compared eight bytes at a time in line.
/// The values, names and JSON keys compared with it are a few dozen bytes; measured on this project's
/// machine, the C library's `memcmp` spent about 7 % of a JSON inspection's time on them
/// (masked vector loads), against a handful of instructions here. The tail is compared
/// as words too, read as `value_hash` reads it (overlapping), not a byte at a time.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n >= 8 {
        let mut left = a.chunks_exact(8);
        let mut right = b.chunks_exact(8);
        for (x, y) in (&mut left).zip(&mut right) {
            if word(x) != word(y) {
                return false;
            }
        }
        left.remainder().is_empty() || word(&a[n - 8..]) == word(&b[n - 8..])
    } else if n >= 4 {
        half(a) == half(b) && half(&a[n - 4..]) == half(&b[n - 4..])
    } else {
        // The first, middle and last bytes are all of them.
        n == 0 || (a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1])
    }
}

/// The first eight bytes of `bytes` as a word.
pub(crate) fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(w)
}

/// The first four bytes of `bytes` as a word.
pub(crate) fn half(bytes: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::fragment;

    #[test]
    fn fragments_end_before_a_character_the_cut_would_split() {
        let text = "aé€😀";
        let bytes = text.as_bytes();
        for max in 0..=bytes.len() + 1 {
            let f = fragment(bytes, max);
            assert!(!f.contains('\u{fffd}'), "{max}: {f:?}");
            assert!(text.starts_with(&f) && f.len() <= max, "{max}: {f:?}");
        }
        assert_eq!(fragment(bytes, 2), "a");
        assert_eq!(fragment(bytes, 3), "aé");
        // Bytes that are not UTF-8 are still shown, escaped or replaced.
        assert_eq!(fragment(b"a\x80\x80b", 2), "a\u{fffd}");
        assert_eq!(fragment(b"\xe2\x82\xacb", 2), "");
        assert_eq!(fragment(b"x\ny", 64), "x\\ny");
    }

    #[test]
    fn same_bytes_agrees_with_slice_equality() {
        let base: Vec<u8> = (0..40u8).collect();
        for len in 0..40 {
            let a = &base[..len];
            assert!(super::same_bytes(a, a));
            assert!(!super::same_bytes(a, &base[..len + 1]));
            for at in 0..len {
                let mut b = a.to_vec();
                b[at] ^= 0x20;
                assert!(!super::same_bytes(a, &b), "{len} {at}");
            }
        }
    }
}
