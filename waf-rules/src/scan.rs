//! The literal scanner: every literal of a rule set's chain in one Aho-Corasick DFA,
//! laid out compactly and walked by our own loop.
//!
//! A request has hundreds of short values, each scanned once or more, and literal hits
//! are frequent (quotes, `;`). The library's overlapping iterator pays per call and per
//! hit for its resumable state; walking a transition table directly costs a table lookup
//! and a compare per byte, and a hit is a callback.
//!
//! The aho-corasick crate builds the automaton; we copy it into our own table because
//! each step of the walk waits on the load of its state's row, so the table's size is the
//! walk's speed. The crate's DFA keeps upper and lower case apart in its byte classes,
//! pads them to 128 columns and uses 4-byte state ids (about 21 MB for the base rule
//! set); ours folds case, has a column per byte of the literals and one for all other
//! bytes, and uses 2-byte ids: 5.4 MB (3.7 MB since automata hold one paranoia level's
//! rules and the argument kinds share one, `ruleset::Level`; 2.7 MB since they hold
//! literals' first 8 bytes, `ruleset::PREFIX_MAX`).

use aho_corasick::automaton::Automaton;
use aho_corasick::nfa::noncontiguous::NFA;
use aho_corasick::{Anchored, MatchKind};

use crate::error::RuleError;

/// A compiled set of literals, matched ASCII case-insensitively, every occurrence reported
/// but a word's glued to another (`Literals::count_as_words`).
pub(crate) struct Literals {
    /// Where each byte's column starts in the table.
    offsets: [u32; 256],
    /// As `offsets`, with the bytes given to `new` led to a column that keeps
    /// every state as it is: a walk with them reads the data as if those bytes were gone.
    dropping: Option<Box<[u32; 256]>>,
    /// The offset `dropping` gives the dropped bytes (`offsets` gives it no byte).
    identity: u32,
    table: Table,
    /// Match state `s` (match states are numbered first) reports
    /// `matches[match_bounds[s]..match_bounds[s + 1]]`, as (pattern, pattern length), in
    /// the order the aho-corasick crate reports them.
    match_bounds: Vec<u32>,
    matches: Vec<(u32, u32)>,
    /// The length of the longest literal.
    longest: usize,
    /// Per match state: the length its literals share when each of them counts only as a
    /// word (`count_as_words`), else 0. `scan` and `collect` do not report such a state's
    /// hits when the literal is glued to an ASCII letter or `_`: `hit_counts` would throw
    /// them away, after their cost (a JSON body's prose has an `or` in every `door` and a
    /// `w` in every `women`).
    word_len: Vec<u8>,
    #[cfg(test)]
    pub(crate) patterns: Vec<Vec<u8>>,
    /// Per pattern, what `count_as_words` was told.
    #[cfg(test)]
    words: Vec<bool>,
}

/// Automata of more than `u16::MAX` states fall back to 4-byte ids.
enum Table {
    Narrow(Dense<u16>),
    Wide(Dense<u32>),
}

/// A full transition table, column after column. The byte alone (known ahead) picks the
/// column, and the state indexes it, so the chain of dependent steps is one load per
/// byte, without the multiply of row-major 2-byte ids or the add of premultiplied 4-byte
/// ids (an add in the chain measured 3 % slower on the JSON request).
struct Dense<S> {
    trans: Vec<S>,
    /// Columns in `trans`, each as long as there are states.
    width: usize,
    start: usize,
    /// States below this one are match states, so "is a match" is one compare.
    matching: usize,
}

trait Sid: Copy {
    fn index(self) -> usize;
    fn from_index(i: usize) -> Self;
}

impl Sid for u16 {
    #[inline(always)]
    fn index(self) -> usize {
        usize::from(self)
    }
    fn from_index(i: usize) -> u16 {
        u16::try_from(i).expect("fits: checked when choosing the table")
    }
}

impl Sid for u32 {
    #[inline(always)]
    fn index(self) -> usize {
        self as usize
    }
    fn from_index(i: usize) -> u32 {
        u32::try_from(i).expect("fits: the crate's state ids are 32-bit")
    }
}

impl<S: Sid> Dense<S> {
    /// The state after `sid` reads `byte`; `offsets` is one of the column maps of the
    /// `Literals` that holds this table, and `sid` its start state or a state `next`
    /// returned.
    #[inline(always)]
    fn next(&self, offsets: &[u32; 256], sid: usize, byte: u8) -> usize {
        let column = offsets[usize::from(byte)] as usize;
        debug_assert!(column + sid < self.trans.len());
        // SAFETY: `Literals::build` checks (`Dense::check`) that every offset of both of
        // its column maps plus the number of states is at most the table's length, and
        // that every entry and the start state is below the number of states; neither
        // the maps nor the table change afterwards. So `sid`, the start state or an
        // entry, is below the number of states, and `column + sid` is within the table.
        // Checked indexing cost five of a step's eleven instructions: 41 k of the 437 k
        // per JSON inspection. The column's address is formed apart from `sid`, so the
        // chain of dependent steps stays one load per byte (an add of the two in that
        // chain measured slower in wall time).
        unsafe { self.trans.get_unchecked(column..).get_unchecked(sid) }.index()
    }

    /// Asserts what `next` relies on: `offsets` + the number of states stays within the
    /// table, and every state reached is below that number.
    fn check<'m>(&self, maps: impl IntoIterator<Item = &'m [u32; 256]>) {
        let states = self.trans.len() / self.width;
        assert!(self.start < states);
        for offsets in maps {
            assert!(offsets
                .iter()
                .all(|&o| o as usize + states <= self.trans.len()));
        }
        assert!(self.trans.iter().all(|s| s.index() < states));
    }

    #[inline(always)]
    fn is_match(&self, sid: usize) -> bool {
        sid < self.matching
    }
}

