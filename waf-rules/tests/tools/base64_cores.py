#!/usr/bin/env python3
"""Prints the base64 "cores" of byte strings: the characters that encode only the
string's own bits when it sits at offset 0, 1 or 2 of a base64 blob. Whatever surrounds
the string, its encoding contains one of these three cores, so a rule listing them finds
the string inside any base64 value without decoding it (the technique of CRS 944210/944300).

Usage: base64_cores.py WORD...   (a word written as 0xHEX is taken as bytes)
"""
import base64
import sys


def cores(data: bytes):
    out = []
    for off in range(3):
        enc = base64.b64encode(b"\0" * off + data + b"\0\0")
        bits_start = 8 * off
        bits_end = 8 * (off + len(data))
        first = -(-bits_start // 6)  # first char wholly inside the data's bits
        last = bits_end // 6          # one past the last such char
        out.append(enc[first:last].decode())
    return out


for word in sys.argv[1:]:
    data = bytes.fromhex(word[2:]) if word.startswith("0x") else word.encode()
    print(word, " ".join(cores(data)))
