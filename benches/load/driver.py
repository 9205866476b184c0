#!/usr/bin/env python3
"""Palisade's load benchmark: latency overhead, throughput, memory and CPU against nginx.

Started by run.sh (which installs the tools); see README.md beside this file. Everything
runs on 127.0.0.1, every load is bounded in time, and the whole run has a deadline after
which it stops and cleans up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import Run, oha_command, run_load  # noqa: E402
from procs import SetupError, Supervisor, process_tree, rss_kib  # noqa: E402
from report import SOAK_HEADING, render, render_soak  # noqa: E402
import setups  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RATES = (500, 2000)
# ModSecurity with the CRS saturates far below 500 requests/s on this machine; a lower rate
# lets scenario 4 compare latency where both WAFs keep up.
WAF_RATE = 100
PROTOS = ("h1", "h2")
SIZES = ("small", "16k")


class Deadline(Exception):
    """The run's time budget ran out, or the driver was asked to stop."""


def _stop(signum, _frame):
    raise Deadline(f"stopped by signal {signal.Signals(signum).name}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few seconds per run: smoke-tests the harness")
    p.add_argument("--soak", action="store_true", help="10 minutes at a fixed rate; reports RSS at start and end")
    p.add_argument("--soak-target", choices=("palisade", "nginx"), default="palisade")
    p.add_argument("--soak-rate", type=int, default=1000)
    p.add_argument("--seconds", type=float, help="seconds per run (default 20, or 3 with --quick)")
    p.add_argument("--bin-dir", type=Path, default=REPO / "target" / "release",
                   help="where palisade-proxy, palisade-control-plane and palisadectl are")
    p.add_argument("--scenarios", default="direct,palisade,nginx,waf",
                   help="comma-separated subset of direct,palisade,nginx,waf")
    p.add_argument("--out", type=Path, default=REPO / "benches" / "results" / "load.md")
    p.add_argument("--max-minutes", type=float, default=45, help="hard limit for the whole run")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (configs, logs)")
    args = p.parse_args(argv)
    if args.seconds is None:
        args.seconds = 3 if args.quick else 20
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - {"direct", "palisade", "nginx", "waf"}
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return args


def machine(args: argparse.Namespace, argv: list[str]) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    proxy = args.bin_dir / "palisade-proxy"
    palisade = (f"{version([str(proxy), '--version'])} from {args.bin_dir}" if proxy.is_file()
                else f"no palisade-proxy in {args.bin_dir}")
    load = os.getloadavg()
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "tools": "; ".join([version(["oha", "--version"]), version(["nginx", "-v"]),
                            "libmodsecurity3 " + version(["dpkg-query", "-W", "-f", "${Version}", "libmodsecurity3"]),
                            "modsecurity-crs " + version(["dpkg-query", "-W", "-f", "${Version}", "modsecurity-crs"]),
                            palisade]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "mode": "soak" if args.soak else ("quick" if args.quick else "full"),
        "seconds": args.seconds,
        "command": "benches/load/run.sh " + " ".join(shlex.quote(a) for a in argv),
        "caveat": (
            f"Measured on a shared {os.cpu_count()}-CPU machine (load average {load[0]:.1f} at the start) "
            "with the load generator, the proxies and the app on the same cores, and whatever else the "
            "machine runs left running; treat absolute figures as indicative and compare scenarios only "
            "within this run."
        ),
        "rss_idle_kib": {},
    }


def start_targets(args, sup: Supervisor, work: Path, unavailable: dict[str, str]) -> dict[str, setups.Target]:
    app = setups.start_app(sup, work)
    targets = {"direct": setups.direct_target(app)}
    pki = setups.make_pki(work)
    if "nginx" in args.scenarios or (args.soak and args.soak_target == "nginx"):
        targets["nginx"] = setups.start_nginx_chain(sup, work, pki, app)
    if "waf" in args.scenarios and not args.soak:
        try:
            targets["nginx-modsecurity"] = setups.start_modsecurity(sup, work, pki, app)
        except SetupError as error:
            unavailable["nginx-modsecurity"] = str(error)
    wants_palisade = "palisade" in args.scenarios or "waf" in args.scenarios
    if wants_palisade or (args.soak and args.soak_target == "palisade"):
        try:
            mesh = setups.start_palisade(sup, work, args.bin_dir, app)
            targets["palisade"] = mesh.chain
            targets["palisade-inbound"] = mesh.inbound
        except SetupError as error:
            for name in ("palisade", "palisade-inbound"):
                unavailable[name] = str(error)
    if "palisade" not in args.scenarios:
        targets.pop("palisade", None)
    if "waf" not in args.scenarios:
        targets.pop("palisade-inbound", None)
    return targets


def benchmark(args, targets: dict[str, setups.Target]) -> list[Run]:
    """Every (protocol, size, rate) point runs each scenario back to back, so that the
    comparison within a point shares the machine's momentary load as far as possible."""
    runs: list[Run] = []
    waf_targets = {"palisade-inbound", "nginx-modsecurity"}
    for proto in PROTOS:
        for size in SIZES:
            for rate in (WAF_RATE, *RATES, None):
                for name, target in targets.items():
                    if name in waf_targets and size != "small":
                        continue
                    if rate == WAF_RATE and (size != "small" or name not in waf_targets | {"direct"}
                                             or not waf_targets & targets.keys()):
                        continue
                    run = run_load(target, proto, size, rate, args.seconds)
                    label = "max" if rate is None else f"{rate}/s"
                    status = run.failure or f"{run.rps:.0f}/s p99 {run.latency_ms.get('p99', float('nan')):.2f} ms"
                    print(f"  {name:18} {proto} {size:5} {label:7} {status}", flush=True)
                    runs.append(run)
    return runs


