"""One oha run against one target, with the proxy processes' cost measured around it.

Fixed-rate runs use `-q RATE --latency-correction`: oha schedules each request at its
intended send time and measures latency from that time, not from when a free worker got
round to sending it, which corrects for coordinated omission. Saturation runs send as fast
as the workers can (no `-q`), and only their throughput is reported.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field

from procs import RssSampler, cpu_seconds, process_tree
from setups import QUERY, Target

SIZES = {"small": "/small", "16k": "/16k"}
PERCENTILES = ("p50", "p90", "p99", "p99.9")


@dataclass
class Run:
    scenario: str
    proto: str
    size: str
    rate: int | None  # None: saturation
    requests: int = 0
    rps: float = 0.0
    ok: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    rss_peak_kib: int = 0
    failure: str | None = None

    @property
    def cpu_ms_per_1k(self) -> float | None:
        return self.cpu_seconds * 1e6 / self.requests if self.requests else None

    @property
    def rate_label(self) -> str:
        return "max" if self.rate is None else str(self.rate)


def oha_command(target: Target, proto: str, size: str, rate: int | None, seconds: float) -> list[str]:
    base = target.h2_url if proto == "h2" else target.h1_url
    argv = ["oha", "--no-tui", "--output-format", "json", "-z", f"{seconds}s"]
    if target.host:
        # The outbound proxy routes by the request's authority, which HTTP/2 carries in
        # `:authority` (taken from the URL), not in a Host header: name the service in the
        # URL and point that name at the listener.
        scheme, addr = base.split("://", 1)
        default_port = "443" if scheme == "https" else "80"
        argv += ["--connect-to", f"{target.host}:{default_port}:{addr}"]
        base = f"{scheme}://{target.host}"
    url = base + SIZES[size] + QUERY
    if proto == "h2":
        # A few connections with many streams each, as HTTP/2 clients behave.
        argv += ["--http2", "-c", "8", "-p", "8"]
    else:
        argv += ["-c", "64"]
    if rate is not None:
        argv += ["-q", str(rate), "--latency-correction"]
    if target.client_cert:
        # The server's chain is checked by the harness's own readiness request; oha cannot
        # verify a SPIFFE SVID (URI SAN only), so it skips server verification.
        argv += ["--cert", str(target.client_cert[0]), "--key", str(target.client_cert[1]), "--insecure"]
    argv.append(url)
    return argv


def run_load(target: Target, proto: str, size: str, rate: int | None, seconds: float) -> Run:
    run = Run(target.name, proto, size, rate)
    if proto == "h2" and target.h2_url is None:
        run.failure = "no HTTP/2 listener"
        return run
    pids = [p for root in target.pids for p in process_tree(root)]
    argv = oha_command(target, proto, size, rate, seconds)
    cpu_before = cpu_seconds(pids)
    with RssSampler(pids) as sampler:
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            run.failure = f"oha did not finish within {seconds + 60:.0f} s"
            return run
    run.cpu_seconds = cpu_seconds(pids) - cpu_before
    run.rss_peak_kib = sampler.peak
    if result.returncode != 0:
        run.failure = f"oha exited {result.returncode}: {result.stderr.strip()[:300]}"
        return run
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        run.failure = f"oha printed no JSON: {result.stdout[:200]!r} {result.stderr[:200]!r}"
        return run
    run.statuses = {str(k): int(v) for k, v in report.get("statusCodeDistribution", {}).items()}
    # Requests still in flight when `-z` ends are cut off by design, not failures.
    run.errors = {str(k): int(v) for k, v in report.get("errorDistribution", {}).items()
                  if k != "aborted due to deadline"}
    run.requests = sum(run.statuses.values())
    run.ok = run.statuses.get("200", 0)
    elapsed = report.get("summary", {}).get("total") or seconds
    run.rps = run.ok / elapsed
    percentiles = report.get("latencyPercentiles", {})
    run.latency_ms = {p: percentiles[p] * 1000 for p in PERCENTILES if percentiles.get(p) is not None}
    if run.requests == 0:
        run.failure = "no response: " + (", ".join(f"{k} ×{v}" for k, v in run.errors.items())[:300] or "?")
    elif run.ok < run.requests * 0.99:
        run.failure = f"only {run.ok} of {run.requests} answers were 200: {run.statuses}"
    elif rate is not None and run.rps < rate * 0.95:
        # Latency corrected for coordinated omission then mostly measures the queue.
        run.failure = f"saturated: answered {run.rps:.0f}/s of {rate}/s offered; latency is queueing"
    return run
