//! The literal scanner: every literal of a rule set's chain in one Aho-Corasick DFA,
//! walked by our own loop.
//!
//! A request has hundreds of short values, each scanned once or more, and literal hits
//! are frequent (quotes, `;`). The library's overlapping iterator pays per call and per
//! hit for its resumable state; walking the DFA's transition table directly costs a table
//! lookup and a compare per byte, and a hit is a callback.

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind};

use crate::error::RuleError;

/// A compiled set of literals, matched ASCII case-insensitively, every occurrence reported.
pub(crate) struct Literals {
    dfa: DFA,
    start: StateID,
    /// The length of the longest literal.
    longest: usize,
}

/// Data at least this long is walked as two interleaved halves (see `scan_halves`).
const HALVES_MIN: usize = 512;

impl Literals {
    /// Compiles `patterns`; `None` when there are none.
    pub(crate) fn new(patterns: &[&[u8]]) -> Result<Option<Literals>, RuleError> {
        if patterns.is_empty() {
            return Ok(None);
        }
        // A full DFA: the automata are small (a few hundred literals) and walked for every
        // value, so trading memory for the fastest per-byte step is right here. No
        // prefilter: it would be consulted at every return to the start state, which in
        // text full of short literals is most bytes.
        let dfa = DFA::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(patterns)
            .map_err(|e| RuleError::Automaton(e.to_string()))?;
        let start = dfa
            .start_state(Anchored::No)
            .map_err(|e| RuleError::Automaton(e.to_string()))?;
        let longest = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        Ok(Some(Literals {
            dfa,
            start,
            longest,
        }))
    }

    /// Calls `hit(pattern, start, end)` for every occurrence of every literal in `data`,
    /// in order of their ends.
    #[inline]
    pub(crate) fn scan(&self, data: &[u8], mut hit: impl FnMut(usize, usize, usize)) {
        if data.len() >= HALVES_MIN && self.longest < data.len() / 4 {
            self.scan_halves(data, &mut hit);
        } else {
            self.scan_from(data, 0, self.start, &mut hit);
        }
    }

    /// Walks `data` from state `sid` at `at` to its end, reporting every hit.
    #[inline]
    fn scan_from(
        &self,
        data: &[u8],
        mut at: usize,
        mut sid: StateID,
        hit: &mut impl FnMut(usize, usize, usize),
    ) {
        let dfa = &self.dfa;
        while at < data.len() {
            (at, sid) = self.to_special(data, at, sid);
            if !dfa.is_special(sid) || dfa.is_dead(sid) {
                return;
            }
            self.report(sid, at, hit);
        }
    }

    #[inline]
    fn report(&self, sid: StateID, end: usize, hit: &mut impl FnMut(usize, usize, usize)) {
        let dfa = &self.dfa;
        for k in 0..dfa.match_len(sid) {
            let p = dfa.match_pattern(sid, k);
            hit(p.as_usize(), end - dfa.pattern_len(p), end);
        }
    }

    /// Long data as two walks in one loop: each step waits for its state's row to load,
    /// so two independent walks take little more time than one. The second walk starts
    /// from the start state `longest - 1` bytes before the middle, where it has read
    /// enough to be in the state a walk from the beginning would be in by the middle, and
    /// reports only hits ending past it. Hits stay in order of their ends: the second walk
    /// pauses at its first hit until the first walk is done.
    fn scan_halves(&self, data: &[u8], hit: &mut impl FnMut(usize, usize, usize)) {
        let dfa = &self.dfa;
        let mid = data.len() / 2;
        let first = &data[..mid];
        let second_from = mid + 1 - self.longest.max(1);
        let second = &data[second_from..];
        let (mut sa, mut sb) = (self.start, self.start);
        let mut second_pending = false;
        let mut i = 0;
        // A dead state has no matches and stays dead, so the loop need not test for one.
        while i < first.len().min(second.len()) {
            sa = dfa.next_state(Anchored::No, sa, first[i]);
            sb = dfa.next_state(Anchored::No, sb, second[i]);
            i += 1;
            if dfa.is_special(sa) {
                self.report(sa, i, hit);
            }
            if dfa.is_special(sb) && second_from + i > mid {
                second_pending = true;
                break;
            }
        }
        let (a, b) = (i, second_from + i);
        if !dfa.is_dead(sa) {
            self.scan_from(first, a, sa, hit);
        }
        if second_pending {
            if dfa.is_dead(sb) {
                return;
            }
            self.report(sb, b, hit);
        }
        self.scan_from(data, b, sb, hit);
    }

