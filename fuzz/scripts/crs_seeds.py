#!/usr/bin/env python3
"""Turns the CRS regression tests in ../shared/corpora/crs-regression into starting
inputs for the WAF fuzz targets, under fuzz/corpus/ (git-ignored, regenerated):

  corpus/waf_raw_request/  every test request as raw HTTP/1.1 bytes
  corpus/waf_bodies/       every test body, behind the input header waf_bodies reads
                           (a choice byte, the content type's parameter, `\\n`)
  corpus/waf_json/         the bodies that parse as JSON

Usage (from fuzz/): python3 scripts/crs_seeds.py [path to crs-regression]
Needs PyYAML (`pip install pyyaml`).
"""

import base64
import hashlib
import pathlib
import sys

import yaml

FUZZ = pathlib.Path(__file__).resolve().parent.parent
DEFAULT = FUZZ.parent.parent / "shared" / "corpora" / "crs-regression"

# waf_bodies' content type choices (the low three bits of its first byte).
CHOICES = [
    ("application/x-www-form-urlencoded", 0),
    ("multipart/form-data", 1),
    ("application/xml", 3),
    ("text/xml", 3),
    ("application/json", 4),
    ("text/plain", 5),
]


def write(directory, data):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def raw_request(stage):
    if "encoded_request" in stage:
        return base64.b64decode(stage["encoded_request"])
    if "raw_request" in stage:
        return stage["raw_request"].encode("utf-8", "surrogateescape")
    method = str(stage.get("method", "GET"))
    uri = str(stage.get("uri", "/"))
    version = str(stage.get("version", "HTTP/1.1"))
    headers = stage.get("headers") or {}
    data = stage.get("data") or ""
    if isinstance(data, list):
        data = "\r\n".join(map(str, data))
    body = str(data).encode("utf-8", "surrogateescape")
    lines = [f"{method} {uri} {version}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    head = "\r\n".join(lines).encode("utf-8", "surrogateescape")
    return head + b"\r\n\r\n" + body, headers, body


def main():
    root = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    counts = {"waf_raw_request": 0, "waf_bodies": 0, "waf_json": 0}
    for path in sorted(root.rglob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text(errors="replace"))
        except yaml.YAMLError:
            continue
        for test in (doc or {}).get("tests") or []:
            for stage in test.get("stages") or []:
                stage = stage.get("input") or stage.get("stage", {}).get("input") or {}
                made = raw_request(stage)
                if isinstance(made, bytes):
                    write(FUZZ / "corpus" / "waf_raw_request", made)
                    counts["waf_raw_request"] += 1
                    continue
                raw, headers, body = made
                write(FUZZ / "corpus" / "waf_raw_request", raw)
                counts["waf_raw_request"] += 1
                if not body:
                    continue
                ctype = next((str(v) for k, v in headers.items() if k.lower() == "content-type"), "")
                choice = next((c for t, c in CHOICES if ctype.lower().startswith(t)), 7)
                param = ctype.split(";", 1)[1].strip() if ";" in ctype else ctype
                if choice == 1:
                    param = param.split("boundary=", 1)[-1]
                write(FUZZ / "corpus" / "waf_bodies", bytes([choice]) + param.encode() + b"\n" + body)
                counts["waf_bodies"] += 1
                if choice == 4:
                    write(FUZZ / "corpus" / "waf_json", body)
                    counts["waf_json"] += 1
    print(counts)


if __name__ == "__main__":
    main()
