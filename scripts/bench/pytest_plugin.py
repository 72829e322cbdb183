#!/usr/bin/env python3
"""Benchmark (not a test): what `pytest --wirestack` costs on a suite of small loopback tests.

The suite is generated into a temporary directory: a session-scoped echo server (a thread of the pytest process,
on 127.0.0.1, an ephemeral port) and N tests; three in four connect, send a line, read the echo and close, one in
four connects to a closed port and expects ConnectionRefusedError (the SYN is answered with RST/ACK). With
`--failing K`, K of the refused tests do not expect the error and fail (each then gets its wirestack section and
pcapng: the slow path).

Variants, each a fresh `python -m pytest -q -p no:cacheprovider` subprocess with this interpreter:

    plain   -p no:wirestack.testing.pytest_plugin            the plugin blocked: pytest as if wirestack were absent
    inert   -p wirestack.testing.pytest_plugin               the plugin loaded but not enabled (what an installed
                                                             entry point gives every suite)
    on      -p wirestack.testing.pytest_plugin --wirestack   capture and probe for the session

Runs are interleaved (plain, inert, on, plain, ...) after one warm-up round, so drifts (CPU frequency, page
cache, other load on the machine) hit every variant alike. Wall time is the whole subprocess (interpreter start,
imports, collection, the capture worker's start and stop, every test); "session" is the time pytest reports in
its summary line (collection and tests; it starts after the worker is up). Every run is checked: exit status,
the pass/fail counts, and for `on`: one pcapng per failing test and none for passing tests. A run that fails
its check is reported and left out of the statistics.

CPU is user + system time of the pytest process and its children (the capture worker), from getrusage: less
sensitive than wall time to other load on the machine.

Target (issue 7): median(on) / median(plain) <= 1.5 in wall time.

With `--project`, the suite is this repository's own `tests/` (plain and on only; every run must pass).

Usage: sudo python3 scripts/bench/pytest_plugin.py [--tests 200] [--failing 0] [--runs 7] [--project]
                                                   [--markdown FILE]
Exit status: 0 done, 1 a check failed or the target was missed, 2 cannot run (not root, bad arguments).
Traffic goes to 127.0.0.1 only; every run has a time limit.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0  # seconds, per run
TARGET_RATIO = 1.5

CONFTEST = '''\
import socket
import threading
import time

import pytest


@pytest.fixture(scope="session")
def echo_server():
    """An echo server on 127.0.0.1 in a thread of this process: one line per connection."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = conn.recv(4096)
                if data:
                    conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()
    stop.set()
    thread.join(2)
    srv.close()


@pytest.fixture(scope="session")
def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
'''

ECHO = '''
def test_echo_{i}(echo_server):
    with socket.create_connection(echo_server, timeout=5) as s:
        s.sendall(b"ping {i}\\n")
        assert s.recv(100) == b"ping {i}\\n"
'''

REFUSED = '''
def test_refused_{i}(closed_port):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", closed_port), timeout=5)
'''

FAILING = '''
def test_refused_{i}(closed_port):
    socket.create_connection(("127.0.0.1", closed_port), timeout=5)
