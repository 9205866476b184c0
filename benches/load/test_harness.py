"""Tests of the harness itself (no load, no nginx): `python3 -m unittest discover -s benches/load`."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import driver  # noqa: E402
from loadgen import Run, oha_command  # noqa: E402
from procs import Supervisor, cpu_seconds, process_tree, rss_kib  # noqa: E402
from report import SOAK_HEADING, _added, render, render_soak  # noqa: E402
from setups import Target  # noqa: E402

META = {
    "caveat": "busy", "cpu": "CPU", "nproc": 2, "kernel": "6", "tools": "oha", "date": "d",
    "mode": "quick", "seconds": 3, "command": "run.sh --quick", "rss_idle_kib": {"palisade": 2048, "nginx": 4096},
}


def run(scenario: str, rate: int | None, p50: float, p99: float, failure: str | None = None, **kw) -> Run:
    r = Run(scenario, "h1", "small", rate, requests=1000, ok=1000, rps=500.0,
            latency_ms={"p50": p50, "p90": p50, "p99": p99, "p99.9": p99}, failure=failure, **kw)
    return r


class ReportTests(unittest.TestCase):
    def test_added_latency_is_scenario_minus_direct_and_absent_when_a_run_failed(self):
        base = run("direct", 500, 0.2, 1.0)
        self.assertAlmostEqual(_added(run("nginx", 500, 0.5, 3.0), base, "p99"), 2.0)
        self.assertIsNone(_added(run("nginx", 500, 0.5, 3.0, failure="saturated"), base, "p99"))
        self.assertIsNone(_added(None, base, "p50"))

    def test_page_has_ratios_reasons_and_cpu_per_thousand(self):
        runs = [run("direct", 500, 0.2, 1.0), run("palisade", 500, 0.4, 2.0, cpu_seconds=0.5),
                run("nginx", 500, 0.6, 5.0, cpu_seconds=1.0)]
        page = render(META, runs, {}, {"palisade-inbound": "binaries missing"})
        self.assertIn("binaries missing", page)
        # Palisade adds 0.2 ms at p50 and 1.0 ms at p99; nginx 0.4 and 4.0.
        self.assertIn("| h1 | small | 500 | 0.20 | 0.20 | 1.00 | 1.00 | 0.40 | 0.40 | 4.00 | 4.00 | 0.50× | 0.25× |", page)
        # 0.5 s of CPU over 1,000 requests.
        self.assertIn("| 500.0 |", page)
        self.assertIn("| palisade ÷ nginx | h1 | small | – | 0.50× | 0.50× |", page)

    def test_no_ratio_of_negative_differences(self):
        runs = [run("direct", 500, 0.2, 9.0), run("palisade", 500, 0.4, 2.0), run("nginx", 500, 0.6, 5.0)]
        page = render(META, runs, {}, {})
        self.assertIn("| 0.50× | – |", page)
        self.assertNotIn("-", page.split("| h1 | small | 500 |")[1].split("\n")[0].split("|")[-3])

    def test_waf_table_counts_blocked_and_passed(self):
        waf = {"nginx-modsecurity": {"results": [
            {"kind": "attack", "name": "a", "status": 403},
            {"kind": "attack", "name": "b", "status": 200},
            {"kind": "benign", "name": "c", "status": 200},
        ]}}
        page = render(META, [], waf, {})
        self.assertIn("| nginx-modsecurity | 1/2 | 1/2 | 1/1 | 0/1 |", page)

    def test_soak_growth_is_from_the_first_sample_under_load(self):
        text = render_soak({"target": "palisade", "rate": 1000, "proto": "h1", "size": "small",
                            "seconds": 600, "every": 60, "rss_idle_kib": 1024,
                            "samples_kib": [4096, 5120], "rss_end_kib": 6144, "requests": 10,
                            "ok": 10, "p99": 1.5}, META)
        self.assertIn("growth +2.0 MiB", text)
        self.assertIn("**4.0 MiB at the start**", text)


class PageFileTests(unittest.TestCase):
    def test_tables_and_soak_section_replace_only_their_own_part(self):
        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / "load.md"
            driver.write_tables(out, "tables v1\n")
            driver.write_soak_section(out, SOAK_HEADING + "soak v1\n")
            driver.write_tables(out, "tables v2\n")
            self.assertEqual(out.read_text(), "tables v2\n\n" + SOAK_HEADING + "soak v1\n")
            driver.write_soak_section(out, SOAK_HEADING + "soak v2\n")
            self.assertEqual(out.read_text(), "tables v2\n\n" + SOAK_HEADING + "soak v2\n")


class OhaCommandTests(unittest.TestCase):
    def test_fixed_rate_corrects_for_coordinated_omission_and_saturation_has_no_rate(self):
        t = Target("x", "http://127.0.0.1:1", "http://127.0.0.1:2", host="app")
        fixed = oha_command(t, "h1", "small", 500, 3)
        self.assertIn("--latency-correction", fixed)
        self.assertEqual(fixed[fixed.index("-q") + 1], "500")
        self.assertEqual(fixed[fixed.index("--connect-to") + 1], "app:80:127.0.0.1:1")
        self.assertTrue(fixed[-1].startswith("http://app/small?"))
        saturate = oha_command(t, "h2", "16k", None, 3)
        self.assertNotIn("-q", saturate)
        self.assertIn("--http2", saturate)
        self.assertTrue(saturate[-1].startswith("http://app/16k?"))
        self.assertEqual(saturate[saturate.index("--connect-to") + 1], "app:80:127.0.0.1:2")

    def test_client_certificate_is_presented(self):
        t = Target("x", "https://127.0.0.1:1", "https://127.0.0.1:1",
                   client_cert=(Path("/c.pem"), Path("/k.pem")))
        argv = oha_command(t, "h1", "small", 500, 3)
        self.assertEqual(argv[argv.index("--cert") + 1], "/c.pem")
        self.assertEqual(argv[argv.index("--key") + 1], "/k.pem")


class ProcTests(unittest.TestCase):
    def test_proc_readings_of_this_process(self):
        self.assertGreater(rss_kib([os.getpid()]), 1000)
        start = cpu_seconds([os.getpid()])
        deadline = time.process_time() + 0.05
        while time.process_time() < deadline:
            pass
        self.assertGreaterEqual(cpu_seconds([os.getpid()]), start)
        self.assertEqual(rss_kib([2**22 + 12345]), 0)

    def test_supervisor_stops_the_whole_group_and_forgets_the_ids(self):
        with tempfile.TemporaryDirectory() as d:
            pid_file = Path(d) / "pids"
            sup = Supervisor(Path(d), pid_file)
            child = sup.spawn("sleeper", ["sh", "-c", "sleep 30 & sleep 30"])
            time.sleep(0.3)
            tree = process_tree(child.pid)
            self.assertGreaterEqual(len(tree), 2)
            self.assertEqual(pid_file.read_text().strip(), str(child.pid))
            sup.stop_all()
            time.sleep(0.2)
            self.assertEqual(rss_kib(tree), 0)
            self.assertEqual(pid_file.read_text(), "")


if __name__ == "__main__":
    unittest.main()
