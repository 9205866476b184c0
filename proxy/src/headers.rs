//! Headers the proxy owns: hop-by-hop handling (RFC 9110 §7.6.1), the verified caller
//! identity, and request ids.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The caller's verified SPIFFE ID, set by the inbound proxy for the app. Any copy a
/// client sent is removed first: only the TLS handshake can assert an identity.
pub const PEER_ID: HeaderName = HeaderName::from_static("x-palisade-peer-id");

/// Correlates a request across the proxies, the app and the logs.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The fields [`strip_hop_by_hop`] always removes (`TE` it rewrites).
static HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the hop-by-hop fields of RFC 9110 §7.6.1: `Connection` and every field it
/// names, plus `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding` and `Upgrade`.
/// `TE` is kept only as `TE: trailers`, which gRPC needs end to end and which is the
/// only value HTTP/2 allows. They describe one connection, never the next one.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them (an HTTP/2 one never does, and a field named by
    // `Connection` is only removed when `Connection` is there): one pass over the few
    // names costs far less than the eight hashed lookups below (~1,900 instructions).
    if !headers
        .keys()
        .any(|name| name == header::TE || HOP_BY_HOP.contains(name))
    {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    let te_trailers = headers.get_all(header::TE).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    headers.remove(header::TE);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// A client's request id is kept if it is short and made of safe characters (so it can
/// go into logs and responses without escaping); otherwise the proxy makes a new one.
pub fn is_sane_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new random request id: 128 bits, hex.
pub fn new_request_id() -> HeaderValue {
    HeaderValue::from_bytes(&hex_id(rand::random())).unwrap_or(HeaderValue::from_static("0"))
}

/// `format!("{id:032x}")` without the formatting machinery (~1,000 instructions less).
fn hex_id(id: u128) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 32];
    for (shift, digit) in hex.iter_mut().rev().enumerate() {
        *digit = DIGITS[((id >> (4 * shift)) & 0xf) as usize];
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_named_fields_but_keeps_te_trailers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::TE, HeaderValue::from_static("gzip, trailers"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut headers);
        assert!(headers.get("x-secret").is_none());
        assert!(headers.get(header::CONNECTION).is_none());
        assert!(headers.get("keep-alive").is_none());
        assert!(headers.get(header::TRANSFER_ENCODING).is_none());
        assert_eq!(headers.get(header::TE).unwrap(), "trailers");
        assert_eq!(headers.get("x-kept").unwrap(), "yes");

        let mut headers = HeaderMap::new();
        headers.insert(header::TE, HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut headers);
        assert!(headers.get(header::TE).is_none());
    }

    /// Each field alone, with the others absent, is still found and removed (the early
    /// return must not miss one), and a message without any is left as it was.
    #[test]
    fn each_hop_by_hop_field_alone_is_removed() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
            "te",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("x-kept", HeaderValue::from_static("yes"));
            headers.append(HeaderName::from_static(name), HeaderValue::from_static("x"));
            strip_hop_by_hop(&mut headers);
            assert!(headers.get(name).is_none(), "{name}");
            assert_eq!(headers.len(), 1, "{name}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("app"));
        headers.append("x-many", HeaderValue::from_static("1"));
        headers.append("x-many", HeaderValue::from_static("2"));
        let before = headers.clone();
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers, before);
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        assert!(is_sane_request_id(&HeaderValue::from_static(
            "abc-123_x.y:z"
        )));
        assert!(!is_sane_request_id(&HeaderValue::from_static("")));
        assert!(!is_sane_request_id(&HeaderValue::from_static("a b")));
        assert!(!is_sane_request_id(
            &HeaderValue::from_str(&"a".repeat(129)).unwrap()
        ));
        assert!(is_sane_request_id(&new_request_id()));
        assert_ne!(new_request_id(), new_request_id());
    }

    #[test]
    fn request_ids_are_the_hex_of_their_128_bits() {
        let mut ids = vec![0, 1, 0xf, 0x10, u128::MAX, u128::MAX - 1, 1 << 127];
        ids.extend((0..1000).map(|_| rand::random::<u128>()));
        for id in ids {
            assert_eq!(hex_id(id), format!("{id:032x}").as_bytes(), "{id}");
        }
        assert_eq!(new_request_id().len(), 32);
    }
}
