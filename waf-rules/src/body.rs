//! Body parsers: urlencoded forms, JSON and multipart. Each pushes named values and returns
//! how many arguments it saw. Malformed bodies never fail the request here: what parsed is
//! inspected, and the raw body is always inspected too.

use std::borrow::Cow;

use crate::request::{push_value, Kind, Value, MAX_BODY_VALUES};

/// Dispatches on the content type. Without a content type the body is treated as a form,
/// as many clients omit it; text types and any other body that reads as text are
/// inspected as one unnamed argument.
/// `names` holds the JSON key paths that values borrow as their names.
pub(crate) fn parse<'a>(
    content_type: &'a [u8],
    body: &'a [u8],
    names: &'a mut String,
    out: &mut Vec<Value<'a>>,
) -> usize {
    let ct = content_type.trim_ascii();
    let essence = media_essence(ct);
    let is = |t: &[u8]| essence.eq_ignore_ascii_case(t);
    if essence.is_empty() || is(b"application/x-www-form-urlencoded") {
        urlencoded(body, Kind::BodyArgName, Kind::BodyArg, out)
    } else if is(b"application/json") || has_json_suffix(essence) {
        crate::json::json(body, names, out)
    } else if is(b"multipart/form-data") {
        multipart(ct, body, out)
    } else if is(b"application/xml")
        || is(b"text/xml")
        || (essence.len() > 4 && essence[essence.len() - 4..].eq_ignore_ascii_case(b"+xml"))
    {
        xml(body, out)
    } else if (essence.len() > 5 && essence[..5].eq_ignore_ascii_case(b"text/")) || is_text(body) {
        // Text of a type we do not parse is still inspected, as one unnamed argument:
        // many applications parse a body whatever its declared type, so a form or an
        // injection sent as `application/x-anything` must not slip past the argument
        // rules. Binary bodies (gRPC, images, archives) are left to the raw-body rules.
        out.push(Value {
            kind: Kind::BodyArg,
            name: Cow::Borrowed(""),
            data: Cow::Borrowed(body),
        });
        1
    } else {
        0
    }
}

/// A media type without its parameters and blanks (`application/json; charset=utf-8` ->
/// `application/json`).
pub(crate) fn media_essence(content_type: &[u8]) -> &[u8] {
    content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or(b"")
        .trim_ascii()
}

/// Whether a media type's essence ends in the `+json` structured-syntax suffix
/// (`application/vnd.api+json`).
pub(crate) fn has_json_suffix(essence: &[u8]) -> bool {
    essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json")
}

/// Whether a body reads as text: valid UTF-8 without NUL bytes.
fn is_text(body: &[u8]) -> bool {
    memchr::memchr(0, body).is_none() && std::str::from_utf8(body).is_ok()
}

/// Form decoding: `+` is a space and `%xx` a byte. Borrows when nothing needs decoding;
/// the bytes between escapes are copied as runs. (Found by a plain loop: names and
/// values are a few bytes to a few dozen, too short to repay a vectorised search's set-up.)
fn form_decode(raw: &[u8]) -> Cow<'_, [u8]> {
    let escape = |from: usize| {
        raw[from..]
            .iter()
            .position(|&b| b == b'%' || b == b'+')
            .map(|k| from + k)
    };
    let Some(mut at) = escape(0) else {
        return Cow::Borrowed(raw);
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    loop {
        out.extend_from_slice(&raw[i..at]);
        i = at + 1;
        if raw[at] == b'+' {
            out.push(b' ');
        } else {
            match (raw.get(at + 1), raw.get(at + 2)) {
                (Some(&h), Some(&l)) => match (hexval(h), hexval(l)) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i = at + 3;
                    }
                    _ => out.push(b'%'),
                },
                _ => out.push(b'%'),
            }
        }
        match escape(i) {
            Some(next) => at = next,
            None => break,
        }
    }
    out.extend_from_slice(&raw[i..]);
    Cow::Owned(out)
}

fn hexval(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The bytes as text, invalid UTF-8 replaced. Checked with `from_utf8` first: names are
/// short and almost always valid, and its check is several times cheaper per byte than
/// the lossy conversion's.
fn lossy(bytes: Cow<'_, [u8]>) -> Cow<'_, str> {
    match bytes {
        Cow::Borrowed(b) => match std::str::from_utf8(b) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(b),
        },
        Cow::Owned(v) => match String::from_utf8(v) {
            Ok(s) => Cow::Owned(s),
            Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        },
    }
}

pub(crate) fn urlencoded<'a>(
    raw: &'a [u8],
    name_kind: Kind,
    value_kind: Kind,
    out: &mut Vec<Value<'a>>,
) -> usize {
    let mut count = 0;
    let mut start = 0;
    loop {
        let end = memchr::memchr(b'&', &raw[start..]).map_or(raw.len(), |k| start + k);
        let pair = &raw[start..end];
        if !pair.is_empty() {
            count += 1;
            if count <= MAX_BODY_VALUES {
                push_pair(pair, name_kind, value_kind, out);
            }
        }
        if end == raw.len() {
            return count;
        }
        start = end + 1;
    }
}

