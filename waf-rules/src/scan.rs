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
//! rules and the argument kinds share one, `ruleset::Level`).

use aho_corasick::automaton::Automaton;
use aho_corasick::nfa::noncontiguous::NFA;
use aho_corasick::{Anchored, MatchKind};

use crate::error::RuleError;

/// A compiled set of literals, matched ASCII case-insensitively, every occurrence reported.
pub(crate) struct Literals {
    /// Where each byte's column starts in the table.
    offsets: [u32; 256],
    /// As `offsets`, with the bytes given to `new` led to a column that keeps
    /// every state as it is: a walk with them reads the data as if those bytes were gone.
    dropping: Option<Box<[u32; 256]>>,
    table: Table,
    /// Match state `s` (match states are numbered first) reports
    /// `matches[match_bounds[s]..match_bounds[s + 1]]`, as (pattern, pattern length), in
    /// the order the aho-corasick crate reports them.
    match_bounds: Vec<u32>,
    matches: Vec<(u32, u32)>,
    /// The length of the longest literal.
    longest: usize,
    #[cfg(test)]
    pub(crate) patterns: Vec<Vec<u8>>,
}

/// Automata of more than 2^15 match or other states fall back to 4-byte ids.
enum Table {
    Narrow(Dense<i16>),
    Wide(Dense<i32>),
}

/// A full transition table, column after column. The byte alone (known ahead) picks the
/// column, and the state indexes it, so the chain of dependent steps is one load per
/// byte, without the multiply of row-major 2-byte ids or the add of premultiplied 4-byte
/// ids (an add in the chain measured 3 % slower on the JSON request).
struct Dense<S> {
    trans: Vec<S>,
    /// Columns in `trans`, each as long as there are states.
    width: usize,
    start: isize,
    /// The number of match states. They are numbered below zero, the others from zero,
    /// so "is a match" is the sign, and "is either of two states a match" is the sign of
    /// their bitwise or: one instruction for both walks of `walk_both`.
    matching: usize,
}

trait Sid: Copy {
    fn index(self) -> isize;
    fn from_index(i: isize) -> Self;
}

impl Sid for i16 {
    #[inline(always)]
    fn index(self) -> isize {
        isize::from(self)
    }
    fn from_index(i: isize) -> i16 {
        i16::try_from(i).expect("fits: checked when choosing the table")
    }
}

impl Sid for i32 {
    #[inline(always)]
    fn index(self) -> isize {
        self as isize
    }
    fn from_index(i: isize) -> i32 {
        i32::try_from(i).expect("fits: the crate's state ids are 32-bit")
    }
}

impl<S: Sid> Dense<S> {
    /// The state after `sid` reads `byte`; `offsets` is one of the column maps of the
    /// `Literals` that holds this table, and `sid` its start state or a state `next`
    /// returned.
    #[inline(always)]
    fn next(&self, offsets: &[u32; 256], sid: isize, byte: u8) -> isize {
        let column = offsets[usize::from(byte)] as usize;
        debug_assert!(column
            .checked_add_signed(sid)
            .is_some_and(|e| e < self.trans.len()));
        // SAFETY: `Literals::build` checks (`Dense::check`) that every offset of both of
        // its column maps is at least the number of match states and at most the table's
        // length less the number of other states, and that every entry and the start
        // state is at least minus the first and below the second; neither the maps nor
        // the table change afterwards. So `sid`, the start state or an entry, is in that
        // range, and `column + sid` is within the table.
        // Checked indexing cost five of a step's eleven instructions: 41 k of the 437 k
        // per JSON inspection. The column's address is formed apart from `sid`, so the
        // chain of dependent steps stays one load per byte (an add of the two in that
        // chain measured slower in wall time).
        unsafe { *self.trans.as_ptr().add(column).offset(sid) }.index()
    }

