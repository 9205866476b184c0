"""Child processes of the harness and what /proc says about them.

Every child is started in its own session so that it and everything it forks (nginx
workers) can be stopped as one process group, and its group id is appended to a pid file
that `run.sh` also reads in its exit trap: whatever way the driver ends, nothing it
started outlives the run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


class Supervisor:
    """Starts children, remembers them, and stops them all (TERM, then KILL)."""

    def __init__(self, work: Path, pid_file: Path | None):
        self.work = work
        self.pid_file = pid_file
        self.children: list[tuple[str, subprocess.Popen]] = []

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.work / f"{name}.log", "wb")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        try:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
        except OSError as error:
            raise SetupError(f"could not start {name} ({argv[0]}): {error}") from error
        finally:
            log.close()
        self.children.append((name, child))
        if self.pid_file is not None:
            with open(self.pid_file, "a", encoding="ascii") as f:
                f.write(f"{child.pid}\n")
        return child

    def check_alive(self, name: str, child: subprocess.Popen) -> None:
        if child.poll() is not None:
            raise SetupError(
                f"{name} exited with status {child.returncode}; its log: {self.log_tail(name)}"
            )

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.work / f"{name}.log"
        try:
            text = path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return f"(no log at {path})"
        return " | ".join(text[-lines:]) or "(empty)"

    def stop_all(self) -> None:
        for _, child in self.children:
            _signal_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for _, child in self.children:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                child.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                pass
            # The group may hold forked workers even after its leader exited.
            _signal_group(child.pid, signal.SIGKILL)
            try:
                child.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        self.children.clear()
        # Everything recorded is gone: run.sh's trap must not signal those ids again,
        # since the kernel may hand them to unrelated processes later.
        if self.pid_file is not None:
            self.pid_file.write_text("")


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class SetupError(Exception):
    """A component could not be started or never became ready."""


def free_port() -> int:
    """A free loopback port; the race until the child binds it is acceptable on one machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, probe, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.1)
    raise SetupError(f"{what} within {timeout:.0f} s")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (nginx master plus workers)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def rss_kib(pids: list[int]) -> int:
    """Sum of VmRSS over `pids`, in KiB (processes that vanished count as 0)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


def cpu_seconds(pids: list[int]) -> float:
    """Sum of utime+stime over `pids`, in seconds."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # Fields 14 and 15 of stat(5); the list starts at field 3 (state).
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


class RssSampler:
    """Samples the summed RSS of a set of processes until stopped; keeps the peak."""

    def __init__(self, pids: list[int], interval: float = 0.25):
        self.pids = pids
        self.interval = interval
        self.peak = rss_kib(pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_kib(self.pids))
