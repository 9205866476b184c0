"""Renders the measured runs as the Markdown page benches/results/load.md.

Only measured figures appear; a cell whose run failed or did not happen says so.
"""

from __future__ import annotations

from loadgen import PERCENTILES, Run

PEER = {"palisade": "nginx", "palisade-inbound": "nginx-modsecurity"}
TITLE = {
    "direct": "direct (client → app)",
    "palisade": "Palisade chain (outbound → mTLS → inbound, authz + WAF)",
    "nginx": "nginx chain (nginx → mTLS → nginx)",
    "palisade-inbound": "Palisade inbound alone (mTLS, authz + WAF)",
    "nginx-modsecurity": "nginx + ModSecurity v3 + CRS (mTLS)",
}


SOAK_HEADING = "## Soak\n"


def render_soak(soak: dict, meta: dict) -> str:
    """The soak section: RSS idle, at the start and end of a long fixed-rate run, and growth.

    Growth is measured from the first sample under load, so that buffers and connection
    state allocated when the load begins do not read as a leak.
    """
    samples = soak["samples_kib"]
    first, last = (samples[0] if samples else None), soak["rss_end_kib"]
    growth = "–" if first is None else f"{(last - first) / 1024:+.1f} MiB"
    return (
        f"{SOAK_HEADING}\n"
        f"Command: `{meta['command']}` on {meta['date']} UTC ({meta['cpu']}, {meta['nproc']} CPUs, "
        f"kernel {meta['kernel']}; indicative only, shared machine).\n\n"
        f"{soak['target']} at {soak['rate']} requests/s, {soak['proto']}, {soak['size']} responses, "
        f"for {soak['seconds']} s. Proxy RSS: {soak['rss_idle_kib'] / 1024:.1f} MiB idle before the "
        f"load, **{_mib(first)} MiB at the start** (first sample under load), **{_mib(last)} MiB at "
        f"the end** (as the load stopped), growth {growth}. Samples every {soak['every']} s: "
        + ", ".join(_mib(k) for k in samples) + " MiB. "
        f"Answered {soak['ok']} of {soak['requests']} with 200; p99 {_ms(soak.get('p99'))} ms.\n"
    )


def _mib(kib: int | None) -> str:
    return "–" if kib is None else f"{kib / 1024:.1f}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _ratio(a: float | None, b: float | None) -> str:
    """a ÷ b, or `–` when either is missing or not positive (noise made a difference
    negative, and a ratio of such differences means nothing)."""
    if a is None or b is None or a < 0 or b <= 0:
        return "–"
    return f"{a / b:.2f}×"


def _index(runs: list[Run]) -> dict[tuple[str, str, str, str], Run]:
    return {(r.scenario, r.proto, r.size, r.rate_label): r for r in runs}


def _added(run: Run | None, base: Run | None, p: str) -> float | None:
    """Added latency, or None when either run failed (a saturated run's latency is its queue)."""
    if run is None or base is None or run.failure or base.failure:
        return None
    if p not in run.latency_ms or p not in base.latency_ms:
        return None
    return run.latency_ms[p] - base.latency_ms[p]


