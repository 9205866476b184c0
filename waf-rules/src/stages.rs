//! The stages of an inspection one at a time, for the benchmarks that show where its time
//! goes (`waf/stages` in `benches/benches/waf.rs`). Public only for them: hidden from the
//! docs and not part of the API.

use crate::engine::BODY_HITS_MAX;
use crate::json::json;
use crate::request::values_capacity;
use crate::ruleset::{BodyWalk as Walk, RuleSet};
use crate::scan::Literals;

/// Reads a JSON body into values as an inspection does, into a vector of the capacity an
/// inspection gives it; returns how many values it read.
pub fn json_values(body: &[u8]) -> usize {
    let mut names = String::new();
    let mut values = Vec::with_capacity(values_capacity(body.len()));
    json(body, &mut names, &mut values);
    values.len()
}

/// The walk an inspection makes over a parsed body at one paranoia level, its hit buffers
/// kept from walk to walk as a thread's inspections keep them.
pub struct BodyWalk<'s> {
    automaton: &'s Literals,
    hits: Vec<(u32, u32, u32)>,
    later: Vec<(u32, u32, u32)>,
}

impl<'s> BodyWalk<'s> {
    /// `None` when the rule set has no body literals at `paranoia`.
    pub fn new(set: &'s RuleSet, paranoia: u8) -> Option<BodyWalk<'s>> {
        let automaton = set.level(paranoia).body.as_ref()?.scan.automaton.as_ref()?;
        Some(BodyWalk {
            automaton,
            hits: Vec::new(),
            later: Vec::new(),
        })
    }

    /// Walks `body`; returns the number of hits (0 past the engine's hit limit, where it
    /// gives the walk up).
    pub fn walk(&mut self, body: &[u8]) -> usize {
        self.hits.clear();
        match self
            .automaton
            .collect(body, &mut self.hits, &mut self.later, BODY_HITS_MAX)
        {
            true => self.hits.len(),
            false => 0,
        }
    }
}

/// The literals the body walk at `paranoia` looks for, each once: for comparing its walk
/// with other multi-pattern matchers on the same set. Levels outside 1-4 are taken as
/// the nearest, as the engine takes them.
pub fn body_walk_literals(set: &RuleSet, paranoia: u8) -> Vec<Vec<u8>> {
    let paranoia = paranoia.clamp(1, 4);
    let mut literals: Vec<Vec<u8>> =
        Walk::patterns(set, |&r| set.rules[r as usize].paranoia <= paranoia)
            .patterns
            .iter()
            .map(|&(literal, ..)| literal.to_vec())
            .collect();
    literals.sort_unstable();
    literals.dedup();
    literals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stages_read_and_walk_a_body_as_an_inspection_does() {
        // Three keys and two strings; the number is no value of its own.
        assert_eq!(json_values(br#"{"a": ["x", 1], "b": {"c": "y"}}"#), 5);
        let set = RuleSet::embedded().expect("base rules compile");
        let mut walk = BodyWalk::new(&set, 1).expect("the base rules have body literals");
        let literals = body_walk_literals(&set, 1);
        assert!(literals.len() > 100, "{} literals", literals.len());
        assert_eq!(body_walk_literals(&set, 0), literals);
        for literal in &literals {
            assert!(
                walk.walk(literal) > 0,
                "{:?}",
                String::from_utf8_lossy(literal)
            );
        }
    }
}
