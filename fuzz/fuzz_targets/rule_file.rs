//! A rule file as an operator may write it (YAML text): it is refused with an error that
//! names the file, or it compiles; a compiled set then checks its own examples and
//! inspects requests built from the same text at every paranoia level, with every
//! verdict keeping its invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_fuzz::{check_verdict, Fields};
use palisade_waf::{Engine, Request, RuleError, RuleSet, WafSettings};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let set = match RuleSet::from_yaml("fuzz.yaml", text) {
        Ok(set) => set,
        Err(e) => {
            let message = e.to_string();
            match e {
                RuleError::Syntax { .. } | RuleError::Invalid { .. } => {
                    assert!(message.starts_with("fuzz.yaml:"), "{message}")
                }
                _ => assert!(!message.is_empty()),
            }
            return;
        }
    };
    for failure in set.check_examples() {
        assert!(!failure.to_string().is_empty());
    }
    let infos = set.rules();
    assert_eq!(infos.len(), set.len());
    let engine = Engine::new(set);
    // Values taken from the text itself: a rule's own literals and examples are the
    // likeliest to reach its regex and transforms.
    let mut fields = Fields(data);
    let first = String::from_utf8_lossy(fields.take(b'\n')).into_owned();
    let target = format!("/{}?q={}", first.replace(['?', ' '], ""), first.len());
    let requests = [
        Request::new("GET", &target).header("user-agent", first.as_bytes()),
        Request::new("POST", "/form")
            .header("content-type", b"application/x-www-form-urlencoded")
            .header("cookie", fields.0)
            .body(fields.0),
        Request::new("POST", "/json")
            .header("content-type", b"application/json")
            .body(br#"{"a":"../../etc/passwd","b":["1' OR '1'='1",{"c":"<script>"}]}"#),
    ];
    for paranoia in 1..=4 {
        let settings = WafSettings::default().with_paranoia(paranoia);
        engine.rules().prepare(&settings);
        for req in &requests {
            let verdict = engine.inspect(req, &settings, None);
            check_verdict(&engine, &verdict, &settings);
        }
    }
});