/// A body (`collect`), or a value asked whether a literal occurs with bytes dropped
/// (`occurs_with`), at least this long is walked as two interleaved halves.
const HALVES_MIN: usize = 512;
/// A value at least this long is walked as two interleaved halves (see `scan_halves`),
/// when the literals are short enough for them to overlap little.
const SCAN_HALVES_MIN: usize = 32;

impl Literals {
    /// Compiles `patterns`; `None` when there are none. `occurs_once_dropped` skips the
    /// bytes `dropped`.
    pub(crate) fn new(patterns: &[&[u8]], dropped: &[u8]) -> Result<Option<Literals>, RuleError> {
        Self::build(patterns, dropped, usize::from(u16::MAX))
    }

    /// As `new`, with 4-byte state ids when there are more than `narrow_max` states.
    fn build(
        patterns: &[&[u8]],
        dropped: &[u8],
        narrow_max: usize,
    ) -> Result<Option<Literals>, RuleError> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let error = |e: &dyn std::fmt::Display| RuleError::Automaton(e.to_string());
        // No prefilter: it would be consulted at every return to the start state, which
        // in text full of short literals is most bytes.
        let nfa = NFA::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(patterns)
            .map_err(|e| error(&e))?;
        let start = nfa.start_state(Anchored::No).map_err(|e| error(&e))?;

        // One column per byte of the literals, case folded; every other byte leads back
        // to the start state from anywhere, so they share one column. (Merging columns
        // equal in every state found none to merge in the base rule set.)
        let mut used = [false; 256];
        for b in patterns.iter().flat_map(|p| p.iter()) {
            used[usize::from(b.to_ascii_lowercase())] = true;
        }
        let mut representative = Vec::new();
        let mut column = [0usize; 256];
        if let Some(b) = (0..=255u8).find(|&b| !used[usize::from(b.to_ascii_lowercase())]) {
            representative.push(b);
        }
        for b in 0..=255u8 {
            if used[usize::from(b)] {
                column[usize::from(b)] = representative.len();
                representative.push(b);
            }
        }
        for b in b'A'..=b'Z' {
            column[usize::from(b)] = column[usize::from(b.to_ascii_lowercase())];
        }

        // Every state reachable from the start, breadth first, and its transitions. The
        // crate's state ids index its states, so a vector maps them to ours.
        const UNSEEN: usize = usize::MAX;
        let width = representative.len();
        let mut number = vec![UNSEEN; start.as_usize() + 1];
        number[start.as_usize()] = 0;
        let mut states = vec![start];
        let mut next = Vec::new();
        let mut s = 0;
        while s < states.len() {
            let from = states[s];
            for &b in &representative {
                let to = nfa.next_state(Anchored::No, from, b);
                if number.len() <= to.as_usize() {
                    number.resize(to.as_usize() + 1, UNSEEN);
                }
                if number[to.as_usize()] == UNSEEN {
                    number[to.as_usize()] = states.len();
                    states.push(to);
                }
                next.push(u32::try_from(number[to.as_usize()]).map_err(|e| error(&e))?);
            }
            s += 1;
        }