    /// Asserts what `next` relies on: every state reached, added to any of `maps`'
    /// offsets, stays within the table.
    fn check<'m>(&self, maps: impl IntoIterator<Item = &'m [u32; 256]>) {
        let states = self.trans.len() / self.width;
        assert!(self.matching <= states);
        let others = states - self.matching;
        let valid = |s: isize| s >= -(self.matching as isize) && s < others as isize;
        assert!(valid(self.start));
        for offsets in maps {
            let within =
                |o: u32| o as usize >= self.matching && o as usize + others <= self.trans.len();
            assert!(offsets.iter().all(|&o| within(o)));
        }
        assert!(self.trans.iter().all(|s| valid(s.index())));
    }

    #[inline(always)]
    fn is_match(&self, sid: isize) -> bool {
        sid < 0
    }
}

/// Data at least this long is walked as two interleaved halves (see `scan_halves`).
const HALVES_MIN: usize = 512;

impl Literals {
    /// Compiles `patterns`; `None` when there are none. `occurs_once_dropped` skips the
    /// bytes `dropped`.
    pub(crate) fn new(patterns: &[&[u8]], dropped: &[u8]) -> Result<Option<Literals>, RuleError> {
        Self::build(patterns, dropped, 1 << 15)
    }

    /// As `new`, with 4-byte state ids when there are more than `narrow_max` match
    /// states or other states.
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

