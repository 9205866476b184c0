//! Request body content decoding (`Content-Encoding: gzip` / `deflate`), bounded by the
//! body limit so a small compressed body cannot expand into an unbounded one.

use std::io::Read;

use crate::request::Request;

/// Why a body could not be decoded for inspection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The decoded body exceeds the body limit.
    TooLarge,
    /// Unsupported encoding or corrupt compressed data.
    Undecodable,
}

/// Decodes the body per `Content-Encoding`. `Ok(None)`: no encoding, inspect as is. With
/// `keep_prefix` a decoded body past the limit is cut to it instead of refused, and
/// truncated compressed data (a prefix) decodes as far as it goes.
pub(crate) fn content(
    req: &Request<'_>,
    body: &[u8],
    limit: usize,
    keep_prefix: bool,
) -> Result<Option<Vec<u8>>, Refused> {
    let Some(enc) = req.header_value("content-encoding") else {
        return Ok(None);
    };
    let enc = enc.trim_ascii();
    if enc.is_empty() || enc.eq_ignore_ascii_case(b"identity") || body.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let bound = (limit as u64).saturating_add(1);
    let result = if enc.eq_ignore_ascii_case(b"gzip") || enc.eq_ignore_ascii_case(b"x-gzip") {
        // Every member: a gzip body may be several members back to back (RFC 1952), and
        // the application's decoder reads them all, so an attack in a later member must
        // not pass uninspected (`GzDecoder` stops after the first).
        flate2::read::MultiGzDecoder::new(body)
            .take(bound)
            .read_to_end(&mut out)
    } else if enc.eq_ignore_ascii_case(b"deflate") {
        flate2::read::ZlibDecoder::new(body)
            .take(bound)
            .read_to_end(&mut out)
    } else {
        return Err(Refused::Undecodable);
    };
    match result {
        Ok(_) if out.len() > limit && keep_prefix => {
            out.truncate(limit);
            Ok(Some(out))
        }
        Ok(_) if out.len() > limit => Err(Refused::TooLarge),
        Ok(_) => Ok(Some(out)),
        // A prefix cut by `inspect_prefix` ends early; keep what decoded. Otherwise an
        // early end is a corrupt body like any other (and so is a few bytes of junk after
        // a member, which read as a cut-off header): refused, not judged by its prefix.
        Err(e)
            if keep_prefix && e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() =>
        {
            Ok(Some(out))
        }
        Err(_) => Err(Refused::Undecodable),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).expect("compress");
        enc.finish().expect("finish")
    }

    #[test]
    fn gzip_is_decoded_within_the_limit() {
        let body = gzip(b"a=%3Cscript%3E");
        let req = Request::new("POST", "/").header("content-encoding", b"gzip");
        assert_eq!(
            content(&req, &body, 100, false),
            Ok(Some(b"a=%3Cscript%3E".to_vec()))
        );
        let bomb = gzip(&vec![b'a'; 10_000]);
        assert_eq!(content(&req, &bomb, 1000, false), Err(Refused::TooLarge));
        assert_eq!(
            content(&req, &bomb, 1000, true).map(|b| b.map(|b| b.len())),
            Ok(Some(1000))
        );
        assert_eq!(
            content(&req, b"not gzip", 1000, false),
            Err(Refused::Undecodable)
        );
        let br = Request::new("POST", "/").header("content-encoding", b"br");
        assert_eq!(content(&br, b"x", 1000, false), Err(Refused::Undecodable));
        let plain = Request::new("POST", "/");
        assert_eq!(content(&plain, b"x", 1000, false), Ok(None));
    }

    /// Found by the `waf_bodies` fuzz target: only the first member of a gzip body was
    /// decoded, so an attack in a second member was never inspected.
    #[test]
    fn every_gzip_member_is_decoded() {
        let req = Request::new("POST", "/").header("content-encoding", b"gzip");
        let mut body = gzip(b"q=hello&");
        body.extend(gzip(b"p=1 UNION SELECT password FROM users"));
        assert_eq!(
            content(&req, &body, 1000, false),
            Ok(Some(
                b"q=hello&p=1 UNION SELECT password FROM users".to_vec()
            ))
        );
        // Past the limit across members, and garbage after a member.
        assert_eq!(content(&req, &body, 20, false), Err(Refused::TooLarge));
        let mut trailing = gzip(b"q=hello");
        trailing.extend_from_slice(b"more bytes, not a gzip member");
        assert_eq!(
            content(&req, &trailing, 1000, false),
            Err(Refused::Undecodable)
        );
    }

    /// A body that ends inside its compressed data is inspected by its prefix only when
    /// the settings say to inspect a prefix (which cuts compressed bodies too); otherwise
    /// it is refused like any corrupt body, as is junk too short to be a gzip header.
    #[test]
    fn truncated_compressed_bodies_decode_as_a_prefix_only_when_prefixes_are_inspected() {
        let req = Request::new("POST", "/").header("content-encoding", b"gzip");
        let text: Vec<u8> = (0..4000u32)
            .flat_map(|i| i.to_string().into_bytes())
            .collect();
        let whole = gzip(&text);
        let cut = &whole[..whole.len() / 2];
        assert_eq!(
            content(&req, cut, 1 << 20, false),
            Err(Refused::Undecodable)
        );
        let prefix = content(&req, cut, 1 << 20, true)
            .ok()
            .flatten()
            .unwrap_or_default();
        assert!(!prefix.is_empty() && text.starts_with(&prefix));
        let mut junk = gzip(b"q=hello");
        junk.extend_from_slice(b"abc");
        assert_eq!(content(&req, &junk, 1000, false), Err(Refused::Undecodable));
    }
}
