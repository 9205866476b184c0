//! The JSON body scanner (with its SSE2 string search) against `serde_json`: where
//! `serde_json` reads a document, the scanner reports the same keys and strings, with
//! the same dotted names, in the same order (up to the engine's cap on values); where
//! `serde_json` refuses it, the scanner falls back to the whole body as one value.
//! Accepted differences (see `waf-rules/src/json.rs`): the scanner allows one more level
//! of nesting (128 open containers), and numbers beyond f64 such as `1e400`.
//! The body is then inspected as an `application/json` request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_fuzz::{block_at, embedded_engine, inspect_checked};
use palisade_waf::Request;

/// The engine's cap on values taken from one body (`request::MAX_BODY_VALUES`).
const MAX_BODY_VALUES: usize = 2048;

/// `serde_json`'s reading, shared with the scanner's own tests.
#[path = "../../waf-rules/src/json_oracle.rs"]
mod json_oracle;

fuzz_target!(|body: &[u8]| {
    let (count, ours) = palisade_waf::json_scan_for_fuzzing(body);
    let shown = || String::from_utf8_lossy(body).into_owned();
    let fell_back = ours
        .last()
        .is_some_and(|(key, name, data)| !key && name.is_empty() && data == body);
    match json_oracle::serde_reading(body) {
        Ok(theirs) => {
            let kept = theirs.len().min(MAX_BODY_VALUES);
            assert_eq!(ours, theirs[..kept], "{:?}", shown());
            let strings = theirs.iter().filter(|v| !v.0).count();
            assert_eq!(count, strings, "{:?}", shown());
        }
        Err(e) if e.contains("number out of range") || e.contains("recursion limit") => {}
        Err(e) => assert!(
            fell_back,
            "serde_json refuses ({e}) but the scanner read {ours:?} from {:?}",
            shown()
        ),
    }
    let engine = embedded_engine();
    let req = Request::new("POST", "/api")
        .header("content-type", b"application/json")
        .body(body);
    inspect_checked(engine, &req, &block_at(1));
    inspect_checked(engine, &req, &block_at(4));
});
