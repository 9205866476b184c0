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
}