        // Match states, in breadth-first order, are numbered -1, -2, ..., the others 0,
        // 1, ...; a column holds them in the order of their numbers, so its offset is
        // where state 0 is.
        let mut renumber = vec![0isize; states.len()];
        let mut match_bounds = vec![0u32];
        let mut matches = Vec::new();
        let mut others = 0;
        for (new, &sid) in renumber.iter_mut().zip(&states) {
            if nfa.is_match(sid) {
                *new = !(match_bounds.len() as isize - 1);
                matches.extend((0..nfa.match_len(sid)).map(|k| {
                    let p = nfa.match_pattern(sid, k);
                    (p.as_u32(), nfa.pattern_len(p) as u32)
                }));
                match_bounds.push(u32::try_from(matches.len()).map_err(|e| error(&e))?);
            } else {
                *new = others;
                others += 1;
            }
        }
        let matching = match_bounds.len() - 1;
        let mut offsets = [0u32; 256];
        for (b, offset) in offsets.iter_mut().enumerate() {
            let at = column[b] * states.len() + matching;
            *offset = u32::try_from(at).map_err(|e| error(&e))?;
        }
        let dropping = (!dropped.is_empty())
            .then(|| -> Result<Box<[u32; 256]>, RuleError> {
                let mut dropping = Box::new(offsets);
                let identity =
                    u32::try_from(width * states.len() + matching).map_err(|e| error(&e))?;
                for &b in dropped {
                    dropping[usize::from(b)] = identity;
                }
                Ok(dropping)
            })
            .transpose()?;
        let columns = Columns {
            renumber: &renumber,
            next: &next,
            width,
            identity: dropping.is_some(),
            matching,
        };
        let table = if matching <= narrow_max && states.len() - matching <= narrow_max {
            let dense = Dense::build(&columns, renumber[0]);
            dense.check(std::iter::once(&offsets).chain(dropping.as_deref()));
            Table::Narrow(dense)
        } else {
            let dense = Dense::build(&columns, renumber[0]);
            dense.check(std::iter::once(&offsets).chain(dropping.as_deref()));
            Table::Wide(dense)
        };
        Ok(Some(Literals {
            offsets,
            dropping,
            table,
            match_bounds,
            matches,
            longest: patterns.iter().map(|p| p.len()).max().unwrap_or(0),
            #[cfg(test)]
            patterns: patterns.iter().map(|p| p.to_vec()).collect(),
        }))
    }

    /// The bytes the scanner's tables hold.
    pub(crate) fn memory_usage(&self) -> usize {
        let trans = match &self.table {
            Table::Narrow(d) => d.trans.len() * std::mem::size_of::<i16>(),
            Table::Wide(d) => d.trans.len() * std::mem::size_of::<i32>(),
        };
        trans
            + std::mem::size_of_val(&self.offsets)
            + self
                .dropping
                .as_ref()
                .map_or(0, |d| std::mem::size_of_val(&**d))
            + self.match_bounds.len() * std::mem::size_of::<u32>()
            + self.matches.len() * std::mem::size_of::<(u32, u32)>()
    }

    /// Whether a literal occurs in `data` once the bytes given to `new` are
    /// removed from it: what a scan of a copy without them would tell, without the copy.
    pub(crate) fn occurs_once_dropped(&self, data: &[u8]) -> bool {
        let offsets = self.dropping.as_deref().unwrap_or(&self.offsets);
        match &self.table {
            Table::Narrow(d) => d.is_match(Self::to_match(d, offsets, data, 0, d.start).1),
            Table::Wide(d) => d.is_match(Self::to_match(d, offsets, data, 0, d.start).1),
        }
    }

    /// Calls `hit(pattern, start, end)` for every occurrence of every literal in `data`,
    /// in order of their ends.
    #[inline]
    pub(crate) fn scan(&self, data: &[u8], mut hit: impl FnMut(usize, usize, usize)) {
        match &self.table {
            Table::Narrow(d) => self.scan_with(d, data, &mut hit),
            Table::Wide(d) => self.scan_with(d, data, &mut hit),
        }
    }

    /// Appends every occurrence of every literal in `data` to `hits` as (pattern, start,
    /// end), in order of their ends, keeping at most `max` in all; returns false if there
    /// were more. Long data is walked as two interleaved halves that never wait for each
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
        let mut walks = Walks {
            at: 0,
            a: d.start,
            b: d.start,
        };
        let mut events = [walks; EVENTS];
        while walks.at < both {
            let n = self.walk_both(d, &first[..both], &second[..both], &mut walks, &mut events);
            for e in &events[..n] {
                if d.is_match(e.a) {
                    self.report(e.a, e.at, &mut |p, s, e| keep(hits, p, s, e));
                }
                // The first walk reports the hits ending up to the middle.
                if d.is_match(e.b) && second_from + e.at > mid {
                    self.report(e.b, second_from + e.at, &mut |p, s, e| keep(later, p, s, e));
                }
            }
        }
        self.scan_from(d, first, walks.at, walks.a, &mut |p, s, e| {
            keep(hits, p, s, e)
        });
        self.scan_from(d, data, second_from + walks.at, walks.b, &mut |p, s, e| {
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
        if data.len() >= HALVES_MIN && self.longest < data.len() / 4 {
            self.scan_halves(d, data, hit);
        } else {
            self.scan_from(d, data, 0, d.start, hit);
        }
    }

    /// Walks `data` from state `sid` at `at` to its end, reporting every hit.
    #[inline]
    fn scan_from<S: Sid>(
        &self,
        d: &Dense<S>,
        data: &[u8],
        mut at: usize,
        mut sid: isize,
        hit: &mut impl FnMut(usize, usize, usize),
    ) {
        while at < data.len() {
            (at, sid) = Self::to_match(d, &self.offsets, data, at, sid);
            if !d.is_match(sid) {
                return;
            }
            self.report(sid, at, hit);
        }
    }

    #[inline]
    fn report(&self, sid: isize, end: usize, hit: &mut impl FnMut(usize, usize, usize)) {
        let k = !sid as usize;
        let (from, to) = (self.match_bounds[k], self.match_bounds[k + 1]);
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
        let mut walks = Walks {
            at: 0,
            a: d.start,
            b: d.start,
        };
        let mut event = [walks];
        let mut second_pending = false;
        while walks.at < both {
            if self.walk_both(d, &first[..both], &second[..both], &mut walks, &mut event) == 0 {
                break;
            }
            if d.is_match(walks.a) {
                self.report(walks.a, walks.at, hit);
            }
            if d.is_match(walks.b) && second_from + walks.at > mid {
                second_pending = true;
                break;
            }
        }
        let (a, b) = (walks.at, second_from + walks.at);
        self.scan_from(d, first, a, walks.a, hit);
        if second_pending {
            self.report(walks.b, b, hit);
        }
        self.scan_from(d, data, b, walks.b, hit);
    }

    /// Walks `a` and `b` on from `walks` until as many steps as `events` holds have
    /// entered a match state in either, or to the end of the shorter; records those
    /// steps in `events` and returns how many there were. Out of line for the reason
    /// `to_match` is: with the hit handling inlined, the states went through the stack.
    /// A hit costs a record and no return: returning at each (and calling again) cost
    /// about 30 instructions a hit, 5.9 k of the 296 k per JSON inspection.
    #[inline(never)]
    fn walk_both<S: Sid>(
        &self,
        d: &Dense<S>,
        a: &[u8],
        b: &[u8],
        walks: &mut Walks,
        events: &mut [Walks],
    ) -> usize {
        let both = a.len().min(b.len());
        let (a, b) = (&a[..both], &b[..both]);
        let Walks {
            at: mut i,
            a: mut sa,
            b: mut sb,
        } = *walks;
        let mut n = 0;
        'walk: {
            while let (Some(ga), Some(gb)) = (
                a.get(i..).and_then(<[u8]>::first_chunk::<8>),
                b.get(i..).and_then(<[u8]>::first_chunk::<8>),
            ) {
                for step in 0..8 {
                    sa = d.next(&self.offsets, sa, ga[step]);
                    sb = d.next(&self.offsets, sb, gb[step]);
                    if d.is_match(sa | sb) {
                        let at = i + step + 1;
                        if let Some(e) = events.get_mut(n) {
                            *e = Walks { at, a: sa, b: sb };
                            n += 1;
                        }
                        if n >= events.len() {
                            i = at;
                            break 'walk;
                        }
                    }
                }
                i += 8;
            }
            while let (Some(&x), Some(&y)) = (a.get(i), b.get(i)) {
                sa = d.next(&self.offsets, sa, x);
                sb = d.next(&self.offsets, sb, y);
                i += 1;
                if d.is_match(sa | sb) {
                    if let Some(e) = events.get_mut(n) {
                        *e = Walks {
                            at: i,
                            a: sa,
                            b: sb,
                        };
                        n += 1;
                    }
                    if n >= events.len() {
                        break;
                    }
                }
            }
        }
        *walks = Walks {
            at: i,
            a: sa,
            b: sb,
        };
        n
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
        mut sid: isize,
    ) -> (usize, isize) {
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

/// Where the two walks of `Literals::walk_both` are: past `at` in each, in states `a`
/// and `b`.
#[derive(Clone, Copy)]
struct Walks {
    at: usize,
    a: isize,
    b: isize,
}

/// How many steps entering a match state `Literals::collect`'s walk records before it
/// returns to report them.
const EVENTS: usize = 32;

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
    /// Breadth-first number to our number.
    renumber: &'a [isize],
    /// Row after row, in breadth-first numbers, `width` columns each.
    next: &'a [u32],
    width: usize,
    /// Whether a last column leads every state to itself.
    identity: bool,
    /// The number of match states.
    matching: usize,
}

