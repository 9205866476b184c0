//! The request view the engine inspects, and its split into named values.
//!
//! The view borrows everything from the caller (no copy of the body); values are
//! borrowed too unless decoding changed them.

use std::borrow::Cow;

use crate::body;

/// A borrowed HTTP request as the WAF sees it.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The raw path, still percent-encoded, without the query.
    pub path: &'a str,
    /// The raw query string without `?`, still percent-encoded.
    pub query: Option<&'a str>,
    /// Header names and values in arrival order; names compare case-insensitively.
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// The body as received (possibly only its first bytes, see `WafSettings::body_limit`).
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// Builds a view from a request target (`/path?query`) with no headers and no body.
    pub fn new(method: &'a str, target: &'a str) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        Request {
            method,
            path,
            query,
            headers: Vec::new(),
            body: &[],
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'a str, value: &'a [u8]) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = body;
        self
    }

    /// Builds a view from `http` request parts and the (buffered) body.
    pub fn from_parts(parts: &'a http::request::Parts, body: &'a [u8]) -> Self {
        Request {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes()))
                .collect(),
            body,
        }
    }

    /// The first value of a header.
    pub fn header_value(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// Where a value came from. Rules select kinds through their `targets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Method,
    Path,
    QueryRaw,
    QueryArgName,
    QueryArg,
    BodyArgName,
    BodyArg,
    FileName,
    CookieName,
    Cookie,
    HeaderName,
    Header,
    BodyRaw,
}

/// Number of `Kind`s (`BodyRaw` is the last).
pub(crate) const KIND_COUNT: usize = 13;
const _: () = assert!(Kind::BodyRaw as usize + 1 == KIND_COUNT);

impl Kind {
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// The prefix used in a match's `target` field.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Method => "method",
            Kind::Path => "path",
            Kind::QueryRaw => "query",
            Kind::QueryArgName => "query_arg_name",
            Kind::QueryArg => "query_arg",
            Kind::BodyArgName => "body_arg_name",
            Kind::BodyArg => "body_arg",
            Kind::FileName => "file_name",
            Kind::CookieName => "cookie_name",
            Kind::Cookie => "cookie",
            Kind::HeaderName => "header_name",
            Kind::Header => "header",
            Kind::BodyRaw => "body",
        }
    }
}

/// One inspected value with its name (argument, header or cookie name; empty otherwise).
#[derive(Debug)]
pub(crate) struct Value<'a> {
    pub kind: Kind,
    pub name: Cow<'a, str>,
    pub data: Cow<'a, [u8]>,
}

/// Caps the number of values taken from a body so a hostile body cannot make the engine
/// loop for long; the `arg_count_over` rules see the true count.
pub(crate) const MAX_BODY_VALUES: usize = 2048;

/// Everything the rules look at, extracted once per request.
pub(crate) struct Extracted<'a> {
    pub values: Vec<Value<'a>>,
    pub arg_count: usize,
    /// The arguments parsed from the body.
    pub body_values: usize,
}

/// `names` is per-request storage for body argument names built by the parser (JSON
/// key paths), so values borrow their names instead of owning one each.
pub(crate) fn extract<'a>(
    req: &Request<'a>,
    body: &'a [u8],
    names: &'a mut String,
) -> Extracted<'a> {
    // About one value per 16 bytes of body (JSON keys and strings), so a typical request
    // grows the vector at most once.
    let mut values = Vec::with_capacity(32 + body.len().min(MAX_BODY_VALUES * 16) / 16);
    let mut arg_count = 0;
    let plain = |kind, data: &'a [u8]| Value {
        kind,
        name: Cow::Borrowed(""),
        data: Cow::Borrowed(data),
    };
    values.push(plain(Kind::Method, req.method.as_bytes()));
    values.push(plain(Kind::Path, req.path.as_bytes()));
    if let Some(q) = req.query {
        values.push(plain(Kind::QueryRaw, q.as_bytes()));
        arg_count += body::urlencoded(
            q.as_bytes(),
            Kind::QueryArgName,
            Kind::QueryArg,
            &mut values,
        );
    }
    for (name, value) in &req.headers {
        values.push(Value {
            kind: Kind::HeaderName,
            name: Cow::Borrowed(""),
            data: Cow::Borrowed(name.as_bytes()),
        });
        values.push(Value {
            kind: Kind::Header,
            name: Cow::Borrowed(name),
            data: Cow::Borrowed(value),
        });
        if name.eq_ignore_ascii_case("cookie") {
            cookies(value, &mut values);
        }
    }
    let mut body_values = 0;
    if !body.is_empty() {
        values.push(plain(Kind::BodyRaw, body));
        let ct = req.header_value("content-type").unwrap_or(b"");
        body_values = body::parse(ct, body, names, &mut values);
        arg_count += body_values;
    }
    Extracted {
        values,
        arg_count,
        body_values,
    }
}

fn cookies<'a>(header: &'a [u8], out: &mut Vec<Value<'a>>) {
    for pair in header.split(|&b| b == b';') {
        let pair = pair.trim_ascii();
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let name = String::from_utf8_lossy(name);
        out.push(Value {
            kind: Kind::CookieName,
            name: Cow::Borrowed(""),
            data: match &name {
                Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                Cow::Owned(s) => Cow::Owned(s.as_bytes().to_vec()),
            },
        });
        out.push(Value {
            kind: Kind::Cookie,
            name,
            data: Cow::Borrowed(value),
        });
    }
}