        // Match states first, in breadth-first order, then the others.
        let mut order: Vec<usize> = (0..states.len()).collect();
        order.sort_by_key(|&s| !nfa.is_match(states[s]));
        let mut renumber = vec![0; states.len()];
        for (new, &old) in order.iter().enumerate() {
            renumber[old] = new;
        }
        let mut match_bounds = vec![0u32];
        let mut matches = Vec::new();
        for &old in order.iter().take_while(|&&s| nfa.is_match(states[s])) {
            let sid = states[old];
            matches.extend((0..nfa.match_len(sid)).map(|k| {
                let p = nfa.match_pattern(sid, k);
                (p.as_u32(), nfa.pattern_len(p) as u32)
            }));
            match_bounds.push(u32::try_from(matches.len()).map_err(|e| error(&e))?);
        }
        let matching = match_bounds.len() - 1;
        let mut offsets = [0u32; 256];
        for (b, offset) in offsets.iter_mut().enumerate() {
            *offset = u32::try_from(column[b] * states.len()).map_err(|e| error(&e))?;
        }
        // Past every column of `offsets`: the last column, which exists with `dropping`.
        let identity = u32::try_from(width * states.len()).map_err(|e| error(&e))?;
        let dropping = (!dropped.is_empty()).then(|| {
            let mut dropping = Box::new(offsets);
            for &b in dropped {
                dropping[usize::from(b)] = identity;
            }
            dropping
        });
        let columns = Columns {
            order: &order,
            renumber: &renumber,
            next: &next,
            width,
            identity: dropping.is_some(),
        };
        let table = if states.len() <= narrow_max {
            let dense = Dense::build(&columns, renumber[0], matching);
            dense.check(std::iter::once(&offsets).chain(dropping.as_deref()));
            Table::Narrow(dense)
        } else {
            let dense = Dense::build(&columns, renumber[0], matching);
            dense.check(std::iter::once(&offsets).chain(dropping.as_deref()));
            Table::Wide(dense)
        };
        Ok(Some(Literals {
            offsets,
            dropping,
            identity,
            table,
            match_bounds,
            matches,
            longest: patterns.iter().map(|p| p.len()).max().unwrap_or(0),
            word_len: vec![0; matching],
            #[cfg(test)]
            patterns: patterns.iter().map(|p| p.to_vec()).collect(),
            #[cfg(test)]
            words: vec![false; patterns.len()],
        }))
    }

    /// Says which patterns count only where they stand as words: a hit of pattern `p`
    /// with `counts_as_word(p)` glued to an ASCII letter or `_` before or after it counts
    /// for nothing, so `scan` and `collect` need not report it. They still do when its
    /// state also reports other literals, or when the glue lies outside the data.
    pub(crate) fn count_as_words(&mut self, counts_as_word: impl Fn(usize) -> bool) {
        #[cfg(test)]
        for (p, word) in self.words.iter_mut().enumerate() {
            *word = counts_as_word(p);
        }
        for (sid, len) in self.word_len.iter_mut().enumerate() {
            let (from, to) = (self.match_bounds[sid], self.match_bounds[sid + 1]);
            let found = &self.matches[from as usize..to as usize];
            let shared = found.first().map_or(0, |&(_, l)| l);
            *len = match u8::try_from(shared) {
                Ok(shared)
                    if found
                        .iter()
                        .all(|&(p, l)| l == u32::from(shared) && counts_as_word(p as usize)) =>
                {
                    shared
                }
                _ => 0,
            };
        }
    }

    /// Whether the hit of match state `sid` ending at `end` of `data` is a word's literal
    /// glued to an ASCII letter or `_` (see `word_len`).
    #[inline]
    fn glued(&self, sid: usize, data: &[u8], end: usize) -> bool {
        match self.word_len.get(sid) {
            Some(&len) if len != 0 => glued_word(usize::from(len), data, end),
            _ => false,
        }
    }

    /// The bytes the scanner's tables hold.
    pub(crate) fn memory_usage(&self) -> usize {
        let trans = match &self.table {
            Table::Narrow(d) => d.trans.len() * std::mem::size_of::<u16>(),
            Table::Wide(d) => d.trans.len() * std::mem::size_of::<u32>(),
        };
        trans
            + std::mem::size_of_val(&self.offsets)
            + self
                .dropping
                .as_ref()
                .map_or(0, |d| std::mem::size_of_val(&**d))
            + self.match_bounds.len() * std::mem::size_of::<u32>()
            + self.matches.len() * std::mem::size_of::<(u32, u32)>()
            + self.word_len.len()
    }

    /// Whether a literal occurs in `data` once the bytes given to `new` are
    /// removed from it: what a scan of a copy without them would tell, without the copy.
    pub(crate) fn occurs_once_dropped(&self, data: &[u8]) -> bool {
        let offsets = self.dropping.as_deref().unwrap_or(&self.offsets);
        match &self.table {
            Table::Narrow(d) => self.occurs_with(d, offsets, data),
            Table::Wide(d) => self.occurs_with(d, offsets, data),
        }
    }

    /// `occurs_once_dropped` with the column map `offsets`. Long data is walked as two
    /// interleaved halves (as `scan_halves` does): the first to the middle, the second
    /// from where the bytes before the middle hold `longest - 1` kept ones, so that it
    /// reads every kept byte of a literal whose last kept byte is at or past the middle.
    /// Either walk entering a match state has found a literal of the copy without the
    /// dropped bytes, so neither waits for the other.
    fn occurs_with<S: Sid>(&self, d: &Dense<S>, offsets: &[u32; 256], data: &[u8]) -> bool {
        let (mut at, mut sid) = (0, d.start);
        if data.len() >= HALVES_MIN {
            if let Some(from) = self.second_from(offsets, data) {
                let mid = data.len() / 2;
                sid = Self::both_occur(d, offsets, &data[..mid], &data[from..from + mid]);
                if d.is_match(sid) {
                    return true;
                }
                // The first walk has read its half; the second goes on to the end.
                at = from + mid;
            }
        }
        d.is_match(Self::to_match(d, offsets, data, at, sid).1)
    }

    /// Where the second walk of `occurs_with` starts: as far before the middle of `data`
    /// as it takes to pass `longest - 1` bytes that `offsets` keeps. `None` past a
    /// quarter of the data (mostly dropped bytes, or a very long literal): one walk then.
    fn second_from(&self, offsets: &[u32; 256], data: &[u8]) -> Option<usize> {
        let mid = data.len() / 2;
        let floor = mid / 2;
        let mut from = mid;
        let mut needed = self.longest.saturating_sub(1);
        while needed > 0 {
            if from == floor {
                return None;
            }
            from -= 1;
            needed -= usize::from(offsets[usize::from(data[from])] != self.identity);
        }
        Some(from)
    }

    /// Calls `hit(pattern, start, end)` for every occurrence of every literal in `data`
    /// but glued words' (`count_as_words`), in order of their ends.
    #[inline]
    pub(crate) fn scan(&self, data: &[u8], mut hit: impl FnMut(usize, usize, usize)) {
        match &self.table {
            Table::Narrow(d) => self.scan_with(d, data, &mut hit),
            Table::Wide(d) => self.scan_with(d, data, &mut hit),
        }
    }

    /// Appends every occurrence of every literal in `data` but glued words' to `hits` as
    /// (pattern, start, end), in order of their ends, keeping at most `max` in all;
    /// returns false if there were more. Long data is walked as two interleaved halves that never wait for each
    /// other (unlike `scan`, whose callback must see hits in order): the second half's
    /// hits go to `later` and are appended after the first's. A body walk hits often (a
    /// JSON document has a quote or `;` every few dozen bytes), and `scan`'s halves pause
    /// at the second half's first hit, so they would be one walk for most of the body.
    pub(crate) fn collect(
        &self,
        data: &[u8],
        hits: &mut Vec<(u32, u32, u32)>,
        later: &mut Vec<(u32, u32, u32)>,
        max: usize,
    ) -> bool {
        match &self.table {
            Table::Narrow(d) => self.collect_with(d, data, hits, later, max),
            Table::Wide(d) => self.collect_with(d, data, hits, later, max),
        }
    }

    fn collect_with<S: Sid>(
        &self,
        d: &Dense<S>,
        data: &[u8],
        hits: &mut Vec<(u32, u32, u32)>,
        later: &mut Vec<(u32, u32, u32)>,
        max: usize,
    ) -> bool {
        let kept = std::cell::Cell::new(hits.len());
        let complete = std::cell::Cell::new(true);
        let keep = |into: &mut Vec<(u32, u32, u32)>, p: usize, start: usize, end: usize| {
            if kept.get() < max {
                kept.set(kept.get() + 1);
                into.push((p as u32, start as u32, end as u32));
            } else {
                complete.set(false);
            }
        };
        if data.len() < HALVES_MIN || self.longest >= data.len() / 4 {
            self.scan_from(d, data, 0, d.start, &mut |p, s, e| keep(hits, p, s, e));
            return complete.get();
        }
        later.clear();
        let Halves {
            mid,
            first,
            second_from,
            second,
            both,
        } = self.halves(data);
        let (mut sa, mut sb) = (d.start, d.start);
        let mut i = 0;
        while i < both {
            (i, sa, sb) =
                Self::both_to_match(d, &self.offsets, &first[..both], &second[..both], i, sa, sb);
            if d.is_match(sa) && !self.glued(sa, data, i) {
                self.report(sa, i, &mut |p, s, e| keep(hits, p, s, e));
            }
            // The first walk reports the hits ending up to the middle.
            let b_end = second_from + i;
            if d.is_match(sb) && b_end > mid && !self.glued(sb, data, b_end) {
                self.report(sb, b_end, &mut |p, s, e| keep(later, p, s, e));
            }
        }
        self.scan_from(d, first, i, sa, &mut |p, s, e| keep(hits, p, s, e));
        self.scan_from(d, data, second_from + i, sb, &mut |p, s, e| {
            keep(later, p, s, e)
        });
        hits.append(later);
        complete.get()
    }

    #[inline]
    fn scan_with<S: Sid>(
        &self,
        d: &Dense<S>,
        data: &[u8],
        hit: &mut impl FnMut(usize, usize, usize),
    ) {
        if data.len() >= SCAN_HALVES_MIN && self.longest < data.len() / 4 {
            self.scan_halves(d, data, hit);
        } else {
            self.scan_from(d, data, 0, d.start, hit);
        }
    }

    /// Walks `data` from state `sid` at `at` to its end, reporting every hit but glued
    /// words'.
    #[inline]
    fn scan_from<S: Sid>(
        &self,
        d: &Dense<S>,
        data: &[u8],
        mut at: usize,
        mut sid: usize,
        hit: &mut impl FnMut(usize, usize, usize),
    ) {
        while at < data.len() {
            (at, sid) = Self::to_match(d, &self.offsets, data, at, sid);
            if !d.is_match(sid) {
                return;
            }
            if !self.glued(sid, data, at) {
                self.report(sid, at, hit);
            }
        }
    }

    #[inline]
    fn report(&self, sid: usize, end: usize, hit: &mut impl FnMut(usize, usize, usize)) {
        let (from, to) = (self.match_bounds[sid], self.match_bounds[sid + 1]);
        for &(p, len) in &self.matches[from as usize..to as usize] {
            hit(p as usize, end - len as usize, end);
        }
    }

    /// Where the two walks over `data` start and how far they go side by side: the second
    /// starts `longest - 1` bytes before the middle (see `scan_halves`).
    fn halves<'d>(&self, data: &'d [u8]) -> Halves<'d> {
        let mid = data.len() / 2;
        let first = &data[..mid];
        let second_from = mid + 1 - self.longest.max(1);
        let second = &data[second_from..];
        Halves {
            mid,
            first,
            second_from,
            second,
            both: first.len().min(second.len()),
        }
    }

    /// Long data as two walks in one loop: each step waits for its state's row to load,
    /// so two independent walks take little more time than one. The second walk starts
    /// from the start state `longest - 1` bytes before the middle, where it has read
    /// enough to be in the state a walk from the beginning would be in by the middle, and
    /// reports only hits ending past it. Hits stay in order of their ends: the second walk
    /// pauses at its first hit until the first walk is done.
    fn scan_halves<S: Sid>(
        &self,
        d: &Dense<S>,
        data: &[u8],
        hit: &mut impl FnMut(usize, usize, usize),
    ) {
        let Halves {
            mid,
            first,
            second_from,
            second,
            both,
        } = self.halves(data);
        let (mut sa, mut sb) = (d.start, d.start);
        let mut second_pending = false;
        let mut i = 0;
        while i < both {
            (i, sa, sb) =
                Self::both_to_match(d, &self.offsets, &first[..both], &second[..both], i, sa, sb);
            if d.is_match(sa) && !self.glued(sa, data, i) {
                self.report(sa, i, hit);
            }
            if d.is_match(sb) && second_from + i > mid && !self.glued(sb, data, second_from + i) {
                second_pending = true;
                break;
            }
        }
        let (a, b) = (i, second_from + i);
        self.scan_from(d, first, a, sa, hit);
        if second_pending {
            self.report(sb, b, hit);
        }
        self.scan_from(d, data, b, sb, hit);
    }

    /// Walks `a` and `b`, of the same length, from the start state with the column map
    /// `offsets`: the first match state either enters, else the state `b` ends in.
    /// Eight steps of each per round, as in `to_match`: a round of one step each, with its
    /// end test, cost 16 instructions per pair of bytes against 12.
    #[inline(never)]
    fn both_occur<S: Sid>(d: &Dense<S>, offsets: &[u32; 256], a: &[u8], b: &[u8]) -> usize {
        let (mut sa, mut sb) = (d.start, d.start);
        let (mut a, mut b) = (a, b);
        while let (Some((x, rest_a)), Some((y, rest_b))) =
            (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
        {
            for (&x, &y) in x.iter().zip(y) {
                sa = d.next(offsets, sa, x);
                sb = d.next(offsets, sb, y);
                if d.is_match(sa) {
                    return sa;
                }
                if d.is_match(sb) {
                    return sb;
                }
            }
            (a, b) = (rest_a, rest_b);
        }
        for (&x, &y) in a.iter().zip(b) {
            sa = d.next(offsets, sa, x);
            sb = d.next(offsets, sb, y);
            if d.is_match(sa) {
                return sa;
            }
            if d.is_match(sb) {
                return sb;
            }
        }
        sb
    }

    /// Walks `a` and `b` with the column map `offsets` from states `sa` and `sb` at `i` until
    /// just after the first step that enters a match state in either, or to the end. Out of
    /// line for the reason `to_match` is: with the hit handling inlined, the states went
    /// through the stack.
    #[inline(never)]
    fn both_to_match<S: Sid>(
        d: &Dense<S>,
        offsets: &[u32; 256],
        a: &[u8],
        b: &[u8],
        mut i: usize,
        mut sa: usize,
        mut sb: usize,
    ) -> (usize, usize, usize) {
        while let (Some(&x), Some(&y)) = (a.get(i), b.get(i)) {
            sa = d.next(offsets, sa, x);
            sb = d.next(offsets, sb, y);
            i += 1;
            if d.is_match(sa.min(sb)) {
                break;
            }
        }
        (i, sa, sb)
    }

    /// Walks from state `sid` at `data[at]` until just after the byte that enters a
    /// match state, or to the end. Kept out of line: with the hit handling beside it, the
    /// per-byte loop spilled its state to the stack and cost about three times the
    /// instructions. Eight bytes per round, so the end of the data is tested once per
    /// eight steps (1.4 k fewer instructions per JSON inspection than four).
    #[inline(never)]
    fn to_match<S: Sid>(
        d: &Dense<S>,
        offsets: &[u32; 256],
        data: &[u8],
        mut at: usize,
        mut sid: usize,
    ) -> (usize, usize) {
        while let Some(&[b0, b1, b2, b3, b4, b5, b6, b7]) = data.get(at..at + 8) {
            for (step, b) in [b0, b1, b2, b3, b4, b5, b6, b7].into_iter().enumerate() {
                sid = d.next(offsets, sid, b);
                if d.is_match(sid) {
                    return (at + step + 1, sid);
                }
            }
            at += 8;
        }
        while at < data.len() {
            sid = d.next(offsets, sid, data[at]);
            at += 1;
            if d.is_match(sid) {
                break;
            }
        }
        (at, sid)
    }
}

