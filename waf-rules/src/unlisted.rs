//! A quick negative for `unless_in`: the rule's regex with its judged group replaced by
//! a pattern of every token *not* in the list (the complement of the list's trie, which
//! rule files once spelled out by hand with `not_in.py`). It matches wherever a match of
//! the rule could count, so a value it does not match (an allowed charset, a known
//! multipart subtype) is settled by one DFA search. Without it every allowed value is a
//! match whose group the capture engines must find: 2 to 5 k instructions more for a
//! `Content-Type` or `Accept` with a charset, against a few hundred for the search.

use std::collections::BTreeMap;

use regex_syntax::hir::{Class, ClassBytes, ClassBytesRange, Hir, HirKind, Look};

/// The quick pattern of `source` for the listed `values` (lowercase under
/// `ignore_case`), or `None` when no branch of the regex ends with its group 1 as a
/// greedy run of one byte class (`([^;,\s]+)`), the shape whose captured value is the
/// whole run: the rule then judges every match with the capture engines.
///
/// Why it matches wherever a match `m` of the regex counts: either `m` is a match of a
/// branch without group 1, kept as it is; or `m` matched a branch `P([C]+)` with group 1
/// unlisted. The run ends `m` and is greedy, so it is the longest run of `C` bytes from
/// where `P` left off; the complement matches there exactly when that run is not a
/// listed value, so `P` followed by it matches where `m` starts.
pub(crate) fn pattern(source: &str, values: &[Box<[u8]>], ignore_case: bool) -> Option<String> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(source)
        .ok()?;
    let rewrite = |branch: &Hir| rewrite_branch(branch, values, ignore_case);
    let quick = match hir.kind() {
        HirKind::Alternation(branches) => {
            let rewritten: Vec<Option<Hir>> = branches.iter().map(rewrite).collect();
            if rewritten.iter().all(Option::is_none) {
                return None;
            }
            Hir::alternation(
                rewritten
                    .into_iter()
                    .zip(branches)
                    .map(|(new, old)| new.unwrap_or_else(|| old.clone()))
                    .collect(),
            )
        }
        _ => rewrite(&hir)?,
    };
    Some(quick.to_string())
}

/// `branch` with its final `([C]+)` (group 1) replaced by the complement.
fn rewrite_branch(branch: &Hir, values: &[Box<[u8]>], ignore_case: bool) -> Option<Hir> {
    let (prefix, last) = match branch.kind() {
        HirKind::Concat(parts) => parts.split_last().map(|(last, prefix)| (prefix, last))?,
        _ => (&[][..], branch),
    };
    let HirKind::Capture(group) = last.kind() else {
        return None;
    };
    let HirKind::Repetition(run) = group.sub.kind() else {
        return None;
    };
    let HirKind::Class(Class::Bytes(token)) = run.sub.kind() else {
        return None;
    };
    if group.index != 1 || run.min != 1 || run.max.is_some() || !run.greedy {
        return None;
    }
    let mut trie = Node::default();
    for value in values {
        // A value holding a byte the run cannot hold is never the run.
        if value
            .iter()
            .any(|&b| kid_class(b, token, ignore_case).ranges().is_empty())
        {
            continue;
        }
        let mut node = &mut trie;
        for &b in value.iter() {
            node = node.kids.entry(b).or_default();
        }
        node.end = true;
    }
    let mut parts = prefix.to_vec();
    parts.push(complement(&trie, token, ignore_case, true));
    Some(Hir::concat(parts))
}

#[derive(Default)]
struct Node {
    /// A listed value ends here.
    end: bool,
    kids: BTreeMap<u8, Node>,
}

/// The bytes of the run that spell `b` (both cases of a letter under `ignore_case`).
fn kid_class(b: u8, token: &ClassBytes, ignore_case: bool) -> ClassBytes {
    let mut kid = ClassBytes::new([ClassBytesRange::new(b, b)]);
    if ignore_case {
        let upper = b.to_ascii_uppercase();
        kid.union(&ClassBytes::new([ClassBytesRange::new(upper, upper)]));
    }
    kid.intersect(token);
    kid
}