    /// Walks from state `sid` at `data[at]` until just after the byte that enters a
    /// special (match or dead) state, or to the end. Kept out of line: with the hit
    /// handling beside it, the per-byte loop spilled its state to the stack and cost
    /// about three times the instructions.
    /// Four bytes per round, so the end of the data is tested once per four steps.
    #[inline(never)]
    fn to_special(&self, data: &[u8], mut at: usize, mut sid: StateID) -> (usize, StateID) {
        let dfa = &self.dfa;
        while let Some(&[b0, b1, b2, b3]) = data.get(at..at + 4) {
            for (step, b) in [b0, b1, b2, b3].into_iter().enumerate() {
                sid = dfa.next_state(Anchored::No, sid, b);
                if dfa.is_special(sid) {
                    return (at + step + 1, sid);
                }
            }
            at += 4;
        }
        while at < data.len() {
            sid = dfa.next_state(Anchored::No, sid, data[at]);
            at += 1;
            if dfa.is_special(sid) {
                break;
            }
        }
        (at, sid)
    }
}

#[cfg(test)]
mod tests {
    use super::Literals;

    fn hits(patterns: &[&str], data: &str) -> Vec<(usize, usize, usize)> {
        let patterns: Vec<&[u8]> = patterns.iter().map(|p| p.as_bytes()).collect();
        let scanner = Literals::new(&patterns)
            .expect("builds")
            .expect("has patterns");
        let mut out = Vec::new();
        scanner.scan(data.as_bytes(), |p, s, e| out.push((p, s, e)));
        out
    }

    #[test]
    fn reports_every_overlapping_occurrence_in_any_ascii_case() {
        assert_eq!(
            hits(&["union", "union select", "on"], "x UNION Select"),
            vec![(0, 2, 7), (2, 5, 7), (1, 2, 14)]
        );
        assert_eq!(hits(&["'"], "a'b'"), vec![(0, 1, 2), (0, 3, 4)]);
        assert!(hits(&["abc"], "ab").is_empty());
    }

    #[test]
    fn finds_hits_at_every_offset_and_length() {
        for len in 0..14 {
            for at in 0..len {
                let mut data = vec![b'a'; len];
                data[at] = b';';
                let mut expected = vec![(0, at, at + 1)];
                if at + 2 < len {
                    data[at + 2] = b'X';
                    expected.push((1, at + 2, at + 3));
                }
                let got = hits(&[";", "x"], std::str::from_utf8(&data).expect("ascii"));
                assert_eq!(got, expected, "{len} {at}");
            }
        }
    }

    #[test]
    fn long_data_walked_in_halves_reports_what_one_walk_does() {
        let patterns: [&[u8]; 6] = [b"ab", b"abcab", b"b", b"cabca", b"zz", b"bcabcabcab"];
        let scanner = Literals::new(&patterns)
            .expect("builds")
            .expect("has patterns");
        // Pseudo-random text over the patterns' bytes, long enough to be halved.
        let mut state = 0x2545_f491_u32;
        let mut data = Vec::new();
        for len in [512usize, 513, 600, 1001, 2048] {
            data.clear();
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                data.push(b"abcz"[(state % 4) as usize]);
            }
            let mut halves = Vec::new();
            scanner.scan(&data, |p, s, e| halves.push((p, s, e)));
            let mut whole = Vec::new();
            scanner.scan_from(&data, 0, scanner.start, &mut |p, s, e| {
                whole.push((p, s, e))
            });
            assert!(whole.len() > 100, "{len}: {} hits only", whole.len());
            assert_eq!(halves, whole, "{len}");
        }
    }

    #[test]
    fn no_patterns_is_no_scanner() {
        assert!(Literals::new(&[]).expect("builds").is_none());
    }
}
