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
    /// The target's authority (HTTP/2 `:authority`, an absolute-form target's), if any;
    /// it names the site when there is no `Host` header.
    pub authority: Option<&'a str>,
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
            authority: None,
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
            authority: parts.uri.authority().map(|a| a.as_str()),
        }
    }

    /// The first value of a header.
    pub fn header_value(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// `Condition::HasBody`. The `Content-Length` decides when there is one: a body the
    /// framing does not announce is not the request's (HTTP/1 would read it as the next
    /// request).
    pub(crate) fn has_body(&self) -> bool {
        if self.header_value("transfer-encoding").is_some() {
            return true;
        }
        match self.header_value("content-length") {
            Some(length) => length.iter().any(|b| matches!(b, b'1'..=b'9')),
            None => !self.body.is_empty(),
        }
    }

    /// Whether the `Content-Type` is JSON: `*/json`, `*/*+json` or `application/x-ndjson`
    /// (parameters ignored).
    pub(crate) fn json_content(&self) -> bool {
        let Some(value) = self.header_value("content-type") else {
            return false;
        };
        let media = crate::body::media_essence(value);
        let subtype = match media.iter().position(|&b| b == b'/') {
            Some(slash) => &media[slash + 1..],
            None => return false,
        };
        subtype.eq_ignore_ascii_case(b"json")
            || subtype.eq_ignore_ascii_case(b"x-ndjson")
            || crate::body::has_json_suffix(subtype)
    }

    /// `Condition::RefererOffSite`: no `Referer`, or one whose host is neither the site's
    /// (`Host`, else the authority) nor a subdomain of it. A relative `Referer` is on the
    /// site; a request that names no site has nothing to be on, so any `Referer` is off.
    pub(crate) fn referer_off_site(&self) -> bool {
        let Some(referer) = self.header_value("referer") else {
            return true;
        };
        let Some(after_scheme) = referer
            .windows(3)
            .position(|w| w == b"://")
            .map(|at| &referer[at + 3..])
        else {
            return false;
        };
        let authority_end = after_scheme
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(after_scheme.len());
        let from = host_of(&after_scheme[..authority_end]);
        let site = match self
            .header_value("host")
            .or(self.authority.map(str::as_bytes))
        {
            Some(site) => host_of(site),
            None => return true,
        };
        if site.is_empty() {
            return true;
        }
        let on_site = from.eq_ignore_ascii_case(site)
            || (from.len() > site.len()
                && from[from.len() - site.len() - 1] == b'.'
                && from[from.len() - site.len()..].eq_ignore_ascii_case(site));
        !on_site
    }
}