/// What follows `node` in a run of `token` bytes that is not a listed value: the run
/// ends before a value does (not at the root: the run holds a byte), goes on with a byte
/// no listed value has next, or goes on as one does and differs later.
fn complement(node: &Node, token: &ClassBytes, ignore_case: bool, root: bool) -> Hir {
    let mut ways = Vec::new();
    if !node.end && !root {
        let mut after = token.clone();
        after.negate();
        ways.push(Hir::alternation(vec![
            Hir::class(Class::Bytes(after)),
            Hir::look(Look::End),
        ]));
    }
    let mut other = token.clone();
    for &b in node.kids.keys() {
        other.difference(&kid_class(b, token, ignore_case));
    }
    if !other.ranges().is_empty() {
        ways.push(Hir::class(Class::Bytes(other)));
    }
    for (&b, kid) in &node.kids {
        ways.push(Hir::concat(vec![
            Hir::class(Class::Bytes(kid_class(b, token, ignore_case))),
            complement(kid, token, ignore_case, false),
        ]));
    }
    Hir::alternation(ways)
}

#[cfg(test)]
mod tests {
    use super::pattern;

    fn values(list: &[&str]) -> Vec<Box<[u8]>> {
        list.iter().map(|v| v.as_bytes().into()).collect()
    }

    fn quick(source: &str, list: &[&str], ignore_case: bool) -> regex::bytes::Regex {
        let quick = pattern(source, &values(list), ignore_case).expect("a run ends a branch");
        regex::bytes::RegexBuilder::new(&quick)
            .unicode(false)
            .build()
            .expect("compiles")
    }

    #[test]
    fn the_complement_matches_exactly_the_unlisted_runs() {
        let re = quick(r"=([a-z0-9-]+)", &["utf-8", "utf8", "utf-16", "x"], false);
        for (value, unlisted) in [
            ("=utf-8", false),
            ("=utf-8;", false),
            ("=utf8 =x", false),
            ("=utf-16", false),
            ("=utf", true),
            ("=utf-", true),
            ("=utf-1", true),
            ("=utf-88", true),
            ("=utf-8x", true),
            ("=utf-16b", true),
            ("=xy", true),
            ("=y", true),
            ("=utf-8 =utf-7", true),
            ("=UTF-8", false),
            ("= utf-8", false),
            ("=", false),
        ] {
            assert_eq!(re.is_match(value.as_bytes()), unlisted, "{value}");
        }
        let folded = quick(r"=([A-Za-z0-9-]+)", &["utf-8"], true);
        assert!(!folded.is_match(b"=UtF-8"));
        assert!(folded.is_match(b"=UtF-7"));
    }

    /// Branches without the group stay as they are; regexes whose group 1 is not a run
    /// ending a branch get no quick pattern.
    #[test]
    fn other_branches_are_kept_and_other_shapes_refused() {
        let re = quick(r"double|;c=([a-z]+)", &["ok"], false);
        assert!(re.is_match(b"a double"));
        assert!(!re.is_match(b";c=ok"));
        assert!(re.is_match(b";c=no"));
        for source in [
            r"c=([a-z]+);",
            r"c=([a-z]*)",
            r"c=([a-z]+?)",
            r"c=(a|b)",
            r"c=x",
        ] {
            assert_eq!(pattern(source, &values(&["a"]), false), None, "{source}");
        }
    }

    /// On every rule of the base set that has one, the quick pattern matches wherever the
    /// rule's judgement counts a match (it may match more: it only spares searches).
    #[test]
    fn the_quick_pattern_matches_wherever_a_match_counts() {
        let set = crate::RuleSet::embedded().expect("rules compile");
        let mut rng = crate::test_rng::Rng(0x0dd_c4a75e7);
        let pieces = [
            ";",
            ",",
            " ",
            "\"",
            "'",
            "/",
            "=",
            "charset=",
            "; charset=",
            "multipart/",
            "utf-8",
            "UTF-8",
            "utf8",
            "utf-16",
            "utf-7",
            "iso-8859-1",
            "iso-8859-15",
            "*",
            "windows-1252",
            "mixed",
            "form-data",
            "x",
            "\r\n",
            "\n",
            "content-disposition: form-data; name=\"_charset_\"",
            "content-type: a/b; ",
        ];
        let mut judged = 0;
        for rule in &set.rules {
            let crate::rule::Op::Regex {
                re,
                test: Some(test),
                ..
            } = &rule.op
            else {
                continue;
            };
            let Some(quick) = test.quick() else { continue };
            judged += 1;
            for _ in 0..20_000 {
                let mut value = String::new();
                for _ in 0..1 + rng.below(8) {
                    value.push_str(pieces[rng.below(pieces.len())]);
                }
                let counts = re.judge_each(test, value.as_bytes(), &mut None).is_some();
                if counts {
                    assert!(
                        quick.find(value.as_bytes()).is_some(),
                        "{}: {value:?}",
                        rule.id
                    );
                }
            }
        }
        assert_eq!(judged, 5, "rules with a quick pattern");
    }
}
