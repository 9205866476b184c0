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

const HOP_BY_HOP_COUNT: usize = 5;

/// The fields [`strip_hop_by_hop`] always removes (`TE` it rewrites).
static HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
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
    // Most messages carry none of them (an HTTP/2 one never does), and the others
    // mostly one (an HTTP/1.1 answer's `Connection: keep-alive`): one pass over the few
    // names finds which are there, and only those are looked up and removed, where a
    // hashed lookup of each of the eight costs ~1,900 instructions.
    let present = headers
        .keys()
        .fold(0, |present, name| present | presence_bit(name));
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        remove_connection_named(headers);
    }
    for (at, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << at) != 0 {
            headers.remove(name);
        }
    }
    if present & TE_PRESENT != 0 {
        keep_only_te_trailers(headers);
    }
}

/// `TE: trailers` if any `TE` field asked for trailers, else no `TE` at all.
fn keep_only_te_trailers(headers: &mut HeaderMap) {
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

/// The bit of `TE` in [`strip_hop_by_hop`]'s set of present fields, after one bit per
/// field of [`HOP_BY_HOP`] in its order (`Connection` is bit 0).
const TE_PRESENT: u8 = 1 << HOP_BY_HOP_COUNT;

/// The bit of `name` in [`strip_hop_by_hop`]'s set of present fields, or 0. By its
/// text: one length comparison for most names, where comparing with each of the six
/// costs about fifty instructions per field.
fn presence_bit(name: &HeaderName) -> u8 {
    match name.as_str() {
        "connection" => 1,
        "keep-alive" => 1 << 1,
        "proxy-connection" => 1 << 2,
        "transfer-encoding" => 1 << 3,
        "upgrade" => 1 << 4,
        "te" => TE_PRESENT,
        _ => 0,
    }
}

/// Removes the fields `Connection` names. The fields of [`HOP_BY_HOP`] are left to the
/// caller, which removes them anyway.
fn remove_connection_named(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::CONNECTION).iter();
    let (Some(first), None) = (values.next(), values.next()) else {
        // Several `Connection` fields: rare enough to collect their names.
        for name in connection_named(headers) {
            headers.remove(name);
        }
        return;
    };
    // A clone of the value, so that the map can change while its names are read: a
    // reference count, not a copy.
    let first = first.clone();
    let Ok(value) = first.to_str() else {
        return;
    };
    for name in value.split(',').map(str::trim) {
        if !HOP_BY_HOP
            .iter()
            .any(|hop| name.eq_ignore_ascii_case(hop.as_str()))
        {
            // Looked up by `&str`: lowercased on the stack, and no match when it is not
            // a valid field name, as `HeaderName::from_bytes` would refuse it.
            headers.remove(name);
        }
    }
}

/// The valid field names every `Connection` field lists.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
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

    /// What `strip_hop_by_hop` did before it looked only for the fields present.
    fn strip_hop_by_hop_reference(headers: &mut HeaderMap) {
        for name in connection_named(headers) {
            headers.remove(name);
        }
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
        keep_only_te_trailers(headers);
    }

    #[test]
    fn presence_bits_follow_the_hop_by_hop_order() {
        for (at, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(presence_bit(name), 1 << at, "{name}");
        }
        assert_eq!(presence_bit(&header::TE), TE_PRESENT);
        for name in [header::HOST, header::TRAILER, REQUEST_ID, PEER_ID] {
            assert_eq!(presence_bit(&name), 0, "{name}");
        }
        let custom = HeaderName::from_static("x-connection");
        assert_eq!(presence_bit(&custom), 0);
    }

    /// Every combination of the fields, with `Connection` naming any of them, others,
    /// invalid names or none, in one field or several, strips as the reference does.
    #[test]
    fn stripping_only_present_fields_is_the_reference() {
        let connections: &[&[&str]] = &[
            &[],
            &["keep-alive"],
            &["close"],
            &["Keep-Alive, X-Secret"],
            &["te"],
            &["TE, upgrade"],
            &["x-secret, close, proxy-connection"],
            &["bad name, x-secret"],
            &[""],
            &[" , ,x-other"],
            &["transfer-encoding"],
            &["x-secret", "x-other"],
            &["close", "te"],
        ];
        let optional: [(&str, &str); 8] = [
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "trailers, gzip"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("close", "3"),
        ];
        for connection in connections {
            for mask in 0..(1u32 << optional.len()) {
                let mut headers = HeaderMap::new();
                headers.insert(header::HOST, HeaderValue::from_static("app"));
                for value in *connection {
                    headers.append(header::CONNECTION, HeaderValue::from_static(value));
                }
                for (at, (name, value)) in optional.iter().enumerate() {
                    if mask & (1 << at) != 0 {
                        headers.append(*name, HeaderValue::from_static(value));
                    }
                }
                if mask & 1 != 0 {
                    headers.append("te", HeaderValue::from_static("gzip"));
                }
                let mut expected = headers.clone();
                strip_hop_by_hop_reference(&mut expected);
                strip_hop_by_hop(&mut headers);
                assert_eq!(headers, expected, "{connection:?} {mask:b}");
            }
        }
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
