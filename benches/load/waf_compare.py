#!/usr/bin/env python3
"""WAF side by side: nginx + ModSecurity v3 + OWASP CRS (Debian) at paranoia 1 and 2 next to
Palisade's engine (`palisadectl waf test`) at paranoia 1 and 2, on the same requests.

    python3 benches/load/waf_compare.py [--palisadectl target/debug/palisadectl]
                                        [--corpus ../shared/corpora/crs-regression]
                                        [--out benches/results/waf-compare.md]

Requests: every stage of the CRS regression corpus (`REQUEST-*/*.yaml`) judged by log ids
(`expect_ids` = an attack of that folder's class, `no_expect_ids` = must pass), as
`waf-rules/tests/crs_corpus.rs` counts them, and every request of the benign corpus
(`waf-rules/tests/benign/`), built as `waf-rules/tests/benign_corpus.rs` builds them.
Each request is written once as raw HTTP/1.1 bytes; the same bytes go over a socket to
nginx and into `palisadectl waf test`.

Verdicts: ModSecurity answers 403 when it denies (Debian's body-parse rules, which answer
400, are switched to 403 in this copy so that every ModSecurity denial is 403); any other
4xx/5xx, or no answer, comes from nginx refusing the request before ModSecurity saw it and
is counted separately, out of the compared shares. Palisade's BLOCK is blocked; a file its
parser refuses counts as blocked (its listener answers 400) and is also counted apart.
Everything listens on 127.0.0.1; every request has a timeout; every process started is
stopped on exit.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import SetupError, Supervisor, free_port  # noqa: E402
from setups import CRS_SETUP, DEBIAN_MODSEC_CONF, MODSEC_MODULE, _nginx_conf, _start_nginx  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BENIGN_DIR = REPO / "waf-rules" / "tests" / "benign"
BENIGN_TEXT_FILES = ("prose.txt", "technical.txt", "tokens.txt", "more.txt", "graphql.txt",
                     "international.txt")
BENIGN_CLASS = "benign corpus (waf-rules/tests/benign)"
COLUMNS = ("modsec-pl1", "modsec-pl2", "palisade-pl1", "palisade-pl2")
SEND_TIMEOUT = 5.0
BATCH = 400
MAX_CASES = 20000


@dataclass
class Case:
    """One request and what it should get: `attack` True = block, False = pass."""

    klass: str
    name: str
    attack: bool
    raw: bytes
    verdicts: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Building raw requests.


def _header_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


def raw_from_input(inp: dict) -> bytes:
    """The raw request of one go-ftw stage input: `encoded_request` as is, else built from
    method, uri, version, headers and data, adding `Content-Length` when data has none (as
    go-ftw's header autocompletion does)."""
    enc = inp.get("encoded_request")
    if isinstance(enc, str):
        return base64.b64decode("".join(enc.split()))
    method = str(inp.get("method") or "GET")
    uri = str(inp.get("uri") or "/")
    version = str(inp.get("version") or "HTTP/1.1")
    headers = [(str(k), _header_value(v)) for k, v in (inp.get("headers") or {}).items()]
    data = inp.get("data")
    if isinstance(data, list):
        body = "\r\n".join(str(x) for x in data if isinstance(x, str)).encode()
    elif isinstance(data, str):
        body = data.encode()
    else:
        body = b""
    names = {k.lower() for k, _ in headers}
    if body and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    head = f"{method} {uri} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("utf-8", "surrogateescape") + body


def crs_cases(corpus: Path) -> tuple[list[Case], dict[str, int]]:
    """Cases judged by log ids, and per class how many stages were left out (status or
    regex only)."""
    cases: list[Case] = []
    skipped: dict[str, int] = defaultdict(int)
    for folder in sorted(p for p in corpus.iterdir() if p.is_dir() and p.name.startswith("REQUEST-")):
        for file in sorted(folder.glob("*.yaml")):
            try:
                doc = yaml.safe_load(file.read_text(errors="replace")) or {}
            except yaml.YAMLError:
                skipped[folder.name] += 1
                continue
            for test in doc.get("tests") or []:
                for n, stage in enumerate(test.get("stages") or []):
                    stage = stage.get("stage", stage) if isinstance(stage, dict) else {}
                    inp, out = stage.get("input"), stage.get("output")
                    if not isinstance(inp, dict) or not isinstance(out, dict):
                        continue
                    log = out.get("log") or {}
                    attack = bool(log.get("expect_ids"))
                    benign = not attack and bool(log.get("no_expect_ids"))
                    if not attack and not benign:
                        skipped[folder.name] += 1
                        continue
                    try:
                        raw = raw_from_input(inp)
                    except (ValueError, TypeError):
                        skipped[folder.name] += 1
                        continue
                    cases.append(Case(folder.name, f"{file.stem}/{test.get('test_id', '?')}/{n}",
                                      attack, raw))
                    if len(cases) >= MAX_CASES:
                        return cases, dict(skipped)
    return cases, dict(skipped)


def form_encode(v: str) -> str:
    out = []
    for b in v.encode():
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in "-_.~"):
            out.append(c)
        elif c == " ":
            out.append("+")
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