/// `Literals::glued` for a word's literal of `len` bytes: whether an ASCII letter or `_`
/// stands just before it or just after it in `data`.
fn glued_word(len: usize, data: &[u8], end: usize) -> bool {
    end.checked_sub(len + 1)
        .is_some_and(|before| is_glue(data[before]))
        || data.get(end).is_some_and(|&after| is_glue(after))
}

/// The bytes that glue a literal to a word for every word-bounded check of
/// `ruleset::hit_counts`: each of them ends both a keyword's standing alone
/// (`detect::keyword_stands_alone`) and a word's standing as one, before it and after it.
pub(crate) fn is_glue(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

/// Data split for a walk in two halves (`Literals::halves`).
struct Halves<'d> {
    mid: usize,
    first: &'d [u8],
    second_from: usize,
    second: &'d [u8],
    /// The length both walks cover in step.
    both: usize,
}

/// The breadth-first walk's transitions and the new state numbers.
struct Columns<'a> {
    /// Our states in their new order, as breadth-first numbers.
    order: &'a [usize],
    /// Breadth-first number to new number.
    renumber: &'a [usize],
    /// Row after row, in breadth-first numbers, `width` columns each.
    next: &'a [u32],
    width: usize,
    /// Whether a last column leads every state to itself.
    identity: bool,
}