'''

VARIANTS = {
    "plain": ["-p", "no:wirestack.testing.pytest_plugin"],
    "inert": ["-p", "wirestack.testing.pytest_plugin"],
    "on": ["-p", "wirestack.testing.pytest_plugin", "--wirestack"],
}


@dataclass
class Variant:
    key: str
    wall_ms: list[float] = field(default_factory=list)
    session_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def generate(folder: Path, tests: int, failing: int) -> tuple[int, int]:
    """Write the suite; return (passing, failing) counts."""
    (folder / "conftest.py").write_text(CONFTEST)
    parts = ["import socket\n\nimport pytest\n"]
    failed = 0
    for i in range(tests):
        if i % 4 == 3:
            if failed < failing:
                parts.append(FAILING.format(i=i))
                failed += 1
            else:
                parts.append(REFUSED.format(i=i))
        else:
            parts.append(ECHO.format(i=i))
    if failed < failing:
        raise SystemExit(f"--failing {failing}: at most {tests // 4} of {tests} tests are refused tests")
    (folder / "test_generated.py").write_text("".join(parts))
    (folder / "pytest.ini").write_text("[pytest]\n")  # the rootdir: captures/pytest goes here
    return tests - failed, failed


def run_once(key: str, folder: Path, passing: int, failing: int, project: bool = False) -> tuple[float, float, float]:
    captures = folder / "captures"
    if not project:
        shutil.rmtree(captures, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(
        os.pathsep), "PYTEST_ADDOPTS": ""}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *VARIANTS[key],
           *([] if project else ["test_generated.py"])]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    wall = (time.perf_counter() - start) * 1e3
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # pytest and its children (the capture worker)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1e3
    out = done.stdout
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    m = re.search(r" in ([0-9.]+)s", summary)
    session = float(m.group(1)) * 1e3 if m else float("nan")
    if project:  # this repository's own tests: they must all pass, in every variant
        if done.returncode != 0:
            raise CheckFailed(f"exit {done.returncode}, summary {summary!r}")
        return wall, session, cpu
    expected = f"{failing} failed, {passing} passed" if failing else f"{passing} passed"
    if done.returncode != (1 if failing else 0) or not summary.startswith(expected):
        raise CheckFailed(f"exit {done.returncode}, summary {summary!r}, expected {expected!r}; "
                          f"stderr: {done.stderr.strip()[-300:]}")
    files = sorted(p.name for p in (captures / "pytest").glob("*.pcapng")) if captures.is_dir() else []
    want = failing if key == "on" else 0
    if len(files) != want or (failing and key == "on" and out.count("- wirestack -") != failing):
        raise CheckFailed(f"{len(files)} pcapng files and {out.count('- wirestack -')} sections, expected {want}")
    return wall, session, cpu


class CheckFailed(Exception):
    pass


def fmt(values: list[float]) -> tuple[str, str, str]:
    if not values:
        return "-", "-", "-"
    return f"{statistics.median(values):.0f}", f"{min(values):.0f}", f"{max(values):.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--failing", type=int, default=0)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--markdown", metavar="FILE")
    parser.add_argument("--project", action="store_true",
                        help="time this repository's own test suite (plain and on) instead of a generated one")
    args = parser.parse_args(argv)
    if not 4 <= args.tests <= 5000 or not 1 <= args.runs <= 50 or args.failing < 0:
        print("--tests 4..5000, --runs 1..50, --failing >= 0", file=sys.stderr)
        return 2
    from wirestack.record.netns import can_capture  # the same test as the CLI's

    if not can_capture():
        print("needs root or CAP_NET_RAW (the `on` variant captures)", file=sys.stderr)
        return 2
    variants = {k: Variant(k) for k in VARIANTS if not (args.project and k == "inert")}
    with tempfile.TemporaryDirectory(prefix="wirestack-bench-") as tmp:
        folder = ROOT if args.project else Path(tmp)
        passing, failing = (0, 0) if args.project else generate(folder, args.tests, args.failing)
        check = subprocess.run([sys.executable, "-c", "import wirestack; print(wirestack.__file__)"], cwd=folder,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
        print(f"wirestack under test: {check.stdout.strip()}")
        suite = (f"this repository's tests ({ROOT / 'tests'})" if args.project
                 else f"{args.tests} tests ({passing} passing, {failing} failing)")
        print(f"suite: {suite}, {args.runs} runs per variant after 1 warm-up round, interleaved", flush=True)
        for round_ in range(args.runs + 1):
            for key, v in variants.items():
                try:
                    wall, session, cpu = run_once(key, folder, passing, failing, args.project)
                except (CheckFailed, subprocess.TimeoutExpired) as exc:
                    v.failures.append(f"round {round_}: {exc}")
                    print(f"  {key}: check failed: {exc}", file=sys.stderr)
                    continue
                if round_:  # round 0 warms up caches
                    v.wall_ms.append(wall)
                    v.session_ms.append(session)
                    v.cpu_ms.append(cpu)
            print(f"  round {round_}/{args.runs} done", file=sys.stderr, flush=True)
    def median(v: Variant, attr: str) -> float:
        values: list[float] = getattr(v, attr)
        return statistics.median(values) if values else float("nan")

    plain = variants["plain"]
    rows = ["| variant | wall median ms | wall min | wall max | ratio (wall) | session median ms | ratio (session) "
            "| CPU median ms | ratio (CPU) | failed checks |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, v in variants.items():
        med, lo, hi = fmt(v.wall_ms)
        ratios = [f"{median(v, a) / median(plain, a):.2f}" for a in ("wall_ms", "session_ms", "cpu_ms")]
        rows.append(f"| {key} | {med} | {lo} | {hi} | {ratios[0]} | {fmt(v.session_ms)[0]} | {ratios[1]} "
                    f"| {fmt(v.cpu_ms)[0]} | {ratios[2]} | {len(v.failures)} |")
    table = "\n".join(rows)
    print(table)
    on = variants["on"].wall_ms
    ratio = median(variants["on"], "wall_ms") / median(plain, "wall_ms") if on else float("inf")
    verdict = f"on/plain = {ratio:.2f} (target <= {TARGET_RATIO})"
    print(verdict)
    if args.markdown:
        Path(args.markdown).write_text(f"{table}\n\n{verdict}\n")
    failed = any(v.failures for v in variants.values())
    return 1 if failed or ratio > TARGET_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
