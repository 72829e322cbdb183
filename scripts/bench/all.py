#!/usr/bin/env python3
"""Run every wirestack benchmark in one go, side by side on one machine, and gather their tables.

    sudo python3 scripts/bench/all.py [--quick]

Runs, one after the other (each interleaves its own variants internally; all bounded, loopback only):

    smtp.py           `wirestack smtp --json -` against a minimal scapy script (startup, the seed)
    probe.py          the probe's cost: 2,000 http.client requests, 20,000 round trips; strace as reference
    capture.py        completeness under a 106,000-packet burst against tcpdump; traced/untraced; peak memory
    read.py           `wirestack read` of a 1,000,000-packet pcap against tshark -T fields
    pytest_plugin.py  `pytest --wirestack` against plain pytest on 200 loopback tests

prints each table, and writes them all, with the lines that state targets, to scripts/bench/results/all.md
(which README.md links to). `--quick` uses smaller counts (a smoke run, not numbers to quote).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

FULL: list[tuple[str, list[str]]] = [
    ("smtp", ["--runs", "20"]),
    ("probe", ["--runs", "5"]),
    ("capture", ["--runs", "5"]),
    ("read", ["--runs", "3"]),
    ("pytest_plugin", ["--runs", "5"]),
]
QUICK: list[tuple[str, list[str]]] = [
    ("smtp", ["--runs", "5"]),
    ("probe", ["--runs", "2", "--requests", "300", "--round-trips", "3000"]),
    ("capture", ["--runs", "1", "--datagrams", "20000", "--connects", "300"]),
    ("read", ["--runs", "1", "--packets", "100000"]),
    ("pytest_plugin", ["--runs", "2", "--tests", "50"]),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller counts: a smoke run")
    ap.add_argument("--only", nargs="*", help="run only these benchmarks (smtp, probe, capture, read, pytest_plugin)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("all.py: the capture benchmarks need root: run it with sudo", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    sections = [f"# wirestack benchmarks\n\nOne run of `scripts/bench/all.py{' --quick' if args.quick else ''}` on "
                f"{os.uname().nodename} ({os.cpu_count()} CPUs), {time.strftime('%Y-%m-%d %H:%M %Z')}.\n"]
    status = 0
    for name, extra in QUICK if args.quick else FULL:
        if args.only and name not in args.only:
            earlier = RESULTS / f"{name}.md"
            if earlier.exists():  # keep the last full table of a benchmark not run this time, marked as such
                sections.append(f"## {name} (not run this time: its table from an earlier run)\n\n"
                                f"{earlier.read_text()}\n")
            continue
        md = RESULTS / f"{name}.md"
        cmd = [sys.executable, str(HERE / f"{name}.py"), *extra, "--markdown", str(md)]
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.monotonic()
        done = subprocess.run(cmd, text=True, capture_output=True, timeout=3600)
        took = time.monotonic() - start
        print(done.stdout.rstrip())
        if done.returncode != 0:
            status = 1
            print(f"({name} exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]})", flush=True)
        body = md.read_text() if md.exists() else "```\n" + done.stdout + "\n```\n"
        sections.append(f"## {name} ({took:.0f} s, exit {done.returncode})\n\n{body}\n")
    (RESULTS / "all.md").write_text("\n".join(sections))
    print(f"\nwrote {RESULTS / 'all.md'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