/// One `name=value` pair of a form or query string.
fn push_pair<'a>(pair: &'a [u8], name_kind: Kind, value_kind: Kind, out: &mut Vec<Value<'a>>) {
    let (n, v) = match memchr::memchr(b'=', pair) {
        Some(i) => (&pair[..i], &pair[i + 1..]),
        None => (pair, &b""[..]),
    };
    let name = form_decode(n);
    push_value(out, name_kind, Cow::Borrowed(""), name.clone());
    push_value(out, value_kind, lossy(name), form_decode(v));
}

/// Multipart: field names and values; for file parts the file name (not the content).
fn multipart<'a>(content_type: &'a [u8], body: &'a [u8], out: &mut Vec<Value<'a>>) -> usize {
    let Some(boundary) = param(content_type, b"boundary") else {
        return 0;
    };
    if boundary.is_empty() {
        return 0;
    }
    let mut delim = Vec::with_capacity(boundary.len() + 2);
    delim.extend_from_slice(b"--");
    delim.extend_from_slice(boundary);
    let finder = memchr::memmem::Finder::new(&delim);
    let mut count = 0;
    let mut positions = finder.find_iter(body).peekable();
    while let Some(start) = positions.next() {
        let Some(&end) = positions.peek() else { break };
        let part = &body[start + delim.len()..end];
        let part = part
            .strip_prefix(b"\r\n")
            .or_else(|| part.strip_prefix(b"\n"))
            .unwrap_or(part);
        let (head, content) = match memchr::memmem::find(part, b"\r\n\r\n") {
            Some(i) => (&part[..i], &part[i + 4..]),
            None => match memchr::memmem::find(part, b"\n\n") {
                Some(i) => (&part[..i], &part[i + 2..]),
                None => continue,
            },
        };
        let content = content
            .strip_suffix(b"\r\n")
            .or_else(|| content.strip_suffix(b"\n"))
            .unwrap_or(content);
        let disposition = head
            .split(|&b| b == b'\n')
            .find(|l| l.len() > 20 && l[..20].eq_ignore_ascii_case(b"content-disposition:"));
        let Some(disposition) = disposition else {
            continue;
        };
        let name = param(disposition, b"name").unwrap_or(b"");
        count += 1;
        if out.len() >= MAX_BODY_VALUES {
            continue;
        }
        out.push(Value {
            kind: Kind::BodyArgName,
            name: Cow::Borrowed(""),
            data: Cow::Borrowed(name),
        });
        let name = String::from_utf8_lossy(name);
        match param(disposition, b"filename") {
            Some(file) => out.push(Value {
                kind: Kind::FileName,
                name,
                data: Cow::Borrowed(file),
            }),
            None => out.push(Value {
                kind: Kind::BodyArg,
                name,
                data: Cow::Borrowed(content),
            }),
        }
    }
    count
}

/// XML: element text and attribute values become arguments named by their element (or
/// attribute); element and attribute names are inspected as names. Comments and
/// processing instructions are skipped; the DOCTYPE stays visible in the raw body, where
/// the XXE rules look. Entities are never resolved.
fn xml<'a>(body: &'a [u8], out: &mut Vec<Value<'a>>) -> usize {
    let mut count = 0;
    let mut element: &'a [u8] = b"";
    let mut i = 0;
    let push = |out: &mut Vec<Value<'a>>, kind, name: &'a [u8], data: &'a [u8]| {
        if out.len() < MAX_BODY_VALUES {
            out.push(Value {
                kind,
                name: String::from_utf8_lossy(name),
                data: Cow::Borrowed(data),
            });
        }
    };
    while i < body.len() {
        let Some(p) = memchr::memchr(b'<', &body[i..]) else {
            let text = body[i..].trim_ascii();
            if !text.is_empty() {
                push(out, Kind::BodyArg, element, text);
                count += 1;
            }
            break;
        };
        let text = body[i..i + p].trim_ascii();
        if !text.is_empty() {
            push(out, Kind::BodyArg, element, text);
            count += 1;
        }
        i += p;
        let rest = &body[i..];
        let skip_to =
            |pat: &[u8]| memchr::memmem::find(rest, pat).map_or(body.len(), |e| i + e + pat.len());
        if rest.starts_with(b"<!--") {
            i = skip_to(b"-->");
        } else if rest.starts_with(b"<![CDATA[") {
            let end = memchr::memmem::find(rest, b"]]>").map_or(rest.len(), |e| e);
            let data = &rest[9.min(end)..end];
            push(out, Kind::BodyArg, element, data);
            count += 1;
            i = skip_to(b"]]>");
        } else if rest.starts_with(b"<!") || rest.starts_with(b"<?") || rest.starts_with(b"</") {
            i = skip_to(b">");
        } else {
            let end = memchr::memchr(b'>', rest).map_or(rest.len(), |e| e);
            let tag = &rest[1..end];
            let name_end = tag
                .iter()
                .position(|b| b.is_ascii_whitespace() || *b == b'/')
                .unwrap_or(tag.len());
            element = &tag[..name_end];
            push(out, Kind::BodyArgName, b"", element);
            count += xml_attributes(&tag[name_end..], out);
            i += end + 1;
        }
    }
    count
}

