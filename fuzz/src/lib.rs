//! What the WAF fuzz targets share: the embedded rule set, compiled once per process,
//! and the invariants every verdict must keep whatever the request.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use palisade_waf::{Action, Engine, Mode, Request, RuleSet, Verdict, WafSettings, MATCHES_MAX};

/// The engine over the rules compiled into the proxy.
pub fn embedded_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(RuleSet::embedded().expect("the embedded rules compile")))
}

/// Inspects `req` under `settings` and checks the verdict's invariants; returns it.
pub fn inspect_checked(engine: &Engine, req: &Request<'_>, settings: &WafSettings) -> Verdict {
    let verdict = engine.inspect(req, settings, None);
    check_verdict(engine, &verdict, settings);
    verdict
}

/// A verdict agrees with itself: the action follows from the score (or the body's
/// refusal) and the mode, every listed rule is enabled at the paranoia in force, and the
/// score is the sum of the rules that fired, each once.
pub fn check_verdict(engine: &Engine, verdict: &Verdict, settings: &WafSettings) {
    let paranoia = settings.paranoia.clamp(1, 4);
    let threshold = settings.threshold.max(1);
    assert_eq!(verdict.threshold, threshold);
    if settings.mode == Mode::Off {
        assert_eq!(verdict.action, Action::Pass);
        assert!(verdict.matches.is_empty() && verdict.score == 0);
        return;
    }
    let refused = verdict.body_over_limit || verdict.body_undecodable;
    let expected = if verdict.score >= threshold || refused {
        match settings.mode {
            Mode::Block => Action::Block,
            _ => Action::Detect,
        }
    } else {
        Action::Pass
    };
    assert_eq!(verdict.action, expected, "{verdict:?}");
    if refused {
        assert!(verdict.matches.is_empty(), "{verdict:?}");
    }
    assert!(verdict.matches.len() <= MATCHES_MAX);
    let scores: BTreeMap<u32, (u32, u8)> = engine
        .rules()
        .rules()
        .into_iter()
        .map(|r| (r.id, (r.score, r.paranoia)))
        .collect();
    let mut fired = BTreeMap::new();
    for m in &verdict.matches {
        let &(score, rule_paranoia) = scores
            .get(&m.rule_id)
            .expect("a match names a rule of the set");
        assert_eq!((m.score, m.paranoia), (score, rule_paranoia));
        assert!(
            m.paranoia <= paranoia,
            "rule {} above paranoia {paranoia}",
            m.rule_id
        );
        fired.insert(m.rule_id, score);
    }
    let listed: u32 = fired.values().sum();
    if verdict.matches.len() < MATCHES_MAX {
        assert_eq!(verdict.score, listed, "{verdict:?}");
    } else {
        assert!(verdict.score >= listed, "{verdict:?}");
    }
}

/// Block-mode settings at `paranoia`.
pub fn block_at(paranoia: u8) -> WafSettings {
    WafSettings::default().with_paranoia(paranoia)
}

/// Reads fuzz input as a sequence of fields: `take` returns the bytes up to the next
/// `sep` (or the rest).
pub struct Fields<'a>(pub &'a [u8]);

impl<'a> Fields<'a> {
    pub fn take(&mut self, sep: u8) -> &'a [u8] {
        match self.0.iter().position(|&b| b == sep) {
            Some(i) => {
                let field = &self.0[..i];
                self.0 = &self.0[i + 1..];
                field
            }
            None => std::mem::take(&mut self.0),
        }
    }

    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}