/// The host of an authority (`user@host:port`, `[v6]:port`), without a trailing dot.
fn host_of(authority: &[u8]) -> &[u8] {
    let after_user = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    let host = if after_user.first() == Some(&b'[') {
        match after_user.iter().position(|&b| b == b']') {
            Some(end) => &after_user[..=end],
            None => after_user,
        }
    } else {
        match after_user.iter().position(|&b| b == b':') {
            Some(colon) => &after_user[..colon],
            None => after_user,
        }
    };
    host.strip_suffix(b".").unwrap_or(host)
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

/// Appends a value, written in place.
///
/// `Vec::push` builds its argument on the stack first, because a reallocation may come
/// between building and writing it, then copies the 56 bytes with 16-byte loads over the
/// 8-byte stores that built them. The CPU cannot forward such stores to such loads, so each
/// push waited for the stores to complete: in perf, a fifth of the JSON scanner's time sat
/// on that copy. Reserving first leaves nothing between building the value and writing it.
#[inline(always)]
pub(crate) fn push_value<'a>(
    values: &mut Vec<Value<'a>>,
    kind: Kind,
    name: Cow<'a, str>,
    data: Cow<'a, [u8]>,
) {
    values.reserve(1);
    values.spare_capacity_mut()[0].write(Value { kind, name, data });
    let len = values.len() + 1;
    // SAFETY: `reserve` made room for one more value, and the slot at the old length, the
    // first of the spare capacity, has just been written.
    unsafe { values.set_len(len) };
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

/// The room `extract` makes for the values of a request with a body of `body_len` bytes:
/// about one value per 16 bytes of body (JSON keys and strings), so a typical request
/// grows the vector at most once.
pub(crate) fn values_capacity(body_len: usize) -> usize {
    32 + body_len.min(MAX_BODY_VALUES * 16) / 16
}

/// `names` is per-request storage for body argument names built by the parser (JSON
/// key paths), so values borrow their names instead of owning one each.
pub(crate) fn extract<'a>(
    req: &Request<'a>,
    body: &'a [u8],
    names: &'a mut String,
) -> Extracted<'a> {
    let mut values = Vec::with_capacity(values_capacity(body.len()));
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
        push_value(
            &mut values,
            Kind::HeaderName,
            Cow::Borrowed(""),
            Cow::Borrowed(name.as_bytes()),
        );
        push_value(
            &mut values,
            Kind::Header,
            Cow::Borrowed(name),
            Cow::Borrowed(value),
        );
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
        let name_data = match &name {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.as_bytes().to_vec()),
        };
        push_value(out, Kind::CookieName, Cow::Borrowed(""), name_data);
        push_value(out, Kind::Cookie, name, Cow::Borrowed(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn off_site(host: Option<&str>, referer: Option<&str>) -> bool {
        let mut req = Request::new("GET", "/login?jsessionid=1");
        if let Some(host) = host {
            req = req.header("Host", host.as_bytes());
        }
        if let Some(referer) = referer {
            req = req.header("Referer", referer.as_bytes());
        }
        req.referer_off_site()
    }

    #[test]
    fn referers_from_the_site_or_its_subdomains_are_on_site() {
        let host = Some("shop.example.com");
        assert!(!off_site(host, Some("https://shop.example.com/cart")));
        assert!(!off_site(host, Some("HTTPS://SHOP.Example.COM.:8443?x")));
        assert!(!off_site(
            Some("shop.example.com:8443"),
            Some("https://www.shop.example.com/")
        ));
        assert!(!off_site(host, Some("https://mallory@shop.example.com/")));
        assert!(!off_site(host, Some("/relative/page")));
        assert!(!off_site(Some("[::1]:8080"), Some("http://[::1]/x")));
    }

    #[test]
    fn missing_or_foreign_referers_are_off_site() {
        let host = Some("shop.example.com");
        assert!(off_site(host, None));
        assert!(off_site(host, Some("https://evilshop.example.com/")));
        assert!(off_site(host, Some("https://shop.example.com.evil.net/")));
        assert!(off_site(host, Some("https://shop.example.com@evil.net/")));
        assert!(off_site(
            Some("localhost"),
            Some("http://localhost.attackersite.com/")
        ));
        assert!(off_site(None, Some("https://shop.example.com/")));
        assert!(off_site(Some(""), Some("https://shop.example.com/")));
    }

    #[test]
    fn a_body_is_what_the_framing_announces() {
        let bare = Request::new("GET", "/");
        assert!(!bare.has_body());
        assert!(bare.clone().body(b"x").has_body());
        assert!(bare.clone().header("Content-Length", b"12").has_body());
        assert!(bare
            .clone()
            .header("Transfer-Encoding", b"chunked")
            .has_body());
        assert!(!bare
            .clone()
            .header("Content-Length", b"0")
            .body(b"x")
            .has_body());
        assert!(!bare.clone().header("Content-Length", b"000").has_body());
    }

    #[test]
    fn json_content_types_are_json_with_any_parameters() {
        let typed =
            |ct: &'static str| Request::new("GET", "/").header("Content-Type", ct.as_bytes());
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.elasticsearch+json; compatible-with=8",
            "application/x-ndjson",
            "text/json",
        ] {
            assert!(typed(ct).json_content(), "{ct}");
        }
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "+json",
            "json",
            "application/jsonp",
            "a/+json",
        ] {
            assert!(!typed(ct).json_content(), "{ct}");
        }
        assert!(!Request::new("GET", "/").json_content());
    }

    #[test]
    fn the_authority_names_the_site_without_a_host_header() {
        let (parts, ()) = http::Request::get("https://shop.example.com/login?jsessionid=1")
            .header("referer", "https://shop.example.com/")
            .body(())
            .map(http::Request::into_parts)
            .expect("valid request");
        let req = Request::from_parts(&parts, b"");
        assert_eq!(req.authority, Some("shop.example.com"));
        assert!(!req.referer_off_site());
    }
}
