//! What `serde_json` reads from a JSON body, in document order and in the form the
//! scanner in `json.rs` reports it: `(is a key, name, bytes)`, keys unnamed, strings named
//! by their dotted key path, numbers and literals left out. The scanner's tests and the
//! `waf_json` fuzz target (which includes this file by path) both check the scanner
//! against it.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

pub type Reading = Vec<(bool, String, Vec<u8>)>;

/// `serde_json`'s reading of `body`, or its error message.
pub fn serde_reading(body: &[u8]) -> Result<Reading, String> {
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

struct Collect<'o> {
    path: String,
    out: &'o mut Reading,
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