impl<S: Sid> Dense<S> {
    fn build(columns: &Columns, start: usize, matching: usize) -> Dense<S> {
        let states = columns.order.len();
        let width = columns.width + usize::from(columns.identity);
        let mut trans = vec![S::from_index(0); states * width];
        for (new, &old) in columns.order.iter().enumerate() {
            let row = &columns.next[old * columns.width..][..columns.width];
            for (c, &to) in row.iter().enumerate() {
                trans[c * states + new] = S::from_index(columns.renumber[to as usize]);
            }
            if columns.identity {
                trans[columns.width * states + new] = S::from_index(new);
            }
        }
        Dense {
            trans,
            width,
            start,
            matching,
        }
    }
}

#[cfg(test)]
mod tests {
    use aho_corasick::automaton::Automaton;
    use aho_corasick::dfa::DFA;
    use aho_corasick::{AhoCorasick, Anchored, MatchKind};

    use super::{Literals, Table, HALVES_MIN};
    use crate::ruleset::RuleSet;

    type Hits = Vec<(usize, usize, usize)>;

    fn hits(patterns: &[&str], data: &str) -> Hits {
        let patterns: Vec<&[u8]> = patterns.iter().map(|p| p.as_bytes()).collect();
        let scanner = Literals::new(&patterns, &[])
            .expect("builds")
            .expect("has patterns");
        let mut out = Vec::new();
        scanner.scan(data.as_bytes(), |p, s, e| out.push((p, s, e)));
        out
    }

    /// What the scanner must report, built once per set of literals.
    struct Oracle {
        /// The scanner this one replaced walked this DFA.
        dfa: DFA,
        ac: AhoCorasick,
    }

    impl Oracle {
        fn new(patterns: &[Vec<u8>]) -> Oracle {
            let dfa = DFA::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .prefilter(false)
                .build(patterns)
                .expect("builds");
            let ac = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .build(patterns)
                .expect("builds");
            Oracle { dfa, ac }
        }

        /// The old scanner's hits: one walk over the crate's DFA, a match state's
        /// patterns in the crate's order. With `words`, without the hits a scan leaves
        /// out: those at one position whose patterns all count as words (`words[p]`) with
        /// one length, glued to an ASCII letter or `_` before or after.
        fn old_walk(&self, data: &[u8], words: Option<&[bool]>) -> Hits {
            let dfa = &self.dfa;
            let mut sid = dfa.start_state(Anchored::No).expect("unanchored");
            let mut out = Vec::new();
            for (i, &b) in data.iter().enumerate() {
                sid = dfa.next_state(Anchored::No, sid, b);
                if !dfa.is_match(sid) {
                    continue;
                }
                let found: Vec<usize> = (0..dfa.match_len(sid))
                    .map(|k| dfa.match_pattern(sid, k).as_usize())
                    .collect();
                let len = |p: usize| dfa.pattern_len(aho_corasick::PatternID::must(p));
                let glue = |at: Option<usize>| {
                    at.and_then(|at| data.get(at))
                        .is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_')
                };
                if let Some(words) = words {
                    let first = len(found[0]);
                    if found.iter().all(|&p| words[p] && len(p) == first)
                        && first <= 255
                        && (glue((i + 1).checked_sub(first + 1)) || glue(Some(i + 1)))
                    {
                        continue;
                    }
                }
                for p in found {
                    out.push((p, i + 1 - len(p), i + 1));
                }
            }
            out
        }

