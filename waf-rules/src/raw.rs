//! A lenient parser of raw HTTP/1.x requests (files for `palisadectl waf test`, corpus
//! replays). It never panics on hostile input; what it cannot read it reports.

use crate::request::Request;

/// Why a raw request could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RawError {
    #[error("empty request")]
    Empty,
    #[error("request line {0:?} is not `METHOD TARGET [HTTP/x.y]`")]
    RequestLine(String),
    #[error("header line {line} has no `:` ({text:?})")]
    Header { line: usize, text: String },
}

/// A request owned in memory; `view` borrows it for the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedRequest {
    pub method: String,
    /// Origin-form target (`/path?query`); absolute-form targets are reduced to it.
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl OwnedRequest {
    /// The borrowed view the engine inspects.
    pub fn view(&self) -> Request<'_> {
        let mut req = Request::new(&self.method, &self.target);
        req.headers = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        req.body = &self.body;
        req
    }
}

/// Parses a raw request. Lines may end in CRLF or LF. The body is cut at Content-Length,
/// de-chunked for `Transfer-Encoding: chunked` (a broken chunk keeps what decoded), or
/// runs to the end.
pub fn parse(bytes: &[u8]) -> Result<OwnedRequest, RawError> {
    let mut rest = bytes;
    // Tolerate blank lines before the request line, as servers do.
    while let Some(r) = rest
        .strip_prefix(b"\r\n")
        .or_else(|| rest.strip_prefix(b"\n"))
    {
        rest = r;
    }
    if rest.is_empty() {
        return Err(RawError::Empty);
    }
    let (line, after) = split_line(rest);
    rest = after;
    let text = String::from_utf8_lossy(line);
    let mut parts = text.split_ascii_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(RawError::RequestLine(text.chars().take(80).collect()));
    };
    let mut req = OwnedRequest {
        method: method.to_string(),
        target: origin_form(target),
        ..OwnedRequest::default()
    };
    let mut n = 1;
    loop {
        if rest.is_empty() {
            break;
        }
        let (line, after) = split_line(rest);
        rest = after;
        n += 1;
        if line.is_empty() {
            break;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return Err(RawError::Header {
                line: n,
                text: String::from_utf8_lossy(line).chars().take(80).collect(),
            });
        };
        let name = String::from_utf8_lossy(line[..colon].trim_ascii()).into_owned();
        req.headers
            .push((name, line[colon + 1..].trim_ascii().to_vec()));
    }
    let chunked = req.headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(v)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    let length = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok());
    req.body = if chunked {
        dechunk(rest)
    } else if let Some(len) = length {
        rest[..len.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(req)
}

fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'\n', bytes) {
        Some(i) => {
            let line = &bytes[..i];
            (line.strip_suffix(b"\r").unwrap_or(line), &bytes[i + 1..])
        }
        None => (bytes, &[]),
    }
}

fn origin_form(target: &str) -> String {
    for scheme in ["http://", "https://"] {
        // Compared as bytes: the target is any text, and its first `scheme.len()` bytes
        // may end inside a character. When they match, the cut after them is on a
        // character boundary, as the scheme is ASCII.
        if target.len() > scheme.len()
            && target.as_bytes()[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
        {
            let after = &target[scheme.len()..];
            return match after.find(['/', '?']) {
                Some(i) if after.as_bytes()[i] == b'/' => after[i..].to_string(),
                Some(i) => format!("/{}", &after[i..]),
                None => "/".to_string(),
            };
        }
    }
    target.to_string()
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let (line, after) = split_line(rest);
        let size_text = line.split(|&b| b == b';').next().unwrap_or(b"");
        let Some(size) = std::str::from_utf8(size_text)
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
        else {
            return out;
        };
        if size == 0 || after.is_empty() {
            return out;
        }
        let take = size.min(after.len());
        out.extend_from_slice(&after[..take]);
        rest = &after[take..];
        rest = rest
            .strip_prefix(b"\r\n")
            .or_else(|| rest.strip_prefix(b"\n"))
            .unwrap_or(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers_body_and_absolute_targets() {
        let r =
            parse(b"POST http://h/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcdef")
                .expect("valid request");
        assert_eq!(r.method, "POST");
        assert_eq!(r.target, "/x?a=1");
        assert_eq!(r.headers[0], ("Host".to_string(), b"h".to_vec()));
        assert_eq!(r.body, b"abc");
        let r = parse(
            b"POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .expect("chunked request");
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn malformed_requests_are_errors_not_panics() {
        assert_eq!(parse(b""), Err(RawError::Empty));
        assert!(matches!(
            parse(b"GARBAGE\r\n\r\n"),
            Err(RawError::RequestLine(_))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"),
            Err(RawError::Header { line: 2, .. })
        ));
        let r = parse(b"POST / HTTP/1.1\r\nContent-Length: 999\r\n\r\nab").expect("short body");
        assert_eq!(r.body, b"ab");
        let r = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            .expect("bad chunk");
        assert!(r.body.is_empty());
    }

    /// Found by the `waf_raw_request` fuzz target: a target whose first seven or eight
    /// bytes end inside a character panicked in the check for an absolute-form scheme.
    #[test]
    fn targets_cut_inside_a_character_by_the_scheme_check() {
        let r = parse(b"T \xe3\xe3\xe3").expect("request line");
        assert_eq!(r.target, "\u{fffd}\u{fffd}\u{fffd}");
        let r = parse("GET http:/\u{e9}x HTTP/1.1\r\n\r\n".as_bytes()).expect("request line");
        assert_eq!(r.target, "http:/\u{e9}x");
        let r = parse("GET https://h\u{e9}/p\u{e9} HTTP/1.1\r\n\r\n".as_bytes()).expect("absolute");
        assert_eq!(r.target, "/p\u{e9}");
    }
}
