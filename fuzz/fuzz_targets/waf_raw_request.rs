//! Arbitrary bytes as a raw HTTP/1.x request (what `palisadectl waf test` reads): the
//! parser reads it or says why not, and the engine inspects what it read at paranoia 1
//! and 4 in block mode, in detect mode, and with a small body limit in both over-limit
//! modes. Every verdict keeps its invariants; a higher paranoia keeps every rule a lower
//! one fired; detect mode scores exactly as block mode does.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use palisade_fuzz::{block_at, embedded_engine, inspect_checked};
use palisade_waf::raw::{self, RawError};
use palisade_waf::{Action, Mode, OverLimit, WafSettings, MATCHES_MAX};

fuzz_target!(|data: &[u8]| {
    let req = match raw::parse(data) {
        Ok(req) => req,
        Err(RawError::Empty) => {
            assert!(data.iter().all(|&b| b == b'\r' || b == b'\n'));
            return;
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(!req.method.is_empty());
    assert!(req.body.len() <= data.len());
    let engine = embedded_engine();
    let view = req.view();
    let low = inspect_checked(engine, &view, &block_at(1));
    let high = inspect_checked(engine, &view, &block_at(4));
    let ids =
        |v: &palisade_waf::Verdict| v.matches.iter().map(|m| m.rule_id).collect::<BTreeSet<_>>();
    if low.matches.len() < MATCHES_MAX && high.matches.len() < MATCHES_MAX {
        assert!(
            ids(&low).is_subset(&ids(&high)),
            "paranoia 4 lost rules that paranoia 1 fired: {:?} vs {:?}",
            ids(&low),
            ids(&high)
        );
    }
    let detect = WafSettings {
        mode: Mode::Detect,
        ..block_at(1)
    };
    let d = inspect_checked(engine, &view, &detect);
    assert_eq!((d.score, &d.matches), (low.score, &low.matches));
    assert_ne!(d.action, Action::Block);
    for over_limit in [OverLimit::Reject, OverLimit::InspectPrefix] {
        let small = WafSettings {
            body_limit: 64,
            over_limit,
            ..block_at(2)
        };
        let v = inspect_checked(engine, &view, &small);
        if over_limit == OverLimit::InspectPrefix {
            assert!(!v.body_over_limit);
        } else if req.body.len() > 64 {
            assert!(v.body_over_limit && v.action == Action::Block);
        }
    }
});
