//! Request bodies through the engine: urlencoded forms, multipart with a boundary taken
//! from the input, XML, JSON, text and any content type, sent plain or compressed.
//!
//! Input: one byte choosing the content type and the encoding, the content type's
//! parameter (up to the first `\n`), then the body.
//!
//! Asserted: no panic, every verdict keeps its invariants, and a body compressed by the
//! harness (gzip in one or two members, or zlib) is judged exactly as the same body
//! sent plain (or refused as too large when it decodes past the limit). Compressed
//! bodies that expand far past the limit (a run of one byte up to 1 MiB) are refused
//! without being decoded in full; arbitrary bytes labelled gzip or deflate are refused
//! or inspected, never a panic.
#![no_main]

use std::io::Write;

use flate2::write::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use libfuzzer_sys::fuzz_target;
use palisade_fuzz::{embedded_engine, inspect_checked, Fields};
use palisade_waf::{Action, OverLimit, Request, WafSettings};

const LIMIT: usize = 4096;

fn gzip(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(part).expect("in memory");
        out.extend(enc.finish().expect("in memory"));
    }
    out
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut enc = ZlibEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(data).expect("in memory");
    enc.finish().expect("in memory")
}

fuzz_target!(|data: &[u8]| {
    let mut input = Fields(data);
    let choice = input.byte();
    let param = String::from_utf8_lossy(input.take(b'\n')).into_owned();
    let body = input.0;
    let content_type = match choice & 7 {
        0 => "application/x-www-form-urlencoded".to_string(),
        1 => format!("multipart/form-data; boundary={param}"),
        2 => format!("multipart/form-data; {param}"),
        3 => "application/xml".to_string(),
        4 => "application/json".to_string(),
        5 => "text/plain".to_string(),
        6 => String::new(),
        _ => param.clone(),
    };
    let over_limit = if choice & 0x80 != 0 {
        OverLimit::InspectPrefix
    } else {
        OverLimit::Reject
    };
    let settings = WafSettings {
        body_limit: LIMIT,
        over_limit,
        ..WafSettings::default().with_paranoia(1 + (choice >> 5 & 3))
    };
    let engine = embedded_engine();
    let req = |body| {
        Request::new("POST", "/submit")
            .header("content-type", content_type.as_bytes())
            .body(body)
    };
    let plain = inspect_checked(engine, &req(body), &settings);
    let split = usize::from(choice >> 3 & 3) * body.len() / 4;
    let (encoding, compressed) = match choice >> 3 & 3 {
        // Arbitrary bytes labelled as compressed.
        0 => {
            let label: &[u8] = if choice & 0x40 != 0 {
                b"gzip"
            } else {
                b"deflate"
            };
            let r = req(body).header("content-encoding", label);
            let v = inspect_checked(engine, &r, &settings);
            if body.is_empty() {
                assert_eq!(v, plain);
            }
            return;
        }
        1 => ("deflate", zlib(body)),
        2 => ("gzip", gzip(&[body])),
        _ => ("gzip", gzip(&[&body[..split], &body[split..]])),
    };
    if body.is_empty() {
        return;
    }
    let r = req(&compressed).header("content-encoding", encoding.as_bytes());
    let v = inspect_checked(engine, &r, &settings);
    if compressed.len() > LIMIT {
        // Refused before decoding; or only a prefix of the compressed stream inspected,
        // which is no prefix of the plain body.
        if over_limit == OverLimit::Reject {
            assert!(v.body_over_limit && v.action == Action::Block);
        }
    } else if body.len() <= LIMIT || over_limit == OverLimit::InspectPrefix {
        assert_eq!(
            (v.action, v.score, &v.matches),
            (plain.action, plain.score, &plain.matches),
            "{encoding} body judged unlike the same body sent plain"
        );
    } else {
        assert!(v.body_over_limit && v.action == Action::Block, "{v:?}");
    }
    // A small body that expands past the limit: refused (or cut) without decoding it all.
    if let Some(&fill) = body.first() {
        let run = 1 + usize::from(choice) * 4096;
        let bomb = gzip(&[&vec![fill; run]]);
        let r = req(&bomb).header("content-encoding", b"gzip");
        let v = inspect_checked(engine, &r, &settings);
        if run > LIMIT && over_limit == OverLimit::Reject {
            assert!(v.body_over_limit, "{v:?}");
        }
    }
});