fn xml_attributes<'a>(mut attrs: &'a [u8], out: &mut Vec<Value<'a>>) -> usize {
    let mut count = 0;
    loop {
        attrs = attrs.trim_ascii_start();
        let Some(eq) = memchr::memchr(b'=', attrs) else {
            return count;
        };
        let name = attrs[..eq].trim_ascii();
        let rest = attrs[eq + 1..].trim_ascii_start();
        let Some(&q) = rest.first().filter(|q| **q == b'"' || **q == b'\'') else {
            return count;
        };
        let end = memchr::memchr(q, &rest[1..]).map_or(rest.len(), |e| e + 1);
        let value = &rest[1..end];
        if out.len() < MAX_BODY_VALUES {
            out.push(Value {
                kind: Kind::BodyArgName,
                name: Cow::Borrowed(""),
                data: Cow::Borrowed(name),
            });
            out.push(Value {
                kind: Kind::BodyArg,
                name: String::from_utf8_lossy(name),
                data: Cow::Borrowed(value),
            });
        }
        count += 1;
        attrs = &rest[(end + 1).min(rest.len())..];
    }
}

/// A `key=value` or `key="value"` parameter of a header value (`;`-separated).
/// The value of parameter `key` in a header such as `form-data; name="a;b"; filename=x`.
/// A quoted value may hold `;` and `\"` (RFC 7578 and 2045 quoted strings), so the header
/// is read parameter by parameter rather than split at every `;`: the name inspected is
/// then the name the application reads. The value is returned as written between the
/// quotes.
fn param<'a>(header: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut i = memchr::memchr(b';', header)? + 1;
    while i < header.len() {
        let key_start = i;
        while i < header.len() && header[i] != b'=' && header[i] != b';' {
            i += 1;
        }
        let name = header[key_start..i].trim_ascii();
        if i >= header.len() {
            return None;
        }
        if header[i] == b';' {
            i += 1;
            continue;
        }
        i += 1;
        while i < header.len() && header[i].is_ascii_whitespace() {
            i += 1;
        }
        let (value, end) = if header.get(i) == Some(&b'"') {
            let start = i + 1;
            let mut j = start;
            while j < header.len() && header[j] != b'"' {
                j += if header[j] == b'\\' { 2 } else { 1 };
            }
            let close = j.min(header.len());
            (&header[start..close], close)
        } else {
            let end = memchr::memchr(b';', &header[i..]).map_or(header.len(), |p| i + p);
            (header[i..end].trim_ascii(), end)
        };
        if name.eq_ignore_ascii_case(key) {
            return Some(value);
        }
        i = memchr::memchr(b';', &header[end..]).map_or(header.len(), |p| end + p + 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The form decoder and splitter as they were, a byte at a time.
    fn form_decode_bytewise(raw: &[u8]) -> Cow<'_, [u8]> {
        if !raw.iter().any(|&b| b == b'%' || b == b'+') {
            return Cow::Borrowed(raw);
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < raw.len() => match (hexval(raw[i + 1]), hexval(raw[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        Cow::Owned(out)
    }

    fn urlencoded_bytewise<'a>(
        raw: &'a [u8],
        name_kind: Kind,
        value_kind: Kind,
        out: &mut Vec<Value<'a>>,
    ) -> usize {
        let mut count = 0;
        for pair in raw.split(|&b| b == b'&') {
            if pair.is_empty() {
                continue;
            }
            count += 1;
            if count > MAX_BODY_VALUES {
                continue;
            }
            let (n, v) = match memchr::memchr(b'=', pair) {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let name = form_decode_bytewise(n);
            out.push(Value {
                kind: name_kind,
                name: Cow::Borrowed(""),
                data: name.clone(),
            });
            out.push(Value {
                kind: value_kind,
                name: String::from_utf8_lossy(&name).into_owned().into(),
                data: form_decode_bytewise(v),
            });
        }
        count
    }

    #[test]
    fn urlencoded_agrees_with_the_bytewise_splitter() {
        use crate::test_rng::Rng;
        let alphabet = b"&&==%%++2aFgx \xff\xc3\xa9";
        let mut rng = Rng(0xc0ff_ee00_1234_5678);
        let owned = |out: Vec<Value<'_>>| -> Vec<(Kind, String, Vec<u8>)> {
            out.into_iter()
                .map(|v| (v.kind, v.name.into_owned(), v.data.into_owned()))
                .collect()
        };
        for _ in 0..50_000 {
            let len = rng.below(28);
            let raw: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            let n = urlencoded(&raw, Kind::QueryArgName, Kind::QueryArg, &mut ours);
            let m = urlencoded_bytewise(&raw, Kind::QueryArgName, Kind::QueryArg, &mut theirs);
            assert_eq!(n, m, "{raw:?}");
            assert_eq!(owned(ours), owned(theirs), "{raw:?}");
        }
    }

    fn collect(ct: &str, body: &str) -> Vec<(Kind, String, String)> {
        let mut names = String::new();
        let mut out = Vec::new();
        parse(ct.as_bytes(), body.as_bytes(), &mut names, &mut out);
        out.into_iter()
            .map(|v| {
                (
                    v.kind,
                    v.name.into_owned(),
                    String::from_utf8_lossy(&v.data).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn urlencoded_decodes_names_and_values() {
        let v = collect(
            "application/x-www-form-urlencoded",
            "a=1+2&b%5B%5D=%3Cx%3E&flag",
        );
        assert!(v.contains(&(Kind::BodyArg, "a".into(), "1 2".into())));
        assert!(v.contains(&(Kind::BodyArg, "b[]".into(), "<x>".into())));
        assert!(v.contains(&(Kind::BodyArgName, "".into(), "flag".into())));
    }

    #[test]
    fn json_names_nested_keys_and_arrays() {
        let v = collect(
            "application/json; charset=utf-8",
            r#"{"user":{"name":"a\"b","tags":["x",{"k":"y"}]},"n":1,"$ne":null}"#,
        );
        assert!(v.contains(&(Kind::BodyArg, "user.name".into(), "a\"b".into())));
        assert!(v.contains(&(Kind::BodyArg, "user.tags".into(), "x".into())));
        assert!(v.contains(&(Kind::BodyArg, "user.tags.k".into(), "y".into())));
        assert!(v.contains(&(Kind::BodyArgName, "".into(), "$ne".into())));
        let bad = collect("application/json", "{\"a\": [1, 2");
        assert!(bad
            .iter()
            .any(|(k, _, d)| *k == Kind::BodyArg && d.starts_with('{')));
    }

    #[test]
    fn xml_text_attributes_and_cdata() {
        let v = collect(
            "application/xml",
            "<?xml version=\"1.0\"?><!-- c --><root><a probe=\"1 OR 1=1\">text</a><b><![CDATA[<x>]]></b></root>",
        );
        assert!(v.contains(&(Kind::BodyArg, "probe".into(), "1 OR 1=1".into())));
        assert!(v.contains(&(Kind::BodyArg, "a".into(), "text".into())));
        assert!(v.contains(&(Kind::BodyArg, "b".into(), "<x>".into())));
        assert!(v.contains(&(Kind::BodyArgName, "".into(), "root".into())));
        assert!(!v.iter().any(|(_, _, d)| d.contains("version")));
        let broken = collect("text/xml", "<a x=\"1 <b");
        assert!(broken.iter().all(|(_, _, d)| d.len() < 20));
    }

    #[test]
    fn parameters_keep_quoted_semicolons() {
        let h = br#"form-data; name="a;b"; filename="x\".php""#;
        assert_eq!(param(h, b"name"), Some(&b"a;b"[..]));
        assert_eq!(param(h, b"filename"), Some(&br#"x\".php"#[..]));
        assert_eq!(
            param(b"form-data; name=plain ; x=1", b"name"),
            Some(&b"plain"[..])
        );
        assert_eq!(
            param(b"multipart/form-data; boundary=xyz", b"boundary"),
            Some(&b"xyz"[..])
        );
        assert_eq!(
            param(b"form-data; name=\"unterminated", b"name"),
            Some(&b"unterminated"[..])
        );
        assert_eq!(param(b"form-data; flag; name=n", b"name"), Some(&b"n"[..]));
        assert_eq!(param(b"form-data", b"name"), None);
    }

    #[test]
    fn multipart_fields_and_file_names() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"../../x.php\"\r\nContent-Type: text/plain\r\n\r\nfile body\r\n--XyZ--\r\n";
        let v = collect("multipart/form-data; boundary=XyZ", body);
        assert!(v.contains(&(Kind::BodyArg, "title".into(), "hello".into())));
        assert!(v.contains(&(Kind::FileName, "up".into(), "../../x.php".into())));
        assert!(!v.iter().any(|(_, _, d)| d == "file body"));
    }
}
