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
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The engine's cap on values taken from one body (`request::MAX_BODY_VALUES`).
const MAX_BODY_VALUES: usize = 2048;

type Values = Vec<(bool, String, Vec<u8>)>;

struct Collect<'o> {
    path: String,
    out: &'o mut Values,
}

impl<'de> DeserializeSeed<'de> for Collect<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Collect<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.out.push((false, self.path, v.as_bytes().to_vec()));
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Collect {
                path: self.path.clone(),
                out: &mut *self.out,
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            self.out
                .push((true, String::new(), key.as_bytes().to_vec()));
            let path = if self.path.is_empty() {
                key
            } else {
                format!("{}.{key}", self.path)
            };
            map.next_value_seed(Collect {
                path,
                out: &mut *self.out,
            })?;
        }
        Ok(())
    }
}

/// `serde_json`'s reading, or its error message.
fn serde_values(body: &[u8]) -> Result<Values, String> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    Collect {
        path: String::new(),
        out: &mut out,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(out)
}

fuzz_target!(|body: &[u8]| {
    let (count, ours) = palisade_waf::json_scan_for_fuzzing(body);
    let shown = || String::from_utf8_lossy(body).into_owned();
    let fell_back = ours
        .last()
        .is_some_and(|(key, name, data)| !key && name.is_empty() && data == body);
    match serde_values(body) {
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