impl<S: Sid> Dense<S> {
    fn build(columns: &Columns, start: isize) -> Dense<S> {
        let states = columns.renumber.len();
        let width = columns.width + usize::from(columns.identity);
        let mut trans = vec![S::from_index(0); states * width];
        for (old, &new) in columns.renumber.iter().enumerate() {
            let row = &columns.next[old * columns.width..][..columns.width];
            let at = |c: usize| (c * states + columns.matching).wrapping_add_signed(new);
            for (c, &to) in row.iter().enumerate() {
                trans[at(c)] = S::from_index(columns.renumber[to as usize]);
            }
            if columns.identity {
                trans[at(columns.width)] = S::from_index(new);
            }
        }
        Dense {
            trans,
            width,
            start,
            matching: columns.matching,
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
        /// patterns in the crate's order.
        fn old_walk(&self, data: &[u8]) -> Hits {
            let dfa = &self.dfa;
            let mut sid = dfa.start_state(Anchored::No).expect("unanchored");
            let mut out = Vec::new();
            for (i, &b) in data.iter().enumerate() {
                sid = dfa.next_state(Anchored::No, sid, b);
                if !dfa.is_match(sid) {
                    continue;
                }
                for k in 0..dfa.match_len(sid) {
                    let p = dfa.match_pattern(sid, k);
                    out.push((p.as_usize(), i + 1 - dfa.pattern_len(p), i + 1));
                }
            }
            out
        }

        /// Checks `scanner` against the old scanner (the exact sequence) and the crate's
        /// overlapping search (the same hits); returns the number of hits.
        fn check(&self, scanner: &Literals, data: &[u8], what: &str) -> usize {
            let mut got = Vec::new();
            scanner.scan(data, |p, s, e| got.push((p, s, e)));
            assert_eq!(got, self.old_walk(data), "{what}");
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
        let mut hits = Vec::new();
        let mut hit = |p, s, e| hits.push((p, s, e));
        match &scanner.table {
            Table::Narrow(d) => scanner.scan_from(d, data, 0, d.start, &mut hit),
            Table::Wide(d) => scanner.scan_from(d, data, 0, d.start, &mut hit),
        }
        hits
    }

    /// Checks every walk over `data` (one walk, `scan`'s halves, `collect`'s recorded
    /// halves, capped too) against the old scanner; returns the number of hits.
    fn check_walks(scanner: &Literals, oracle: &Oracle, data: &[u8], what: &str) -> usize {
        let expected = oracle.old_walk(data);
        assert_eq!(one_walk(scanner, data), expected, "one walk: {what}");
        let mut got = Vec::new();
        scanner.scan(data, |p, s, e| got.push((p, s, e)));
        assert_eq!(got, expected, "scan: {what}");
        let (mut hits, mut later) = (Vec::new(), Vec::new());
        assert!(
            scanner.collect(data, &mut hits, &mut later, usize::MAX),
            "{what}"
        );
        let wide = |hits: &[(u32, u32, u32)]| -> Hits {
            hits.iter()
                .map(|&(p, s, e)| (p as usize, s as usize, e as usize))
                .collect()
        };
        assert_eq!(wide(&hits), expected, "collect: {what}");
        for cap in [0, 1, expected.len() / 2, expected.len().saturating_sub(1)] {
            if cap >= expected.len() {
                continue;
            }
            hits.clear();
            assert!(!scanner.collect(data, &mut hits, &mut later, cap), "{what}");
            assert_eq!(hits.len(), cap, "capped at {cap}: {what}");
            assert!(wide(&hits).iter().all(|h| expected.contains(h)), "{what}");
        }
        expected.len()
    }

    /// Lengths at and around every threshold of the walks: one walk or two halves
    /// (`HALVES_MIN`, and `longest` against a quarter of the length), every remainder of
    /// the unrolled rounds, and around the point where the recorded steps fill up.
    fn lengths_around_thresholds() -> impl Iterator<Item = usize> {
        (0..=48)
            .chain(HALVES_MIN - 9..=HALVES_MIN + 17)
            .chain(1000..=1040)
            .chain([2047, 2048, 2049, 4096 + 3])
    }

    #[test]
    fn every_walk_reports_a_hit_at_every_offset() {
        let scanner = overlapping_scanner();
        let oracle = Oracle::new(&scanner.patterns);
        let mut found = 0;
        for len in lengths_around_thresholds() {
            // One hit, a hit across two bytes, and the longest literal with its
            // overlapping hits, at every offset: in every step of a round, on either
            // side of the middle and of where the second half starts, at both ends.
            for literal in [&b"b"[..], b"zz", b"bcabcabcab"] {
                for at in 0..=len.saturating_sub(literal.len()) {
                    let mut data = vec![b'x'; len];
                    if let Some(place) = data.get_mut(at..at + literal.len()) {
                        place.copy_from_slice(literal);
                    }
                    found += check_walks(&scanner, &oracle, &data, &format!("{len} {at}"));
                }
            }
        }
        assert!(found > 100_000, "{found} hits only");
    }

    #[test]
    fn every_walk_reports_hits_every_few_bytes() {
        let scanner = overlapping_scanner();
        let oracle = Oracle::new(&scanner.patterns);
        let mut rng = Rng(0x0dd_ba11);
        for len in lengths_around_thresholds() {
            // A hit in every byte of both halves (the recorded steps fill up at every
            // offset of a round), every `gap` bytes, and runs of random density.
            for gap in 1..=19 {
                let data: Vec<u8> = (0..len)
                    .map(|i| if i % gap == gap - 1 { b'b' } else { b'x' })
                    .collect();
                check_walks(&scanner, &oracle, &data, &format!("{len} every {gap}"));
            }
            for alphabet in [&b"abcz"[..], b"abcxxxxxxxxxxxxxz", b"aaaaaaaaaaaaaabx"] {
                let data: Vec<u8> = (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect();
                check_walks(&scanner, &oracle, &data, &format!("{len} {alphabet:?}"));
            }
        }
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
        for len in [512usize, 513, 600, 1001, 2048] {
            let data: Vec<u8> = (0..len).map(|_| b"abcz"[rng.below(4)]).collect();
            let mut halves = Vec::new();
            scanner.scan(&data, |p, s, e| halves.push((p, s, e)));
            let whole = one_walk(&scanner, &data);
            assert!(whole.len() > 100, "{len}: {} hits only", whole.len());
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
        for narrow_max in [1 << 15, 0] {
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

    #[test]
    fn same_hits_as_the_crate_with_the_embedded_rule_set() {
        let rules = RuleSet::embedded().expect("embedded rules build");
        for level in 1..=4 {
            rules.level(level);
        }
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let mut count = 0;
        for scan in rules.automata() {
            let Some(scanner) = &scan.automaton else {
                continue;
            };
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
        }
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
        // Measured at paranoia 1 (the level built up front): 5.07 MB against 19.7 MB
        // (session 12's rules for the attacks ModSecurity blocked and we passed: +0.37 MB).
        assert!(ours < 5_500_000, "{ours} bytes");
        assert!(ours * 3 < crates, "{ours} bytes against {crates}");
    }

    #[test]
    fn the_unchecked_walk_refuses_tables_it_could_read_past() {
        use super::Dense;
        use std::panic::catch_unwind;
        // Two columns of two states: a match state (-1) and another (0).
        let dense = |trans: Vec<i16>, start: isize| Dense {
            trans,
            width: 2,
            start,
            matching: 1,
        };
        let valid = || {
            let mut offsets = [1u32; 256];
            offsets[usize::from(b'a')] = 3;
            offsets
        };
        dense(vec![0, -1, -1, 0], 0).check([&valid()]);
        dense(vec![-1, -1, -1, -1], -1).check([&valid()]);
        for trans in [
            vec![0, 1, -1, 0],
            vec![0, -2, -1, 0],
            vec![0, 0, 0, i16::MIN],
        ] {
            assert!(catch_unwind(|| dense(trans.clone(), 0).check([&valid()])).is_err());
        }
        for start in [1, -2] {
            assert!(catch_unwind(|| dense(vec![0, -1, -1, 0], start).check([&valid()])).is_err());
        }
        for (byte, offset) in [(b'b', 4), (b'b', 0)] {
            let mut offsets = valid();
            offsets[usize::from(byte)] = offset;
            assert!(catch_unwind(|| dense(vec![0, -1, -1, 0], 0).check([&offsets])).is_err());
            let ok = valid();
            assert!(catch_unwind(|| dense(vec![0, -1, -1, 0], 0).check([&ok, &offsets])).is_err());
        }
    }

    #[test]
    fn no_patterns_is_no_scanner() {
        assert!(Literals::new(&[], &[]).expect("builds").is_none());
    }
}
