//! The W3C `traceparent` header a proxy reads from every request when tracing is on
//! (from the app outbound, from any peer inbound): arbitrary bytes are accepted exactly
//! when a plain reading of the rules the parser documents accepts them (its hex decoder
//! works eight digits at a time, so a slip would not show on the usual headers), and an
//! accepted header re-serialises to a valid version-00 `traceparent` with the same ids
//! and `sampled` flag, which parses back to itself and is a valid header value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_proxy::telemetry::traceparent_for_fuzzing;

fn lower_hex(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Version-00 rules, a later version's extra fields after a `-`, version `ff` and
/// all-zero ids refused, surrounding ASCII blanks ignored, only the `sampled` bit kept.
fn reference(value: &[u8]) -> Option<Vec<u8>> {
    let value = value.trim_ascii();
    if value.len() < 55 || !lower_hex(&value[..2]) || &value[..2] == b"ff" {
        return None;
    }
    let length_ok = if &value[..2] == b"00" {
        value.len() == 55
    } else {
        value.len() == 55 || value[55] == b'-'
    };
    let (trace, span, flags) = (&value[3..35], &value[36..52], &value[53..55]);
    let fields_ok = value[2] == b'-'
        && value[35] == b'-'
        && value[52] == b'-'
        && lower_hex(trace)
        && lower_hex(span)
        && lower_hex(flags)
        && trace.iter().any(|&b| b != b'0')
        && span.iter().any(|&b| b != b'0');
    if !(length_ok && fields_ok) {
        return None;
    }
    let sampled = (flags[1] as char).to_digit(16)? & 1 == 1;
    let mut out = b"00-".to_vec();
    out.extend_from_slice(trace);
    out.push(b'-');
    out.extend_from_slice(span);
    out.extend_from_slice(if sampled { b"-01" } else { b"-00" });
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let parsed = traceparent_for_fuzzing(data);
    assert_eq!(
        parsed.as_ref().map(|p| p.to_vec()),
        reference(data),
        "{:?}",
        String::from_utf8_lossy(data)
    );
    let Some(header) = parsed else {
        return;
    };
    assert_eq!(&header[..3], b"00-");
    assert_eq!((header[35], header[52]), (b'-', b'-'));
    assert!(lower_hex(&header[3..35]) && lower_hex(&header[36..52]));
    assert!(header[3..35].iter().any(|&b| b != b'0'));
    assert!(header[36..52].iter().any(|&b| b != b'0'));
    assert!(&header[53..] == b"00" || &header[53..] == b"01");
    assert_eq!(traceparent_for_fuzzing(&header), Some(header));
    assert!(http::HeaderValue::from_bytes(&header).is_ok());
});