def render(meta: dict, runs: list[Run], waf: dict, unavailable: dict[str, str]) -> str:
    out: list[str] = []
    w = out.append
    w("# Load benchmark: Palisade vs nginx\n")
    w("> **Indicative only.** " + meta["caveat"] + "\n")
    w("## Machine and command\n")
    w(f"- CPU: {meta['cpu']} ({meta['nproc']} logical CPUs), kernel {meta['kernel']}")
    w(f"- Tools: {meta['tools']}")
    w(f"- Date (UTC): {meta['date']}; mode: {meta['mode']} ({meta['seconds']} s per run)")
    w(f"- Command: `{meta['command']}`")
    w("- Load: oha at fixed rates with `--latency-correction` (latency measured from each request's "
      "intended send time, so coordinated omission is corrected), keep-alive, HTTP/1.1 with 64 "
      "connections or HTTP/2 with 8 connections × 8 streams; `max` runs have no rate limit and report "
      "throughput only. The upstream app is one nginx worker serving static files for every scenario.")
    w("- Added latency = the scenario's percentile minus the direct run's percentile at the same "
      "protocol, size and rate. RSS is VmRSS summed over the proxy processes (both sidecars, or both "
      "nginx instances with their workers); CPU is utime+stime from /proc/PID/stat over the run, per "
      "1,000 answered requests.\n")

    if unavailable:
        w("## Scenarios that could not run\n")
        for name, reason in unavailable.items():
            w(f"- **{TITLE.get(name, name)}**: {reason}")
        w("")

    idx = _index(runs)
    fixed = sorted({(r.proto, r.size, r.rate) for r in runs if r.rate is not None},
                   key=lambda k: (k[0], k[1], k[2]))
    for scenario in ("palisade", "palisade-inbound"):
        peer = PEER[scenario]
        if not any(r.scenario in (scenario, peer) for r in runs):
            continue
        w(f"## Added latency: {TITLE[scenario]} vs {TITLE[peer]}\n")
        if scenario == "palisade-inbound":
            w("Both terminate the load generator's mutual TLS (a client certificate from the same kind "
              "of CA: an SVID for Palisade, an openssl-made ECDSA P-256 certificate for nginx), so their "
              "added latency includes TLS on the client's leg; direct is plaintext.\n")
        w("Milliseconds added over direct; ratio = Palisade ÷ peer (below 1 means Palisade adds less). "
          "`–` means a run failed or could not keep up with the offered rate (see the table below); "
          "a negative figure means the machine's noise exceeded the difference.\n")
        head = "| proto | size | rate/s | " + " | ".join(
            f"{who} {p}" for who in ("Palisade", "peer") for p in PERCENTILES) + " | ratio p50 | ratio p99 |"
        w(head)
        w("|" + "---|" * (3 + 2 * len(PERCENTILES) + 2))
        for proto, size, rate in fixed:
            base = idx.get(("direct", proto, size, str(rate)))
            ours = idx.get((scenario, proto, size, str(rate)))
            theirs = idx.get((peer, proto, size, str(rate)))
            if ours is None and theirs is None:
                continue
            a = [_added(ours, base, p) for p in PERCENTILES]
            b = [_added(theirs, base, p) for p in PERCENTILES]
            w(f"| {proto} | {size} | {rate} | " + " | ".join(_ms(x) for x in a + b)
              + f" | {_ratio(a[0], b[0])} | {_ratio(a[2], b[2])} |")
        w("")

    w("## Throughput and cost per scenario\n")
    w("`max` = answered requests per second with no rate limit (the whole machine: load generator, "
      "proxies and app share it). CPU and RSS are the proxy processes' (for direct: the app's).\n")
    w("| scenario | proto | size | rate/s | answered/s | p50 ms | p99 ms | p99.9 ms | CPU ms / 1k req | RSS peak MiB | note |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(runs, key=lambda r: (r.scenario, r.proto, r.size, r.rate or 10**9)):
        cpu = "–" if r.cpu_ms_per_1k is None else f"{r.cpu_ms_per_1k:.1f}"
        note = (r.failure or "").replace("|", "/")[:160]
        w(f"| {r.scenario} | {r.proto} | {r.size} | {r.rate_label} | {r.rps:.0f} | "
          f"{_ms(r.latency_ms.get('p50'))} | {_ms(r.latency_ms.get('p99'))} | "
          f"{_ms(r.latency_ms.get('p99.9'))} | {cpu} | {r.rss_peak_kib / 1024:.1f} | {note} |")
    w("")

    w("## Ratios to the peer measured in the same run\n")
    w("| comparison | proto | size | max throughput | CPU / 1k req at the highest fixed rate | RSS idle | RSS peak |")
    w("|---|---|---|---|---|---|---|")
    top_rate = max((r.rate for r in runs if r.rate is not None), default=None)
    for scenario, peer in PEER.items():
        for proto, size in sorted({(r.proto, r.size) for r in runs if r.scenario in (scenario, peer)}):
            ours_max, theirs_max = idx.get((scenario, proto, size, "max")), idx.get((peer, proto, size, "max"))
            ours_top = idx.get((scenario, proto, size, str(top_rate)))
            theirs_top = idx.get((peer, proto, size, str(top_rate)))
            peak_ours = max((r.rss_peak_kib for r in runs if r.scenario == scenario), default=None)
            peak_theirs = max((r.rss_peak_kib for r in runs if r.scenario == peer), default=None)
            w(f"| {scenario} ÷ {peer} | {proto} | {size} | "
              f"{_ratio(ours_max and ours_max.rps, theirs_max and theirs_max.rps)} | "
              f"{_ratio(ours_top and ours_top.cpu_ms_per_1k, theirs_top and theirs_top.cpu_ms_per_1k)} | "
              f"{_ratio(meta['rss_idle_kib'].get(scenario), meta['rss_idle_kib'].get(peer))} | "
              f"{_ratio(peak_ours, peak_theirs)} |")
    w("")
    w("Idle RSS (MiB, after start-up and one request): " + ", ".join(
        f"{name} {kib / 1024:.1f}" for name, kib in meta["rss_idle_kib"].items()) + "\n")

    if waf:
        w("## WAF verdicts on the same requests (scenario 4)\n")
        w("Each request of `benches/load/corpus.json` sent once; *blocked* = any 4xx/5xx answer, "
          "*passed* = 200.\n")
        w("| engine | attacks blocked | attacks passed | benign passed | benign blocked |")
        w("|---|---|---|---|---|")
        for engine, verdicts in waf.items():
            if "error" in verdicts:
                w(f"| {engine} | – | – | – | – ({verdicts['error']}) |")
                continue
            att = [v for v in verdicts["results"] if v["kind"] == "attack"]
            ben = [v for v in verdicts["results"] if v["kind"] == "benign"]
            blocked = lambda vs: sum(1 for v in vs if v["status"] is not None and v["status"] >= 400)
            w(f"| {engine} | {blocked(att)}/{len(att)} | {len(att) - blocked(att)}/{len(att)} | "
              f"{len(ben) - blocked(ben)}/{len(ben)} | {blocked(ben)}/{len(ben)} |")
        w("")
        w("<details><summary>Per request</summary>\n")
        engines = list(waf)
        w("| kind | request | " + " | ".join(engines) + " |")
        w("|---|---|" + "---|" * len(engines))
        names = [(v["kind"], v["name"]) for v in next(
            (x["results"] for x in waf.values() if "results" in x), [])]
        for kind, name in names:
            cells = []
            for engine in engines:
                found = [v for v in waf[engine].get("results", []) if v["name"] == name]
                cells.append(str(found[0]["status"]) if found else "–")
            w(f"| {kind} | {name} | " + " | ".join(cells) + " |")
        w("\n</details>\n")

    return "\n".join(out) + "\n"
