"""Tests of waf_compare.py without nginx or palisadectl:
`python3 -m unittest discover -s benches/load`."""

from __future__ import annotations

import base64
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import waf_compare as wc  # noqa: E402


def case(klass: str, attack: bool, **verdicts: str) -> wc.Case:
    c = wc.Case(klass, "x", attack, b"")
    c.verdicts = {k.replace("_", "-"): v for k, v in verdicts.items()}
    return c


class RawRequestTests(unittest.TestCase):
    def test_built_request_gets_content_length_and_crlf(self):
        raw = wc.raw_from_input({"method": "POST", "uri": "/a?b=1", "headers": {"Host": "localhost"},
                                 "data": ["x=1", "y=2"]})
        self.assertEqual(raw, b"POST /a?b=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8\r\n\r\nx=1\r\ny=2")

    def test_existing_content_length_is_kept_and_defaults_apply(self):
        raw = wc.raw_from_input({"headers": {"Content-Length": 3, "X-Flag": True}, "data": "abc"})
        self.assertEqual(raw, b"GET / HTTP/1.1\r\nContent-Length: 3\r\nX-Flag: true\r\n\r\nabc")

    def test_encoded_request_is_sent_byte_for_byte(self):
        wire = b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n"
        enc = base64.b64encode(wire).decode()
        self.assertEqual(wc.raw_from_input({"encoded_request": enc[:10] + "\n " + enc[10:],
                                            "method": "POST"}), wire)

    def test_crs_cases_keep_only_stages_with_log_ids(self):
        with tempfile.TemporaryDirectory() as d:
            folder = Path(d) / "REQUEST-942-APPLICATION-ATTACK-SQLI"
            folder.mkdir()
            (folder / "942100.yaml").write_text("""
tests:
  - test_id: 1
    stages:
      - input: {uri: "/?a=1' or 1=1"}
        output: {log: {expect_ids: [942100]}}
  - test_id: 2
    stages:
      - stage:
          input: {uri: "/?a=hello"}
          output: {log: {no_expect_ids: [942100]}}
  - test_id: 3
    stages:
      - input: {uri: "/"}
        output: {status: 200}
""")
            (Path(d) / "RESPONSE-950-DATA-LEAKAGES").mkdir()
            cases, skipped = wc.crs_cases(Path(d))
        self.assertEqual([(c.klass, c.attack) for c in cases],
                         [(folder.name, True), (folder.name, False)])
        self.assertEqual(skipped, {folder.name: 1})

    def test_benign_cases_mirror_benign_corpus_rs(self):
        cases = wc.benign_cases()
        self.assertGreater(len(cases), 500)
        self.assertTrue(all(not c.attack and c.klass == wc.BENIGN_CLASS for c in cases))
        form = next(c for c in cases if c.name.endswith(":form"))
        self.assertIn(b"Content-Type: application/x-www-form-urlencoded\r\n", form.raw)
        head, body = form.raw.split(b"\r\n\r\n", 1)
        self.assertIn(f"Content-Length: {len(body)}".encode(), head)
        self.assertEqual(wc.form_encode("don't a+b é"), "don%27t+a%2Bb+%C3%A9")


class VerdictTests(unittest.TestCase):
    def test_modsecurity_statuses(self):
        self.assertEqual(wc.modsec_verdict(403), "block")
        self.assertEqual(wc.modsec_verdict(200), "pass")
        self.assertEqual(wc.modsec_verdict(404), "pass")
        self.assertEqual(wc.modsec_verdict(400), "refused")
        self.assertEqual(wc.modsec_verdict(505), "refused")
        self.assertEqual(wc.modsec_verdict(None), "no-answer")

    def test_palisadectl_output_is_parsed_per_file(self):
        out = ("== /t/0.http: GET /?q=1\n  score 0 / threshold 5 at paranoia 1 -> PASS\n"
               "== /t/1.http: GET /?q=x\n  rule 942100 [sqli] paranoia 1 +5 on args:q: \"x\" (m)\n"
               "  score 5 / threshold 5 at paranoia 1 -> BLOCK (403)\n"
               "== /t/2.http: error: /t/2.http is not a raw HTTP/1.1 request\n"
               "== /t/3.http: GET /\n  score 3 / threshold 5 at paranoia 1 -> DETECT\n")
        self.assertEqual(wc.parse_palisadectl(out), {"/t/0.http": "pass", "/t/1.http": "block",
                                                     "/t/2.http": "unparseable", "/t/3.http": "pass"})

    def test_send_raw_gives_none_when_nothing_listens(self):
        self.assertIsNone(wc.send_raw(wc.free_port(), b"GET / HTTP/1.1\r\n\r\n", timeout=1))


class TallyTests(unittest.TestCase):
    def test_refused_cases_are_left_out_and_unparseable_counts_as_blocked(self):
        k = "REQUEST-942-APPLICATION-ATTACK-SQLI"
        cases = [
            case(k, True, modsec_pl1="block", modsec_pl2="block", palisade_pl1="pass", palisade_pl2="unparseable"),
            case(k, True, modsec_pl1="refused", modsec_pl2="block", palisade_pl1="block", palisade_pl2="block"),
            case(k, False, modsec_pl1="pass", modsec_pl2="block", palisade_pl1="pass", palisade_pl2="pass"),
        ]
        t = wc.tally(cases)[k]
        self.assertEqual((t["attacks"], t["benign"], t["refused"]), (1, 1, 1))
        self.assertEqual(t["blocked"], {"modsec-pl1": 1, "modsec-pl2": 1, "palisade-pl1": 0, "palisade-pl2": 1})
        self.assertEqual(t["passed"], {"modsec-pl1": 1, "modsec-pl2": 0, "palisade-pl1": 1, "palisade-pl2": 1})

    def test_report_has_false_positive_rate_and_not_judged_counts(self):
        cases = [case(wc.BENIGN_CLASS, False, modsec_pl1="block", modsec_pl2="block",
                      palisade_pl1="pass", palisade_pl2="pass"),
                 case(wc.BENIGN_CLASS, False, modsec_pl1="pass", modsec_pl2="block",
                      palisade_pl1="pass", palisade_pl2="block")]
        meta = {"date": "d", "command": "c", "versions": "v", "crs": "3.3.4"}
        page = wc.render(meta, wc.tally(cases), {"REQUEST-920-PROTOCOL-ENFORCEMENT": 4}, {400: 2})
        self.assertIn("| 2 | 50.0 % (1/2) | 100.0 % (2/2) | 0.0 % (0/2) | 50.0 % (1/2) |", page)
        self.assertIn("| REQUEST-920-PROTOCOL-ENFORCEMENT | 0 | 0 | 4 |", page)
        self.assertIn("400 × 2", page)


if __name__ == "__main__":
    unittest.main()
