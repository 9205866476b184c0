#!/usr/bin/env python3
"""CPU instructions per request of the two proxies of the harness's Palisade chain, counted
by callgrind: a figure that does not move with the machine's load, unlike throughput.

    python3 benches/load/cpu_per_request.py [--bin-dir target/release] [--requests 2000]

Starts the app and the Palisade mesh as `run.sh` does (same settings: WAF and authorization
on, tracing export off), with each `palisade-proxy` under callgrind and counting off; sends
warm-up requests, zeroes the counters, sends `--requests` HTTP/1.1 keep-alive requests
(`GET /small?user=alice&page=2`, `Host: app`) on one connection to the outbound proxy,
and prints the instructions per request of the outbound side, the inbound side and both.
User-space instructions only: the kernel's share (the sockets, one `write(2)` per access
line) is not counted. Everything listens on 127.0.0.1; the run is bounded by
`--max-seconds`, every socket by a timeout.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procs import SetupError, Supervisor
from setups import start_app, start_palisade

REQUEST = (b"GET /small?user=alice&page=2 HTTP/1.1\r\nhost: app\r\n"
           b"user-agent: cpu-per-request\r\naccept: */*\r\n\r\n")
# Under callgrind a proxy starts and answers tens of times slower.
READY_TIMEOUT = 240.0


def send(port: int, count: int, deadline: float) -> None:
    """`count` requests on one keep-alive connection, each answered 200 before the next."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = b""
        for _ in range(count):
            if time.monotonic() > deadline:
                raise SetupError("--max-seconds ran out while sending")
            sock.sendall(REQUEST)
            while True:
                head, sep, rest = pending.partition(b"\r\n\r\n")
                if sep:
                    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:"))
                    if len(rest) >= length:
                        if not head.startswith(b"HTTP/1.1 200"):
                            raise SetupError(f"expected 200, got {head.splitlines()[0]!r}")
                        pending = rest[length:]
                        break
                chunk = sock.recv(65536)
                if not chunk:
                    raise SetupError("the outbound proxy closed the connection")
                pending += chunk


def callgrind_control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def wrapped_binaries(bin_dir: Path, into: Path, out: Path) -> Path:
    """A directory whose `palisade-proxy` runs the real one under callgrind (counting off
    until asked; its `--help` probe runs plain) and whose other binaries are the real ones."""
    for name in ("palisade-control-plane", "palisadectl"):
        (into / name).symlink_to(bin_dir.resolve() / name)
    proxy = into / "palisade-proxy"
    real = bin_dir.resolve() / "palisade-proxy"
    proxy.write_text(
        "#!/bin/sh\n"
        f'case "$1" in --help) exec "{real}" "$@";; esac\n'
        f'exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="{out}/cg.%p" "{real}" "$@"\n')
    proxy.chmod(0o755)
    return into


def dumped_total(out: Path, pid: int) -> int:
    newest = max(out.glob(f"cg.{pid}.*"), key=lambda p: p.stat().st_mtime)
    for line in newest.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SetupError(f"{newest} has no totals")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", type=Path, default=Path("target/release"))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=900)
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.max_seconds
    work = Path(tempfile.mkdtemp(prefix="palisade-cpu-"))
    work.chmod(0o755)  # the app nginx's worker user reads its files inside
    out = work / "callgrind"
    out.mkdir()
    wrapped = work / "bin"
    wrapped.mkdir()
    sup = Supervisor(work, None)
    try:
        app = start_app(sup, work)
        mesh = start_palisade(sup, work, wrapped_binaries(args.bin_dir, wrapped, out), app,
                              ready_timeout=READY_TIMEOUT)
        outbound_pid, inbound_pid = mesh.chain.pids
        port = int(mesh.chain.h1_url.rsplit(":", 1)[1])
        for pid in (outbound_pid, inbound_pid):
            callgrind_control("--instr=on", str(pid))
        send(port, args.warmup, deadline)
        for pid in (outbound_pid, inbound_pid):
            callgrind_control("--zero", str(pid))
        send(port, args.requests, deadline)
        totals = {}
        for side, pid in (("outbound", outbound_pid), ("inbound", inbound_pid)):
            callgrind_control(f"--dump={side}", str(pid))
            totals[side] = dumped_total(out, pid)
        for side, total in totals.items():
            print(f"{side}: {total / args.requests:,.0f} instructions per request")
        print(f"both: {sum(totals.values()) / args.requests:,.0f} instructions per request "
              f"({args.requests} requests; callgrind files in {out})")
        return 0
    except SetupError as error:
        print(f"could not measure: {error} (logs in {work})", file=sys.stderr)
        return 1
    finally:
        sup.stop_all()


if __name__ == "__main__":
    sys.exit(main())
