#!/usr/bin/env python3
"""Prints a regex matching every token that is NOT one of the given words (Rust's regex
crate has no negative lookahead): the complement of a trie of the words. Rules use it for
allow lists: HTTP methods, media types, charsets.

Usage: not_in.py [--token] [--icase] WORD...
  without --token: the whole value must be one of the words (anchored at both ends);
  with --token: the token ends at a quote, `;`, `,`, `/`, whitespace or the end;
  with --icase: ASCII letters match in either case (for values no rule lowercases).
"""
import re
import sys


def trie(words):
    root = {}
    for w in words:
        node = root
        for c in w:
            node = node.setdefault(c, {})
        node["$"] = True
    return root


ICASE = False


def both(k):
    return k.lower() + k.upper() if ICASE and k.isalpha() else re.escape(k)


def lit(k):
    return "[" + k.lower() + k.upper() + "]" if ICASE and k.isalpha() else re.escape(k)


def complement(node, end, any_char, root=False):
    kids = sorted(k for k in node if k != "$")
    parts = []
    # An empty token is not judged (a quote or a separator right after `=`).
    if "$" not in node and not (root and end != "$"):
        parts.append(end)
    if kids:
        parts.append("[^" + "".join(both(k) for k in kids) + end_chars(end) + "]")
    else:
        parts.append(any_char)
    for k in kids:
        parts.append(lit(k) + "(?:" + complement(node[k], end, any_char) + ")")
    return "|".join(parts)


def end_chars(end):
    return "" if end == "$" else "\"';,/\\s"


def not_in(words, token):
    if token:
        return "(?:" + complement(trie(words), "(?:[\"';,/\\s]|$)", "[^\"';,/\\s]", root=True) + ")"
    return "^(?:" + complement(trie(words), "$", "[\\s\\S]") + ")"


if __name__ == "__main__":
    args = sys.argv[1:]
    token = "--token" in args
    ICASE = "--icase" in args
    words = [a.lower() if ICASE else a for a in args if a not in ("--token", "--icase")]
    print(not_in(words, token))
