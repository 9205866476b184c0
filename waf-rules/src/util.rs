//! Small helpers shared by the engine and operators.

/// Renders at most `max` bytes of `bytes` as text, cut on a character boundary, with
/// invalid UTF-8 and control characters escaped so a fragment is safe to log.
pub(crate) fn fragment(bytes: &[u8], max: usize) -> String {
    let cut = &bytes[..bytes.len().min(max)];
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