def _lines(path: Path) -> list[str]:
    return [line.replace("\\n", "\n") for line in path.read_text().splitlines() if line.strip()]


def _benign_raw(method: str, target: str, ctype: str, body: bytes) -> bytes:
    head = (f"{method} {target} HTTP/1.1\r\nHost: app.example.com\r\n"
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/124.0\r\n")
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def benign_cases(directory: Path = BENIGN_DIR) -> list[Case]:
    """The benign corpus as benign_corpus.rs builds it: each text value as a query
    argument, a form field and a JSON field; each document as a JSON body."""
    cases = []
    for name in BENIGN_TEXT_FILES:
        for i, value in enumerate(_lines(directory / name)):
            enc = form_encode(value)
            doc = json.dumps({"author": "ana", "text": value}, ensure_ascii=False, separators=(",", ":"))
            for kind, method, target, ctype, body in (
                ("query", "GET", f"/search?q={enc}&page=1", "", b""),
                ("form", "POST", "/comments", "application/x-www-form-urlencoded",
                 f"author=ana&comment={enc}".encode()),
                ("json", "POST", "/api/notes", "application/json", doc.encode()),
            ):
                cases.append(Case(BENIGN_CLASS, f"{name}:{i + 1}:{kind}", False,
                                  _benign_raw(method, target, ctype, body)))
    for i, doc in enumerate(_lines(directory / "documents.jsonl")):
        cases.append(Case(BENIGN_CLASS, f"documents.jsonl:{i + 1}", False,
                          _benign_raw("POST", "/api/v1/items", "application/json", doc.encode())))
    return cases


# ---------------------------------------------------------------------------------------
# nginx + ModSecurity + CRS.


def modsec_rules(d: Path, paranoia: int) -> Path:
    """The load harness's ModSecurity setup (Debian's modsecurity.conf, engine On, no
    response-body inspection, CRS files in Debian's order) with CRS's paranoia level set
    before CRS initialises, every ModSecurity denial answered 403, and no audit log."""
    base = Path(DEBIAN_MODSEC_CONF).read_text()
    base = base.replace("SecRuleEngine DetectionOnly", "SecRuleEngine On")
    base = base.replace("SecResponseBodyAccess On", "SecResponseBodyAccess Off")
    base = base.replace("SecAuditEngine RelevantOnly", "SecAuditEngine Off")
    base = base.replace("status:400", "status:403")
    base = base.replace("SecUnicodeMapFile unicode.mapping", "SecUnicodeMapFile /etc/nginx/unicode.mapping")
    (d / "modsecurity.conf").write_text(base)
    # CRS 3.3 reads tx.paranoia_level (blocking and detection); CRS 4 reads
    # tx.blocking_paranoia_level. Both are set, in rule 900000's place in crs-setup.conf.
    (d / "paranoia.conf").write_text(
        f'SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level={paranoia},'
        f'setvar:tx.blocking_paranoia_level={paranoia}"\n')
    includes = [str(d / "modsecurity.conf"), CRS_SETUP, str(d / "paranoia.conf"),
                "/etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf",
                "/usr/share/modsecurity-crs/rules/*.conf",
                "/etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf"]
    main = d / "main.conf"
    main.write_text("".join(f"Include {f}\n" for f in includes))
    return main


def start_stack(sup: Supervisor, work: Path) -> dict[str, int]:
    """An app answering 200 to any method and path, and one nginx + ModSecurity per
    paranoia level in front of it. Returns the port of each ModSecurity column."""
    for needed in (MODSEC_MODULE, CRS_SETUP, DEBIAN_MODSEC_CONF):
        if not Path(needed).exists():
            raise SetupError(f"{needed} is missing; install libnginx-mod-http-modsecurity and "
                             "modsecurity-crs (benches/load/run.sh does)")
    app = free_port()
    conf = _nginx_conf(work, "app", "1", f"""
    server {{
        listen 127.0.0.1:{app};
        client_max_body_size 16m;
        location / {{ return 200 'ok\\n'; }}
    }}""")
    _start_nginx(sup, "app", conf, [app])
    ports = {}
    for paranoia in (1, 2):
        name = f"modsec-pl{paranoia}"
        d = work / name / "modsec"
        d.mkdir(parents=True)
        main = modsec_rules(d, paranoia)
        port = free_port()
        conf = _nginx_conf(work, name, "2", f"""
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 16m;
        modsecurity on;
        modsecurity_rules_file {main};
        location / {{
            proxy_pass http://127.0.0.1:{app};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}""", modules=f"load_module {MODSEC_MODULE};")
        _start_nginx(sup, name, conf, [port])
        ports[name] = port
    return ports


STATUS_LINE = re.compile(rb"^HTTP/\d\.\d (\d{3})")


def send_raw(port: int, raw: bytes, timeout: float = SEND_TIMEOUT) -> int | None:
    """Sends raw bytes on a fresh connection; the status of the first response, or None
    when nothing parseable came back before the timeout or the close."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(raw)
            buf = b""
            while b"\r\n" not in buf and len(buf) < 4096:
                s.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
    except OSError:
        return None
    m = STATUS_LINE.match(buf)
    return int(m.group(1)) if m else None


def modsec_verdict(status: int | None) -> str:
    """403 = ModSecurity denied; 1xx-3xx and 404 = passed to the app; anything else =
    nginx refused it (or no answer) before ModSecurity judged it."""
    if status == 403:
        return "block"
    if status is not None and (status < 400 or status == 404):
        return "pass"
    return "refused" if status is not None else "no-answer"


# ---------------------------------------------------------------------------------------
# Palisade.


VERDICT_LINE = re.compile(r"-> (PASS|DETECT|BLOCK)\b")


def parse_palisadectl(output: str) -> dict[str, str]:
    """Verdict per file from `palisadectl waf test` output: `== FILE: METHOD TARGET` opens
    a file's report and `  score ... -> ACTION` closes it; `== FILE: error: ...` marks a
    file the parser refused."""
    verdicts: dict[str, str] = {}
    current = None
    for line in output.splitlines():
        if line.startswith("== "):
            name, _, rest = line[3:].partition(": ")
            if rest.startswith("error:"):
                verdicts[name] = "unparseable"
                current = None
            else:
                current = name
        elif current is not None:
            m = VERDICT_LINE.search(line)
            if m:
                verdicts[current] = "block" if m.group(1) == "BLOCK" else "pass"
                current = None
    return verdicts


def run_palisade(ctl: Path, files: list[Path], paranoia: int) -> dict[str, str]:
    verdicts: dict[str, str] = {}
    for i in range(0, len(files), BATCH):
        batch = [str(f) for f in files[i:i + BATCH]]
        r = subprocess.run([str(ctl), "waf", "test", "--paranoia", str(paranoia), *batch],
                           capture_output=True, text=True, errors="replace", timeout=300)
        got = parse_palisadectl(r.stdout)
        missing = [f for f in batch if f not in got]
        if missing:
            raise SetupError(f"palisadectl gave no verdict for {len(missing)} file(s), e.g. "
                             f"{missing[0]}; stderr: {r.stderr.strip()[:300]}")
        verdicts.update(got)
    return verdicts


# ---------------------------------------------------------------------------------------
# Tally and report.


def tally(cases: list[Case]) -> dict[str, dict]:
    """Per class: judged attacks and benign cases (nginx let both ModSecurity levels judge
    them), per column how many were blocked / passed, and what was left out."""
    out: dict[str, dict] = {}
    for c in cases:
        t = out.setdefault(c.klass, {"attacks": 0, "benign": 0, "refused": 0,
                                     "blocked": {k: 0 for k in COLUMNS},
                                     "passed": {k: 0 for k in COLUMNS},
                                     "palisade_unparseable": 0})
        if any(c.verdicts[k] in ("refused", "no-answer") for k in COLUMNS[:2]):
            t["refused"] += 1
            continue
        t["attacks" if c.attack else "benign"] += 1
        t["palisade_unparseable"] += c.verdicts["palisade-pl1"] == "unparseable"
        for k in COLUMNS:
            blocked = c.verdicts[k] in ("block", "unparseable")
            if c.attack:
                t["blocked"][k] += blocked
            else:
                t["passed"][k] += not blocked
    return out


def _pct(n: int, d: int) -> str:
    return "–" if d == 0 else f"{100 * n / d:.1f} % ({n}/{d})"


def render(meta: dict, tallies: dict[str, dict], skipped: dict[str, int], refused_examples: dict) -> str:
    lines = [
        "# WAF side by side: ModSecurity + CRS vs Palisade",
        "",
        f"Measured {meta['date']} UTC with `{meta['command']}`.",
        "",
        f"- Versions: {meta['versions']}.",
        "- ModSecurity: Debian's modsecurity.conf with the engine On (blocking), response bodies "
        "not inspected, CRS included as Debian lists it, `tx.paranoia_level` (and "
        "`tx.blocking_paranoia_level`) set to 1 or 2, anomaly threshold as shipped (5). Its "
        "body-parse denials (400 in Debian's file) answer 403 here so that 403 = ModSecurity.",
        "- Palisade: `palisadectl waf test --paranoia N` with the built-in rules and the default "
        "threshold (5), on the same raw bytes sent to nginx.",
        "- A CRS case counts by class (folder): a stage whose `expect_ids` names a rule is an "
        "attack (should be blocked), one with only `no_expect_ids` is benign (should pass). "
        "Stages judged by status or log text only are not counted.",
        "- The CRS corpus is from coreruleset commit 2cbd1d0 (CRS 4 era); Debian ships CRS "
        f"{meta['crs']}. Rules that exist only in CRS 4 cannot fire in this ModSecurity setup.",
        "",
        "## Attacks blocked and benign cases passed, per class",
        "",
        "Only cases nginx handed to ModSecurity at both levels are counted (see \"Not judged\").",
        "",
        "| class | attacks | ModSec PL1 | ModSec PL2 | Palisade PL1 | Palisade PL2 |",
        "|---|---|---|---|---|---|",
    ]
    crs = {k: v for k, v in tallies.items() if k != BENIGN_CLASS}
    total = {"attacks": 0, "benign": 0, "blocked": defaultdict(int), "passed": defaultdict(int)}
    for klass, t in crs.items():
        lines.append(f"| {klass} | {t['attacks']} | " +
                     " | ".join(_pct(t["blocked"][k], t["attacks"]) for k in COLUMNS) + " |")
        total["attacks"] += t["attacks"]
        total["benign"] += t["benign"]
        for k in COLUMNS:
            total["blocked"][k] += t["blocked"][k]
            total["passed"][k] += t["passed"][k]
    lines.append(f"| **all** | {total['attacks']} | " +
                 " | ".join(_pct(total["blocked"][k], total["attacks"]) for k in COLUMNS) + " |")
    lines += ["", "Benign CRS cases (`no_expect_ids`) passed:", "",
              "| class | benign | ModSec PL1 | ModSec PL2 | Palisade PL1 | Palisade PL2 |",
              "|---|---|---|---|---|---|"]
    for klass, t in crs.items():
        if t["benign"]:
            lines.append(f"| {klass} | {t['benign']} | " +
                         " | ".join(_pct(t["passed"][k], t["benign"]) for k in COLUMNS) + " |")
    lines.append(f"| **all** | {total['benign']} | " +
                 " | ".join(_pct(total["passed"][k], total["benign"]) for k in COLUMNS) + " |")
    b = tallies.get(BENIGN_CLASS)
    if b:
        lines += ["", "## False positives on the project's benign corpus", "",
                  "Each text value of `waf-rules/tests/benign/` as a query argument, a form field "
                  "and a JSON field, each document as a JSON body (as `benign_corpus.rs`).", "",
                  "| requests | ModSec PL1 | ModSec PL2 | Palisade PL1 | Palisade PL2 |",
                  "|---|---|---|---|---|",
                  f"| {b['benign']} | " + " | ".join(
                      _pct(b["benign"] - b["passed"][k], b["benign"]) for k in COLUMNS) + " |"]
    lines += ["", "## Not judged", "",
              "| class | refused by nginx (not 403, not passed, or no answer) | "
              "Palisade parser refused (counted as blocked) | stages without log ids |",
              "|---|---|---|---|"]
    for klass in sorted(set(tallies) | set(skipped)):
        t = tallies.get(klass, {"refused": 0, "palisade_unparseable": 0})
        lines.append(f"| {klass} | {t['refused']} | {t['palisade_unparseable']} | "
                     f"{skipped.get(klass, 0)} |")
    if refused_examples:
        lines += ["", "Statuses nginx answered to the refused cases (count): " +
                  ", ".join(f"{k} × {v}" for k, v in sorted(refused_examples.items(), key=str)) + "."]
    lines += ["", "What this corpus cannot judge: requests nginx refuses before ModSecurity "
              "sees them (malformed request lines, bad headers, methods or URIs nginx will not "
              "accept) are left out of every column above; CRS cases that test a particular "
              "rule id or paranoia-level behaviour are counted only by class; the CRS cases' "
              "own classes decide what is an attack, and some `no_expect_ids` cases are "
              "attacks of another class (another rule is expected to catch them), so "
              "\"benign passed\" under 100 % is not always a false positive. The benign "
              "corpus is the project's own text, not production traffic.", ""]
    return "\n".join(lines)


def versions(ctl: Path) -> tuple[str, str]:
    def q(pkg: str) -> str:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip() or "?"
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10).stderr.strip()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, timeout=10).stdout.strip()
    crs = q("modsecurity-crs")
    return (f"{nginx}; libmodsecurity3 {q('libmodsecurity3')}; libnginx-mod-http-modsecurity "
            f"{q('libnginx-mod-http-modsecurity')}; modsecurity-crs {crs}; palisadectl "
            f"({ctl}) at commit {commit}", crs)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--palisadectl", type=Path, default=REPO / "target" / "debug" / "palisadectl")
    p.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpora" / "crs-regression")
    p.add_argument("--out", type=Path, default=REPO / "benches" / "results" / "waf-compare.md")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--details", type=Path,
                   help="also write one JSON line per request (class, name, attack, verdicts)")
    args = p.parse_args(argv)
    if not args.palisadectl.is_file():
        print(f"{args.palisadectl} is missing: cargo build -p palisade-control-plane --bin palisadectl",
              file=sys.stderr)
        return 2
    crs, skipped = crs_cases(args.corpus)
    cases = crs + benign_cases()
    print(f"{len(crs)} CRS cases, {len(cases) - len(crs)} benign-corpus requests", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="waf-compare-") as tmp:
        work = Path(tmp)
        files = []
        (work / "req").mkdir()
        for i, c in enumerate(cases):
            f = work / "req" / f"{i}.http"
            f.write_bytes(c.raw)
            files.append(f)
        for paranoia in (1, 2):
            got = run_palisade(args.palisadectl, files, paranoia)
            for c, f in zip(cases, files):
                c.verdicts[f"palisade-pl{paranoia}"] = got[str(f)]
        sup = Supervisor(work, None)
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            ports = start_stack(sup, work)
            refused: dict = defaultdict(int)
            for name, port in ports.items():
                with ThreadPoolExecutor(max_workers=max(1, min(args.workers, 16))) as pool:
                    statuses = list(pool.map(lambda c: send_raw(port, c.raw), cases))
                for c, status in zip(cases, statuses):
                    c.verdicts[name] = modsec_verdict(status)
                    if name == "modsec-pl1" and c.verdicts[name] in ("refused", "no-answer"):
                        refused[status if status is not None else "no answer"] += 1
        finally:
            sup.stop_all()
            signal.signal(signal.SIGTERM, previous)
    version_text, crs_version = versions(args.palisadectl)
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "command": " ".join(["python3 benches/load/waf_compare.py", *argv]),
            "versions": version_text, "crs": crs_version}
    page = render(meta, tally(cases), skipped, dict(refused))
    args.out.write_text(page)
    if args.details is not None:
        with open(args.details, "w", encoding="utf-8") as f:
            for c in cases:
                f.write(json.dumps({"class": c.klass, "name": c.name, "attack": c.attack,
                                    "verdicts": c.verdicts}) + "\n")
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
