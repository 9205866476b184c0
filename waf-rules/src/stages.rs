//! The stages of an inspection one at a time, for the benchmarks that show where its time
//! goes (`waf/stages` in `benches/benches/waf.rs`). Public only for them: hidden from the
//! docs and not part of the API.

use crate::engine::BODY_HITS_MAX;
use crate::json::json;
use crate::request::values_capacity;
use crate::ruleset::RuleSet;
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
