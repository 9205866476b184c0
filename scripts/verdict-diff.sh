#!/usr/bin/env bash
# Compares two WAF_VERDICTS directories (see docs/waf.md); the order of a verdict's
# matches is ignored (it follows the order of literal hits, which a prefilter change may
# reorder without changing any rule's match, fragment or score).
#
#   scripts/verdict-diff.sh BEFORE_DIR AFTER_DIR     # prints nothing when they agree
set -euo pipefail
norm() { python3 -c '
import sys
for line in open(sys.argv[1]):
    parts = line.rstrip("\n").split(" | ")
    print(" | ".join([parts[0]] + sorted(parts[1:])))' "$1"; }
for f in "$1"/*.txt; do
    diff <(norm "$f") <(norm "$2/$(basename "$f")") || echo "DIFFERS: $(basename "$f")"
done