def waf_verdicts(targets: dict[str, setups.Target]) -> dict:
    corpus = json.loads((Path(__file__).parent / "corpus.json").read_text())["requests"]
    verdicts = {}
    for name in ("nginx-modsecurity", "palisade-inbound"):
        target = targets.get(name)
        if target is None:
            continue
        results = []
        for item in corpus:
            body = item.get("body")
            try:
                status = setups.request(target, item["method"], item["path"], item.get("headers"),
                                        body.encode() if body is not None else None)
            except OSError as error:
                print(f"  {name}: {item['name']}: {error}")
                status = None
            results.append({"kind": item["kind"], "name": item["name"], "status": status})
        verdicts[name] = {"results": results}
    return verdicts


def soak(args, target: setups.Target) -> dict:
    seconds = 20 if args.quick else 600
    every = 5 if args.quick else 60
    pids = [p for root in target.pids for p in process_tree(root)]
    idle = rss_kib(pids)
    argv = oha_command(target, "h1", "small", args.soak_rate, seconds)
    print(f"soak: {target.name} at {args.soak_rate}/s for {seconds} s; RSS idle {idle / 1024:.1f} MiB", flush=True)
    samples = []
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + seconds + 60
        # The first sample is taken once the load has warmed up, then one every `every` s.
        pause = 5.0
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(min(pause, max(0.1, deadline - time.monotonic())))
            pause = every
            if child.poll() is not None:
                break
            samples.append(rss_kib(pids))
            print(f"  RSS {samples[-1] / 1024:.1f} MiB", flush=True)
        stdout, stderr = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
        end = rss_kib(pids)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    report = json.loads(stdout) if stdout.strip().startswith("{") else {}
    statuses = report.get("statusCodeDistribution", {})
    p99 = report.get("latencyPercentiles", {}).get("p99")
    return {
        "target": target.name, "rate": args.soak_rate, "proto": "h1", "size": "small",
        "seconds": seconds, "every": every, "rss_idle_kib": idle, "rss_end_kib": end,
        "samples_kib": samples, "requests": sum(statuses.values()), "ok": statuses.get("200", 0),
        "p99": None if p99 is None else p99 * 1000, "oha_stderr": stderr.strip()[:300],
    }


def write_soak_section(out: Path, section: str) -> None:
    """Replaces the soak section of the results page (or appends one), leaving the
    benchmark tables of the last full run in place."""
    page = out.read_text() if out.exists() else ""
    head, _, _ = page.partition(SOAK_HEADING)
    out.write_text(head.rstrip() + ("\n\n" if head.strip() else "") + section)


def write_tables(out: Path, tables: str) -> None:
    """Writes the benchmark tables, keeping the soak section of an earlier soak run."""
    page = out.read_text() if out.exists() else ""
    _, heading, soak_section = page.partition(SOAK_HEADING)
    out.write_text(tables + ("\n" + heading + soak_section if heading else ""))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for tool in ("oha", "nginx", "openssl"):
        if shutil.which(tool) is None:
            print(f"error: `{tool}` is not installed; run benches/load/run.sh, which installs it", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGALRM, _stop)
    signal.alarm(int(args.max_minutes * 60))
    work = Path(tempfile.mkdtemp(prefix="palisade-load-"))
    # nginx workers run unprivileged and must reach the static files below it.
    work.chmod(0o711)
    pid_file = Path(os.environ["PALISADE_LOAD_PIDFILE"]) if os.environ.get("PALISADE_LOAD_PIDFILE") else None
    sup = Supervisor(work, pid_file)
    meta = machine(args, argv)
    unavailable: dict[str, str] = {}
    try:
        print(f"working directory: {work}", flush=True)
        targets = start_targets(args, sup, work, unavailable)
        for name, reason in unavailable.items():
            print(f"  {name}: cannot run: {reason}", flush=True)
        for name, target in targets.items():
            meta["rss_idle_kib"][name] = rss_kib([p for r in target.pids for p in process_tree(r)])
        soak_result, runs, waf = None, [], {}
        if args.soak:
            target = targets.get(args.soak_target)
            if target is None:
                print(f"error: cannot soak {args.soak_target}: {unavailable.get(args.soak_target)}", file=sys.stderr)
                return 1
            soak_result = soak(args, target)
        else:
            if "waf" in args.scenarios:
                waf = waf_verdicts(targets)
            runs = benchmark(args, targets)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.soak:
            write_soak_section(args.out, render_soak(soak_result, meta))
        else:
            write_tables(args.out, render(meta, runs, waf, unavailable))
        print(f"wrote {args.out}")
        return 0
    except SetupError as error:
        print(f"error: {error}\n(logs in {work}; rerun with --keep to keep them)", file=sys.stderr)
        return 1
    except Deadline as reason:
        print(f"error: the run ended early: {reason}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        sup.stop_all()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