        /// Checks `scanner` against the old scanner: its sequence of hits, less some of
        /// the glued words' hits and none of the others (a walk in halves may keep a
        /// glued hit at the middle, where it cannot see the byte after). Then checks the
        /// old scanner against the crate's overlapping search (the same hits). Returns
        /// the number of hits.
        fn check(&self, scanner: &Literals, data: &[u8], what: &str) -> usize {
            let mut got = Vec::new();
            scanner.scan(data, |p, s, e| got.push((p, s, e)));
            let every = self.old_walk(data, None);
            let counted = self.old_walk(data, Some(&scanner.words));
            let within = |part: &Hits, whole: &Hits| {
                let mut rest = whole.iter();
                part.iter().all(|h| rest.any(|w| w == h))
            };
            assert!(within(&got, &every), "{what}: a hit the old scanner lacks");
            assert!(within(&counted, &got), "{what}: a counted hit left out");
            let mut got = every;
            let mut every: Hits = self
                .ac
                .find_overlapping_iter(data)
                .map(|m| (m.pattern().as_usize(), m.start(), m.end()))
                .collect();
            every.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, every, "{what}");
            got.len()
        }
    }

    use crate::test_rng::Rng;

    /// Overlapping literals, and the table of their small automaton.
    fn overlapping_scanner() -> Literals {
        let patterns: [&[u8]; 6] = [b"ab", b"abcab", b"b", b"cabca", b"zz", b"bcabcabcab"];
        let scanner = Literals::new(&patterns, &[])
            .expect("builds")
            .expect("has patterns");
        assert!(
            matches!(scanner.table, Table::Narrow(_)),
            "a small automaton has 2-byte ids"
        );
        scanner
    }

    /// The hits of one walk from the start, without the halves.
    fn one_walk(scanner: &Literals, data: &[u8]) -> Vec<(usize, usize, usize)> {
        let Table::Narrow(dense) = &scanner.table else {
            unreachable!("checked by overlapping_scanner");
        };
        let mut hits = Vec::new();
        scanner.scan_from(dense, data, 0, dense.start, &mut |p, s, e| {
            hits.push((p, s, e))
        });
        hits
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
        let scanner = overlapping_scanner();
        let mut rng = Rng(0x2545_f491);
        // From the shortest value walked in halves (`SCAN_HALVES_MIN`, and more than four
        // times the longest literal) to bodies.
        for len in [32usize, 40, 41, 42, 57, 100, 511, 512, 513, 600, 1001, 2048] {
            let data: Vec<u8> = (0..len).map(|_| b"abcz"[rng.below(4)]).collect();
            let mut halves = Vec::new();
            scanner.scan(&data, |p, s, e| halves.push((p, s, e)));
            let whole = one_walk(&scanner, &data);
            assert!(whole.len() > len / 8, "{len}: {} hits only", whole.len());
            assert_eq!(halves, whole, "{len}");
        }
    }

    #[test]
    fn collected_hits_are_those_of_one_walk_in_order_and_capped() {
        let scanner = overlapping_scanner();
        let mut rng = Rng(0x5eed_cafe);
        let (mut hits, mut later) = (Vec::new(), Vec::new());
        for len in [0usize, 1, 40, 511, 512, 513, 600, 1001, 2048] {
            // Sparse hits too, so that one half may have none.
            for alphabet in [&b"abcz"[..], b"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzxyb"] {
                let data: Vec<u8> = (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect();
                let whole: Vec<(u32, u32, u32)> = one_walk(&scanner, &data)
                    .into_iter()
                    .map(|(p, s, e)| (p as u32, s as u32, e as u32))
                    .collect();
                hits.clear();
                assert!(scanner.collect(&data, &mut hits, &mut later, usize::MAX));
                assert_eq!(hits, whole, "{len}");
                if !whole.is_empty() {
                    let cap = whole.len() - 1;
                    hits.clear();
                    assert!(!scanner.collect(&data, &mut hits, &mut later, cap), "{len}");
                    assert!(hits.len() <= cap, "{len}");
                }
            }
        }
    }

    #[test]
    fn same_hits_as_the_crate_on_random_data_of_every_length() {
        let sets: [&[&[u8]]; 4] = [
            &[b"ab", b"abcab", b"b", b"cabca", b"zz", b"bcabcabcab"],
            &[
                b"'",
                b"\"",
                b"union",
                b"UNION SELECT",
                b"on",
                b"or",
                b"--",
                b"/*",
                b"\0",
            ],
            &[
                b"\xc3\xa9t\xc3\xa9",
                b"\xff\xfe",
                b"a\0b",
                b"\xc3",
                b"A\xe9",
                b"\x80",
            ],
            &[b"a", b"aa", b"aaa", b"aaaa", b"Ab", b"ba", b"bab", b"B"],
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for patterns in sets {
            let scanner = Literals::new(patterns, &[]).expect("builds").expect("some");
            let oracle = Oracle::new(&scanner.patterns);
            let mut alphabet: Vec<u8> = patterns.iter().flat_map(|p| p.iter().copied()).collect();
            alphabet.extend(alphabet.clone().iter().map(|b| b.to_ascii_uppercase()));
            alphabet.extend([0, 0x80, 0xc3, 0xff, b' ', b'x']);
            let mut found = 0;
            // Every length up to past the halving one, then every seventh.
            for len in (0..700).chain((700..2100).step_by(7)) {
                let data: Vec<u8> = (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect();
                found += oracle.check(&scanner, &data, &format!("{patterns:?} {len}"));
            }
            assert!(found > 20_000, "{patterns:?}: {found} hits only");
        }
    }

    #[test]
    fn four_byte_ids_walk_the_same_automaton() {
        let patterns: [&[u8]; 5] = [b"ab", b"abcab", b"b", b"cabca", b"bcabcabcab"];
        let scanner = Literals::build(&patterns, &[], 0)
            .expect("builds")
            .expect("some");
        assert!(matches!(scanner.table, Table::Wide(_)));
        let oracle = Oracle::new(&scanner.patterns);
        let mut rng = Rng(0x2545_f491);
        for len in [0usize, 3, 100, 511, 512, 2048] {
            let data: Vec<u8> = (0..len).map(|_| b"abcAB"[rng.below(5)]).collect();
            oracle.check(&scanner, &data, &format!("{len}"));
        }
    }

    #[test]
    fn a_walk_dropping_bytes_finds_what_a_scan_of_the_copy_without_them_does() {
        let patterns: [&[u8]; 5] = [b"ab", b"abca", b"b c", b"cab\0", b"zz"];
        let dropped = [b' ', b'\t', 0];
        let oracle = Oracle::new(&patterns.map(<[u8]>::to_vec));
        let mut rng = Rng(0x9e37_79b9);
        for narrow_max in [usize::from(u16::MAX), 0] {
            let scanner = Literals::build(&patterns, &dropped, narrow_max)
                .expect("builds")
                .expect("some");
            let mut found = 0;
            for len in 0..400 {
                let data: Vec<u8> = (0..len % 40).map(|_| b"abcZ \t\0"[rng.below(7)]).collect();
                let copy: Vec<u8> = data
                    .iter()
                    .copied()
                    .filter(|b| !dropped.contains(b))
                    .collect();
                let expected = oracle.ac.find_overlapping_iter(&copy).next().is_some();
                assert_eq!(scanner.occurs_once_dropped(&data), expected, "{data:?}");
                found += usize::from(expected);
            }
            assert!(found > 100 && found < 350, "{found}");
        }
    }

    /// What `occurs_once_dropped` answered before long data was walked in halves: one
    /// walk from the start.
    fn occurs_in_one_walk(scanner: &Literals, data: &[u8]) -> bool {
        let offsets = scanner.dropping.as_deref().unwrap_or(&scanner.offsets);
        match &scanner.table {
            Table::Narrow(d) => d.is_match(Literals::to_match(d, offsets, data, 0, d.start).1),
            Table::Wide(d) => d.is_match(Literals::to_match(d, offsets, data, 0, d.start).1),
        }
    }

    /// `filler` bytes, with one of `patterns` (in random case, `dropped` bytes strewn
    /// between its bytes) planted near the middle, near the end or anywhere, or none; returns the
    /// data and whether the planted literal's kept bytes straddle the middle, the
    /// occurrence only the second of the halves' walks can see.
    fn planted(
        rng: &mut Rng,
        len: usize,
        filler: &[u8],
        dropped: &[u8],
        patterns: &[Vec<u8>],
    ) -> (Vec<u8>, bool) {
        let mut data: Vec<u8> = (0..len).map(|_| filler[rng.below(filler.len())]).collect();
        if rng.below(8) == 0 || len == 0 {
            return (data, false);
        }
        let mut literal = Vec::new();
        for &b in &patterns[rng.below(patterns.len())] {
            if !dropped.is_empty() {
                for _ in 0..[0, 0, 1, 3][rng.below(4)] {
                    literal.push(dropped[rng.below(dropped.len())]);
                }
            }
            literal.push(if rng.below(2) == 0 {
                b.to_ascii_uppercase()
            } else {
                b
            });
        }
        if literal.len() > len {
            return (data, false);
        }
        // Its end within a literal's length of the middle, of the end, or anywhere.
        let mid = len / 2;
        let near = |rng: &mut Rng, at: usize| {
            (at + rng.below(2 * literal.len() + 2)).saturating_sub(literal.len())
        };
        let end = match rng.below(3) {
            0 => near(rng, mid),
            1 => near(rng, len),
            _ => rng.below(len + 1),
        }
        .clamp(literal.len(), len);
        let at = end - literal.len();
        data[at..end].copy_from_slice(&literal);
        let kept = |i: &usize| !dropped.contains(&data[*i]);
        let first = (at..end).find(kept);
        let last = (at..end).rev().find(kept);
        let straddles = first.zip(last).is_some_and(|(f, l)| f < mid && l >= mid);
        (data, straddles)
    }

    #[test]
    fn a_dropping_walk_in_halves_answers_as_one_walk_on_random_literals() {
        let mut rng = Rng(0x51ed_270b_9a3c_44d1);
        let mut straddling = 0;
        let mut found = 0;
        for round in 0..60 {
            // Literals over a few letters and, now and then, a dropped byte.
            let dropped: &[u8] = [&b" \t\0"[..], b" ", b"\0", b""][round % 4];
            let letters = b"abcdeABC \t\0";
            let patterns: Vec<Vec<u8>> = (0..1 + rng.below(12))
                .map(|_| {
                    let longest = [4, 12, 40][rng.below(3)];
                    let len = 1 + rng.below(longest);
                    (0..len)
                        .map(|_| letters[rng.below(letters.len())])
                        .collect()
                })
                .collect();
            let refs: Vec<&[u8]> = patterns.iter().map(Vec::as_slice).collect();
            for narrow_max in [usize::from(u16::MAX), 0] {
                let scanner = Literals::build(&refs, dropped, narrow_max)
                    .expect("builds")
                    .expect("some");
                // Filler the literals miss, with dropped bytes sparse or in long runs
                // (then the second walk starts far before the middle, or not at all).
                let sparse: Vec<u8> = b"xyzwv".iter().chain(dropped).copied().collect();
                let dense: Vec<u8> = b"x"
                    .iter()
                    .chain(dropped.iter().cycle().take(20))
                    .copied()
                    .collect();
                for len in (0..1100).chain((1100..4200).step_by(97)) {
                    let filler = if len % 3 == 0 { &dense } else { &sparse };
                    let (data, straddles) = planted(&mut rng, len, filler, dropped, &patterns);
                    let expected = occurs_in_one_walk(&scanner, &data);
                    assert_eq!(
                        scanner.occurs_once_dropped(&data),
                        expected,
                        "{patterns:?} dropping {dropped:?}: {data:?}"
                    );
                    straddling += usize::from(straddles && expected && len >= HALVES_MIN);
                    found += usize::from(expected);
                }
            }
        }
        assert!(straddling > 3_000, "{straddling} straddling hits only");
        assert!(found > 50_000, "{found} hits only");
    }

    /// Calls `f` with every automaton of the embedded rule set, at every paranoia level.
    fn for_each_embedded_scanner(mut f: impl FnMut(&Literals)) {
        let rules = RuleSet::embedded().expect("embedded rules build");
        for level in 1..=4 {
            rules.level(level);
        }
        for scan in rules.automata() {
            if let Some(scanner) = &scan.automaton {
                f(scanner);
            }
        }
    }

    #[test]
    fn a_dropping_walk_in_halves_answers_as_one_walk_with_the_embedded_rule_set() {
        let mut rng = Rng(0x7f4a_7c15_9e37_79b9);
        let (mut count, mut straddling) = (0, 0);
        for_each_embedded_scanner(|scanner| {
            count += 1;
            let dropped: Vec<u8> = (0..=255u8)
                .filter(|&b| {
                    scanner
                        .dropping
                        .as_ref()
                        .is_some_and(|d| d[usize::from(b)] == scanner.identity)
                })
                .collect();
            // Filler from bytes in none of the literals, and the dropped ones.
            let in_literals = |b: u8| {
                scanner
                    .patterns
                    .iter()
                    .flatten()
                    .any(|p| p.eq_ignore_ascii_case(&b))
            };
            let filler: Vec<u8> = (0..=255u8)
                .filter(|&b| !in_literals(b))
                .chain(dropped.iter().copied())
                .collect();
            for len in (HALVES_MIN - 8..HALVES_MIN + 200).chain((712..2600).step_by(7)) {
                let (data, straddles) =
                    planted(&mut rng, len, &filler, &dropped, &scanner.patterns);
                let expected = occurs_in_one_walk(scanner, &data);
                assert_eq!(
                    scanner.occurs_once_dropped(&data),
                    expected,
                    "automaton {count}, dropping {dropped:?}: {data:?}"
                );
                straddling += usize::from(straddles && expected && len >= HALVES_MIN);
            }
        });
        assert!(count > 10, "{count} automata only");
        assert!(straddling > 2_000, "{straddling} straddling hits only");
    }

    #[test]
    fn same_hits_as_the_crate_with_the_embedded_rule_set() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let mut count = 0;
        for_each_embedded_scanner(|scanner| {
            count += 1;
            let patterns = &scanner.patterns;
            let oracle = Oracle::new(patterns);
            for target in [0usize, 40, 300, 700, 2100] {
                // The rule set's own literals, in random case, glued with random bytes.
                let mut data = Vec::new();
                while data.len() < target {
                    let p = &patterns[rng.below(patterns.len())];
                    data.extend(p.iter().map(|&b| match rng.below(3) {
                        0 => b.to_ascii_uppercase(),
                        1 => b.to_ascii_lowercase(),
                        _ => b,
                    }));
                    for _ in 0..rng.below(4) {
                        data.push(rng.next() as u8);
                    }
                }
                oracle.check(
                    scanner,
                    &data,
                    &format!("automaton {count}, {target} bytes"),
                );
            }
        });
        assert!(count > 10, "{count} automata only");
    }

    #[test]
    fn embedded_rule_set_tables_stay_small() {
        let rules = RuleSet::embedded().expect("embedded rules build");
        let ours = rules.scanner_bytes();
        let held = rules.automata();
        let automata = || held.iter().filter_map(|s| s.automaton.as_ref());
        assert_eq!(ours, automata().map(Literals::memory_usage).sum::<usize>());
        let crates: usize = automata()
            .map(|a| {
                DFA::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .prefilter(false)
                    .build(&a.patterns)
                    .expect("builds")
                    .memory_usage()
            })
            .sum();
        println!(
            "literal scanners of the embedded rule set: {ours} bytes (the crate's DFA: {crates})"
        );
        // Measured at paranoia 1 (the level built up front): 2.73 MB against 10.6 MB for
        // the same 8-byte prefixes (5.07 MB against 19.7 MB with whole literals).
        assert!(ours < 3_000_000, "{ours} bytes");
        assert!(ours * 3 < crates, "{ours} bytes against {crates}");
    }

    #[test]
    fn the_unchecked_walk_refuses_tables_it_could_read_past() {
        use super::Dense;
        use std::panic::catch_unwind;
        // Two states, two columns.
        let dense = |trans: Vec<u16>, start: usize| Dense {
            trans,
            width: 2,
            start,
            matching: 0,
        };
        let mut offsets = [0u32; 256];
        offsets[usize::from(b'a')] = 2;
        dense(vec![0, 1, 1, 0], 1).check([&offsets]);
        assert!(catch_unwind(|| dense(vec![0, 2, 1, 0], 0).check([&offsets])).is_err());
        assert!(catch_unwind(|| dense(vec![0, 1, 1, 0], 2).check([&offsets])).is_err());
        offsets[usize::from(b'b')] = 3;
        assert!(catch_unwind(|| dense(vec![0, 1, 1, 0], 0).check([&offsets])).is_err());
    }

    #[test]
    fn no_patterns_is_no_scanner() {
        assert!(Literals::new(&[], &[]).expect("builds").is_none());
    }
}
