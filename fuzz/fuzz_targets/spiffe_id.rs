//! SPIFFE IDs, trust domains and the policy language's ID and path patterns, from
//! arbitrary text: each parser accepts or returns an error; what it accepts is in the
//! canonical form the specification requires (so one identity has one spelling), prints
//! back as it was written and parses back to itself; a wildcard pattern matches the IDs
//! it was written to match.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_api::policy::{PathPattern, SpiffeIdPattern};
use palisade_spiffe::{IdError, SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match SpiffeId::parse(text) {
        Ok(id) => {
            assert_eq!(id.as_str(), text);
            assert_eq!(id.to_string(), text);
            assert_eq!(SpiffeId::parse(id.as_str()).as_ref(), Ok(&id));
            let td = id.trust_domain_name();
            assert!(!td.is_empty() && td.len() <= 255);
            assert!(td
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_')));
            assert_eq!(format!("spiffe://{td}{}", id.path()), text);
            assert_eq!(TrustDomain::new(td), Ok(id.trust_domain()));
            if !id.path().is_empty() {
                for segment in id.path()[1..].split('/') {
                    assert!(!segment.is_empty() && segment != "." && segment != "..");
                }
            }
            if let Some((ns, sa)) = id.workload_parts() {
                assert_eq!(
                    SpiffeId::workload(&id.trust_domain(), ns, sa),
                    Ok(id.clone())
                );
            }
            let exact = SpiffeIdPattern::parse(text).expect("an ID is a pattern");
            assert!(exact.matches(&id));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(td) = TrustDomain::new(text) {
        assert_eq!(td.as_str(), text);
    }
    match SpiffeIdPattern::parse(text) {
        Ok(pattern) => {
            assert_eq!(pattern.as_str(), text);
            // The IDs the wildcard stands for: any valid segment in place of each `*`.
            for stand_in in ["x", "orders", "a.b-c_d"] {
                let id = match SpiffeId::parse(&text.replace('*', stand_in)) {
                    // A pattern near the length limit stands for shorter IDs only.
                    Err(IdError::TooLong) => continue,
                    id => id.expect("a pattern's instances are valid IDs"),
                };
                assert!(pattern.matches(&id), "{text} does not match {id}");
            }
            if let Some(exact) = pattern.exact() {
                assert_eq!(exact.as_str(), text);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match PathPattern::parse(text) {
        Ok(pattern) => {
            assert_eq!(pattern.as_str(), text);
            assert!(!pattern.segments().is_empty());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
