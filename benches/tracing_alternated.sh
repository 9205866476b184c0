#!/usr/bin/env bash
# Trace export's wall-clock cost, export off and OTLP export alternated in separate
# processes (one configuration each), so slow drift of the machine hits both alike.
#
#   benches/tracing_alternated.sh [ROUNDS]      # default 8 rounds, about 6 minutes
#
# Prints one line per measurement (round, group, configuration, criterion's interval of
# the mean, load average), then per group the medians and their ratio. Run it on an
# otherwise idle machine: a build beside it moves single rounds by more than the effect.
set -euo pipefail
cd "$(dirname "$0")"
rounds="${1:-8}"
bin=$(cargo bench -p palisade-benches --bench tracing --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "tracing" and m.get("executable"):
        print(m["executable"])')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for round in $(seq 1 "$rounds"); do
    for group in proxied_request_http1_keepalive_app_traceparent proxied_request_http1_keepalive_app_span proxied_request_http1_keepalive; do
        for config in export_off export_otlp; do
            name="$group/$config/1"
            # Criterion writes its data under ./target; keep it out of the work tree.
            estimate=$(cd "$out" && PALISADE_TRACING_BENCH="$name" "$bin" --bench \
                --warm-up-time 1 --measurement-time 4 "^$name\$" 2>&1 \
                | grep -A1 "^$name" | grep -o 'time: *\[[^]]*\]' | head -1)
            echo "$round $group $config $estimate load $(cut -d' ' -f1 /proc/loadavg)"
        done
    done
done | tee "$out/runs.txt"
python3 - "$out/runs.txt" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"\d+ (\S+) (\S+) time:\s*\[\S+ \S+ (\S+) (\S+) ", line)
    if m:
        value = float(m.group(3)) * {"ns": 1e-3, "µs": 1.0, "ms": 1e3}[m.group(4)]
        runs.setdefault(m.group(1), {}).setdefault(m.group(2), []).append(value)
for group, configs in runs.items():
    off, on = configs["export_off"], configs["export_otlp"]
    rounds = sorted(b / a for a, b in zip(off, on))
    print(f"{group}: export off {statistics.median(off):.1f} µs, OTLP export "
          f"{statistics.median(on):.1f} µs, ratio of medians {statistics.median(on) / statistics.median(off):.3f}, "
          f"per-round ratios {rounds[0]:.3f}..{rounds[-1]:.3f} (median {statistics.median(rounds):.3f})")
PY
