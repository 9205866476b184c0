//! Literals a regex cannot match without, for regexes whose rule gives no `requires`.
//!
//! A rule file may list the literals of which one must occur for its regex to match; the
//! regex then runs only when the prefilter saw one. Without that list the regex would run
//! on every value it targets. This module derives such a list from the regex itself: a
//! concatenation needs each of its parts (we keep the most selective), an alternation needs
//! one literal of each branch (we keep the union). Derived from the syntax tree, the list
//! can only be too wide (the regex then just runs more often), never too narrow.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Most literals kept; past it, the regex runs unconditionally.
const LITERALS_MAX: usize = 64;

/// Literals (ASCII-lowercased: the prefilter ignores ASCII case) of which every match of
/// `pattern` holds one, or `None` when some match may hold none.
pub(crate) fn literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()?;
    let mut set = required(&hir)?;
    set.sort();
    set.dedup();
    (set.len() <= LITERALS_MAX).then_some(set)
}

fn required(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => None,
        HirKind::Literal(lit) => Some(vec![lit.0.to_ascii_lowercase()]),
        HirKind::Class(class) => folded_byte(class).map(|b| vec![vec![b]]),
        HirKind::Repetition(rep) if rep.min == 0 => None,
        HirKind::Repetition(rep) => required(&rep.sub),
        HirKind::Capture(cap) => required(&cap.sub),
        HirKind::Alternation(branches) => {
            let mut all = Vec::new();
            for branch in branches {
                all.extend(required(branch)?);
                if all.len() > LITERALS_MAX {
                    return None;
                }
            }
            Some(all)
        }
        HirKind::Concat(parts) => {
            let mut best: Option<Vec<Vec<u8>>> = None;
            let mut consider = |candidate: Vec<Vec<u8>>| {
                if best
                    .as_ref()
                    .is_none_or(|b| selectivity(&candidate) > selectivity(b))
                {
                    best = Some(candidate);
                }
            };
            // Adjacent literal bytes (and case-folded letters such as `[Aa]`) form one
            // longer, more selective literal.
            let mut run: Vec<u8> = Vec::new();
            for part in parts {
                match single_bytes(part) {
                    Some(bytes) => run.extend(bytes),
                    None => {
                        if !run.is_empty() {
                            consider(vec![std::mem::take(&mut run)]);
                        }
                        if let Some(set) = required(part) {
                            consider(set);
                        }
                    }
                }
            }
            if !run.is_empty() {
                consider(vec![run]);
            }
            best
        }
    }
}

/// The bytes a part matches exactly (up to ASCII case), if it is a literal or a
/// one-letter case-folded class.
fn single_bytes(hir: &Hir) -> Option<Vec<u8>> {
    match hir.kind() {
        HirKind::Literal(lit) => Some(lit.0.to_ascii_lowercase()),
        HirKind::Class(class) => folded_byte(class).map(|b| vec![b]),
        _ => None,
    }
}

/// The one byte (ASCII case folded) a class matches, as in `[Aa]` or `[x]`.
fn folded_byte(class: &Class) -> Option<u8> {
    let mut found: Option<u8> = None;
    let mut check = |lo: u32, hi: u32| -> bool {
        (lo..=hi).all(|c| {
            let Ok(b) = u8::try_from(c) else {
                return false;
            };
            if !b.is_ascii() {
                return false;
            }
            let b = b.to_ascii_lowercase();
            *found.get_or_insert(b) == b
        })
    };
    let ok = match class {
        Class::Unicode(u) => u
            .iter()
            .all(|r| r.end() <= '\u{7f}' && check(u32::from(r.start()), u32::from(r.end()))),
        Class::Bytes(b) => b
            .iter()
            .all(|r| check(u32::from(r.start()), u32::from(r.end()))),
    };
    if ok {
        found
    } else {
        None
    }
}

/// How selective a literal set is: longer shortest literals, then rarer bytes, then fewer
/// literals.
fn selectivity(set: &[Vec<u8>]) -> (usize, u8, std::cmp::Reverse<usize>) {
    let shortest = set.iter().map(Vec::len).min().unwrap_or(0);
    let rarity = set
        .iter()
        .map(|l| l.iter().map(|&b| rarity(b)).max().unwrap_or(0))
        .min()
        .unwrap_or(0);
    (shortest, rarity, std::cmp::Reverse(set.len()))
}

/// A rough rank of how rarely a byte occurs in ordinary text.
fn rarity(b: u8) -> u8 {
    match b {
        b'a'..=b'z' | b' ' => 0,
        b'0'..=b'9' => 1,
        b'.' | b',' | b'-' | b'\'' | b'/' | b':' | b';' | b'!' | b'?' | b'"' | b'(' | b')' => 2,
        0x80.. => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::literals;

    fn lits(pattern: &str) -> Option<Vec<String>> {
        literals(pattern).map(|set| {
            set.into_iter()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .collect()
        })
    }

    #[test]
    fn concatenations_keep_their_most_selective_part() {
        assert_eq!(lits(r"^\s*\(\s*\)\s*\{"), Some(vec!["{".into()]));
        // Under Unicode case folding `s` also matches `ſ`, which the ASCII-only prefilter
        // would miss, so "select" breaks up and "union" is the longest sure literal.
        assert_eq!(lits(r"(?i)union\s+select"), Some(vec!["union".into()]));
        assert_eq!(lits(r"(?i-u)union\s+select"), Some(vec!["select".into()]));
    }

    #[test]
    fn alternations_need_every_branch() {
        assert_eq!(
            lits(r"(?i:^(?:0x)?aced0005)|^rO0AB"),
            Some(vec!["aced0005".into(), "ro0ab".into()])
        );
        assert_eq!(lits(r"abc|\d+"), None);
    }

    #[test]
    fn patterns_that_can_match_anything_have_none() {
        assert_eq!(lits(r".*"), None);
        assert_eq!(lits(r"\w+"), None);
        assert_eq!(lits(r"(unclosed"), None);
    }
}
