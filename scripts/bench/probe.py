#!/usr/bin/env python3
"""Benchmark (not a test): what the probe costs a traced program, side by side with strace, in one run.

Two workloads, each a client script run against a server process on 127.0.0.1 (an ephemeral port, a fresh
server for every run). Only the client is ever traced; the server never is. The servers rename themselves
(`prctl(PR_SET_NAME)`, comm "bench-server") so that wirestack's kernel tracepoints, which select processes by
the interpreter's comm ("python3"), do not record the server's syscalls either.

    (a) http.client: 2,000 sequential GET requests to an `http.server.ThreadingHTTPServer` (HTTP/1.0, 3-byte
        body, logging silenced), a new `HTTPConnection` for each request as a typical client does.
        Target: traced/untraced <= 1.3.
    (b) round trips: 20,000 `sendall` + `recv` round trips of a 64-byte message on one TCP connection to an echo
        server (TCP_NODELAY on both ends). Target: traced/untraced <= 2.

Variants of each workload, every one started with this interpreter (`sys.executable`):

    untraced   python CLIENT PORT N
    probe      python -m wirestack run --no-pcap --no-kernel CLIENT PORT N    (probe + packet capture)
    wirestack  python -m wirestack run --no-pcap CLIENT PORT N                (as users run it: + kernel tracepoints)
    strace     strace -f -e trace=network -o /dev/null python CLIENT PORT N   (the reference)

(`--no-kernel` and `--as-root` are passed only when this wirestack has them; `--as-root` keeps the client root
under sudo, as in the other variants.) The client times its own loop with `time.perf_counter()` (and its CPU
time with `time.process_time()`) and prints them as one JSON line; that *client-loop* time isolates what tracing
costs the program, and the targets apply to it. The loop's CPU time is shown too: on a loaded machine it varies
far less than wall time, and it is what the probe itself adds (a capture process competing for the CPUs adds
wall time only).
The *whole-command* time (start to exit: interpreter and wirestack start-up, capture set-up and drain, report
building and rendering, which is discarded) is measured too. Building the report of tens of thousands of calls
takes seconds, so after the client has reported the benchmark waits at most `--report-wait` seconds for
wirestack to exit, then stops it (SIGTERM, then SIGKILL): such a whole-command time is a lower bound, shown
as `>`.

Runs are interleaved (for each round: (a) in every variant, then (b) in every variant) after warm-up rounds, so
drifts (CPU frequency, other load) hit every variant alike. Every run is sanity-checked: the client must finish
all its requests or round trips with the expected bytes and exit 0. Before the timed rounds, one check run per
workload (with a smaller count, `--check-count`) verifies that each tracer really sees the workload:
`wirestack run --json` must hold one `connect` per request for (a), one `sendall` and at least one `recv` per
round trip for (b); strace's output must hold as many `connect` (a) / `sendto` and `recvfrom` (b) syscalls.
That run also gives the probe's calls per iteration, from which the probe's cost per call is estimated.

Usage: sudo python3 scripts/bench/probe.py [--runs N] [--warmup N] [--requests N] [--round-trips N]
                                           [--check-count N] [--report-wait S] [--no-strace] [--markdown FILE]
Exit status: 0 done, 1 a sanity check failed, 2 cannot run (not root, no strace, bad arguments).
Traffic goes to 127.0.0.1 only; every server and client process is stopped before the benchmark exits.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLIENT_TIMEOUT = 120.0  # seconds from start until the client must have reported
EXIT_TIMEOUT = 30.0  # seconds an untraced or strace'd client may take to exit after reporting
SERVER_LIMIT = 900  # seconds a server may live at most (it also exits when the benchmark goes away)
MESSAGE = 64  # bytes per round trip in (b)
MAX_REQUESTS, MAX_ROUND_TRIPS = 20_000, 200_000

HTTP_SERVER = '''\
"""Workload (a), server: HTTP/1.0 (one request per connection), body "ok\\n", logging silenced. Prints its port.
Exits when its stdin closes (the benchmark went away) or after LIMIT seconds (argv[1])."""
import ctypes
import http.server
import os
import signal
import sys
import threading

ctypes.CDLL(None).prctl(15, b"bench-server", 0, 0, 0)  # PR_SET_NAME (threads inherit it): not wirestack's comm


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


signal.alarm(int(sys.argv[1]))
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
print(server.server_address[1], flush=True)
server.serve_forever()
'''

HTTP_CLIENT = '''\
"""Workload (a), client: N sequential GET requests, a new HTTPConnection each. Prints {"elapsed", "cpu", "ok"}."""
import http.client
import json
import sys
import time

port, n = int(sys.argv[1]), int(sys.argv[2])
ok = 0
start, cpu = time.perf_counter(), time.process_time()
for _ in range(n):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", "/")
    response = conn.getresponse()
    ok += response.status == 200 and response.read() == b"ok\\n"
    conn.close()
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"elapsed": elapsed, "cpu": cpu, "ok": ok}), flush=True)
'''

ECHO_SERVER = '''\
"""Workload (b), server: echoes every connection until EOF, TCP_NODELAY. Prints its port.
Exits when its stdin closes (the benchmark went away) or after LIMIT seconds (argv[1])."""
import ctypes
import os
import signal
import socket
import sys
import threading

ctypes.CDLL(None).prctl(15, b"bench-server", 0, 0, 0)  # PR_SET_NAME: not wirestack's comm
signal.alarm(int(sys.argv[1]))
listener = socket.create_server(("127.0.0.1", 0))
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
'''

ECHO_CLIENT = f'''\
"""Workload (b), client: N round trips (sendall, recv until echoed) of {MESSAGE} bytes on one connection.
Prints {{"elapsed", "cpu", "ok"}}; the loop alone is timed, not the connect."""
import json
import socket
import sys
import time

port, n = int(sys.argv[1]), int(sys.argv[2])
message = bytes(range(256))[:{MESSAGE}]
size = len(message)
sock = socket.create_connection(("127.0.0.1", port))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
ok = 0
start, cpu = time.perf_counter(), time.process_time()
for _ in range(n):
    sock.sendall(message)
    data = sock.recv(size)
    while len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            sys.exit("client: the echo server closed the connection")
        data += more
    ok += data == message
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
sock.close()
print(json.dumps({{"elapsed": elapsed, "cpu": cpu, "ok": ok}}), flush=True)
'''


class CheckFailed(Exception):
    pass


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    unit: str
    count: int
    target: float
    server: Path
    client: Path


@dataclass
class Series:
    """The timed runs of one workload in one variant."""

    loop_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    whole_s: list[tuple[float, bool]] = field(default_factory=list)  # (seconds, censored: a lower bound)
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    prefix: tuple[str, ...]  # the command before CLIENT PORT N
    traced: bool  # wirestack: may be stopped after the client reported


@dataclass(frozen=True)
class Sample:
    loop_s: float
    cpu_s: float
    whole_s: float
    censored: bool


# -- processes ---------------------------------------------------------------------------------------------------


def _stop(proc: subprocess.Popen[bytes], gentle: bool = True) -> None:
    """End a process we started and everything in its session: SIGTERM to it, then SIGKILL to its group."""
    if proc.poll() is None and gentle:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session (start_new_session): the client, if it survived
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(5.0)
    except subprocess.TimeoutExpired:
        pass


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait (blocking, not polling) until `proc` exits or `timeout` passes; True if it exited."""
    fd = os.pidfd_open(proc.pid)
    try:
        ready, _, _ = select.select([fd], [], [], max(timeout, 0.0))
    finally:
        os.close(fd)
    if not ready:
        return False
    proc.wait()
    return True


def _read_line(proc: subprocess.Popen[bytes], deadline: float) -> bytes | None:
    """The client's report line on `proc`'s stdout, or None if it ended (or the deadline passed) without one."""
    assert proc.stdout is not None
    fd, data = proc.stdout.fileno(), b""
    while b"\n" not in data:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.perf_counter(), 0.0))
        if not ready:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return None
        data += chunk
    return data.split(b"\n", 1)[0]


def _stderr_tail(path: Path) -> str:
    try:
        lines = path.read_bytes().decode(errors="replace").strip().splitlines()
    except OSError:
        return "(no stderr)"
    return lines[-1][:200] if lines else "(no stderr)"


def start_server(workload: Workload, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen([sys.executable, str(workload.server), str(SERVER_LIMIT)], cwd=workdir,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        line = _read_line(proc, time.perf_counter() + 10.0)
        if line is None or not line.strip().isdigit():
            raise CheckFailed(f"the {workload.key} server did not start (it printed {line!r})")
        return proc, int(line)
    except BaseException:
        stop_server(proc)
        raise


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        try:
            proc.stdin.close()  # the server exits at EOF on stdin
        except OSError:
            pass
    _stop(proc, gentle=False)
    if proc.stdout is not None:
        proc.stdout.close()


def run_client(cmd: Sequence[str], workload: Workload, count: int, workdir: Path, traced: bool,
               report_wait: float) -> Sample:
    """One run of `cmd` against a fresh server. A traced run is stopped `report_wait` s after the client reported."""
    server, port = start_server(workload, workdir)
    errfile = workdir / "stderr.txt"
    try:
        with open(errfile, "wb") as err:
            start = time.perf_counter()
            proc = subprocess.Popen([*cmd, str(workload.client), str(port), str(count)], cwd=workdir,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    start_new_session=True)
        try:
            line = _read_line(proc, start + CLIENT_TIMEOUT)
            if line is None:
                if time.perf_counter() >= start + CLIENT_TIMEOUT:
                    raise CheckFailed(f"the client did not report within {CLIENT_TIMEOUT:.0f} s")
                status = proc.returncode if _wait_exit(proc, 10.0) else "none yet"  # stdout closed: it is ending
                raise CheckFailed(f"the client reported nothing, exit status {status}: {_stderr_tail(errfile)}")
            exited = _wait_exit(proc, report_wait if traced else EXIT_TIMEOUT)
            whole = time.perf_counter() - start
            if not exited and not traced:
                raise CheckFailed(f"the client did not exit within {EXIT_TIMEOUT:.0f} s of reporting")
            if exited and proc.returncode != 0:
                raise CheckFailed(f"exit status {proc.returncode}: {_stderr_tail(errfile)}")
        finally:
            _stop(proc)
            if proc.stdout is not None:
                proc.stdout.close()
    finally:
        stop_server(server)
        errfile.unlink(missing_ok=True)
    try:
        report: dict[str, Any] = json.loads(line)
        elapsed, cpu, ok = float(report["elapsed"]), float(report["cpu"]), int(report["ok"])
    except (ValueError, KeyError, TypeError):
        raise CheckFailed(f"the client printed {line[:100]!r}, not its report") from None
    if ok != count:
        raise CheckFailed(f"only {ok} of {count} {workload.unit} got the expected answer")
    return Sample(elapsed, cpu, whole, not exited)


# -- the check runs ----------------------------------------------------------------------------------------------


def check_wirestack(workload: Workload, variant: Variant, count: int, workdir: Path) -> float:
    """A traced run with --json: the probe must have recorded the workload's calls. Returns calls per iteration."""
    report_file = workdir / f"check-{workload.key}.json"
    cmd = [*variant.prefix, "--json", str(report_file), "--force"]  # wirestack's options precede the script
    try:
        run_client(cmd, workload, count, workdir, traced=True, report_wait=CLIENT_TIMEOUT)
        try:
            calls = json.loads(report_file.read_text())["calls"]
        except (OSError, ValueError, KeyError) as exc:
            raise CheckFailed(f"wirestack wrote no readable JSON report: {exc}") from None
    finally:
        report_file.unlink(missing_ok=True)
    ops: dict[str, int] = {}
    for call in calls:
        ops[call["op"]] = ops.get(call["op"], 0) + 1
    if workload.key == "a":
        wanted = {"connect": (count, count), "sendall": (count, None), "recv_into": (count, None)}
    else:
        wanted = {"connect": (1, 1), "sendall": (count, count), "recv": (count, None)}
    for op, (low, high) in wanted.items():
        got = ops.get(op, 0)
        if got < low or (high is not None and got > high):
            expected = f"{low}" if low == high else f">= {low}"
            raise CheckFailed(f"the probe recorded {got} {op} calls for {count} {workload.unit}, expected {expected}")
    return len(calls) / count


def check_strace(workload: Workload, strace: str, count: int, workdir: Path) -> None:
    out = workdir / f"strace-{workload.key}.txt"
    try:
        run_client([strace, "-f", "-e", "trace=network", "-o", str(out), sys.executable], workload, count, workdir,
                   traced=False, report_wait=0.0)
        text = out.read_text(errors="replace")
    finally:
        out.unlink(missing_ok=True)
    names = ["connect"] if workload.key == "a" else ["sendto", "recvfrom"]
    for name in names:
        got = len(re.findall(rf"^(?:\d+ +)?{name}\(", text, re.MULTILINE))
        if got < count:
            raise CheckFailed(f"strace logged {got} {name} syscalls for {count} {workload.unit}, expected >= {count}")


# -- statistics and output ---------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def censored_median(values: Sequence[tuple[float, bool]]) -> tuple[float, bool]:
    """Median of values some of which are lower bounds: (median, True if it is only a lower bound)."""
    if not values:
        return math.nan, False
    med = statistics.median(v for v, _ in values)
    exact = all(v > med for v, cut in values if cut) and not any(cut and v == med for v, cut in values)
    return med, not exact


def _fmt(value: float, digits: int = 3, bound: bool = False) -> str:
    return "n/a" if math.isnan(value) else (">" if bound else "") + f"{value:.{digits}f}"


def verdict(value: float, limit: float) -> str:
    return "n/a" if math.isnan(value) else ("met" if value <= limit else "NOT met")


def summary(workloads: list[Workload], variants: list[Variant], series: dict[tuple[str, str], Series],
            runs: int, per_iteration: dict[str, float]) -> tuple[list[list[str]], list[str]]:
    rows = [["workload", "variant", "runs ok", "client loop median s", "p90 s", "min s", "ratio", "loop CPU s",
             "ratio", "whole command median s", "ratio"]]
    lines: list[str] = []
    for w in workloads:
        base = series[(w.key, "untraced")]
        base_loop = statistics.median(base.loop_s) if base.loop_s else math.nan
        base_cpu = statistics.median(base.cpu_s) if base.cpu_s else math.nan
        base_whole, _ = censored_median(base.whole_s)
        for v in variants:
            s = series[(w.key, v.key)]
            loop = statistics.median(s.loop_s) if s.loop_s else math.nan
            cpu = statistics.median(s.cpu_s) if s.cpu_s else math.nan
            whole, bound = censored_median(s.whole_s)
            rows.append([f"({w.key}) {w.title}", v.label, f"{len(s.loop_s)}/{runs}", _fmt(loop),
                         _fmt(percentile(s.loop_s, 0.9) if s.loop_s else math.nan),
                         _fmt(min(s.loop_s) if s.loop_s else math.nan), _fmt(loop / base_loop, 2), _fmt(cpu),
                         _fmt(cpu / base_cpu, 2), _fmt(whole, 2, bound), _fmt(whole / base_whole, 2, bound)])
            if not v.traced:
                continue
            ratio = loop / base_loop
            whole_ratio = whole / base_whole
            lines.append(f"({w.key}) {v.label}: client-loop ratio {_fmt(ratio, 2)} (target <= {w.target:g}: "
                         f"{verdict(ratio, w.target)}); whole-command ratio {_fmt(whole_ratio, 2, bound)}")
            calls = per_iteration.get(w.key)
            if calls and not math.isnan(ratio):
                cost, cpu_cost = ((x - b) / (w.count * calls) * 1e6 for x, b in ((loop, base_loop), (cpu, base_cpu)))
                lines.append(f"    {calls:.1f} probe calls per {w.unit[:-1]}: per recorded call {cost:.1f} µs more "
                             f"client-loop time, {cpu_cost:.1f} µs more client CPU time")
        strace = series.get((w.key, "strace"))
        if strace is not None and strace.loop_s:
            ratio = statistics.median(strace.loop_s) / base_loop
            lines.append(f"({w.key}) strace reference: client-loop ratio {_fmt(ratio, 2)}")
    return rows, lines


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        out.append("  ".join(cells))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown(rows: list[list[str]], lines: list[str], header: list[str]) -> str:
    out = [f"# {header[0]}", "", *header[1:], "", "| " + " | ".join(rows[0]) + " |",
           "|" + "|".join(["---", "---"] + ["---:"] * (len(rows[0]) - 2)) + "|"]
    out += ["| " + " | ".join(cell.replace(">", "&gt;") for cell in row) + " |" for row in rows[1:]]
    out += [""] + [("  - " if line.startswith(" ") else "- ") + line.strip() for line in lines]
    return "\n".join(out) + "\n"


# -- main --------------------------------------------------------------------------------------------------------


def _bounded(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}, not {text!r}")
        return int(text)

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be a number of seconds from 0 to 3600, not {text!r}")
    return value


def _wirestack_options() -> set[str]:
    """The options of this wirestack's `run` command (older versions lack some)."""
    done = subprocess.run([sys.executable, "-m", "wirestack", "run", "--help"], capture_output=True, text=True,
                          timeout=30)
    if done.returncode != 0:
        return set()
    return set(re.findall(r"(?<![\w-])(--[a-z][\w-]*)", done.stdout))


def _source_state() -> str:
    """Which wirestack was measured: its commit, and its files changed since (the tree may be mid-work)."""
    try:
        import wirestack

        folder = Path(wirestack.__file__).resolve().parent
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--", "."], capture_output=True,
                               text=True, timeout=10)
    except (ImportError, OSError, subprocess.TimeoutExpired):
        return "wirestack: version unknown"
    if head.returncode != 0:
        return f"wirestack from {folder} (not a git checkout)"
    changed = sorted(Path(line[3:]).name for line in dirty.stdout.splitlines() if line[3:].endswith(".py"))
    return (f"wirestack from {folder} at {head.stdout.strip()}"
            + (f", uncommitted changes in {', '.join(changed)}" if changed else ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="What the probe costs a traced program, against strace.")
    parser.add_argument("--runs", type=_bounded(1, 50), default=4, help="timed runs per variant (default 4)")
    parser.add_argument("--warmup", type=_bounded(0, 10), default=1, help="warm-up rounds (default 1)")
    parser.add_argument("--requests", type=_bounded(1, MAX_REQUESTS), default=2000,
                        help="HTTP requests in (a) (default 2000)")
    parser.add_argument("--round-trips", type=_bounded(1, MAX_ROUND_TRIPS), default=20_000,
                        help="round trips in (b) (default 20000)")
    parser.add_argument("--check-count", type=_bounded(0, MAX_ROUND_TRIPS), default=200,
                        help="requests / round trips of the check runs (default 200; 0: no check runs)")
    parser.add_argument("--report-wait", type=_seconds, default=8.0, metavar="SECONDS",
                        help="how long a traced run may take after the client reported (default 8)")
    parser.add_argument("--no-strace", action="store_true", help="leave out the strace reference")
    parser.add_argument("--markdown", metavar="FILE", type=Path, help="also write the table as markdown")
    args = parser.parse_args(argv)

    if os.geteuid() != 0:
        print("probe.py: wirestack's capture needs root: run it with sudo", file=sys.stderr)
        return 2
    strace = shutil.which("strace")
    if strace is None and not args.no_strace:
        print("probe.py: strace is not installed (apt-get install strace), or pass --no-strace", file=sys.stderr)
        return 2
    options = _wirestack_options()
    if "--no-pcap" not in options:
        print(f"probe.py: `{sys.executable} -m wirestack run` is not available", file=sys.stderr)
        return 2
    run = [sys.executable, "-m", "wirestack", "run", "--no-pcap", "--no-color"]
    if "--as-root" in options:
        run.append("--as-root")  # under sudo: the client stays root, as in the other variants
    variants = [Variant("untraced", "untraced", (sys.executable,), False)]
    if "--no-kernel" in options:
        variants.append(Variant("probe", "wirestack run --no-kernel", (*run, "--no-kernel"), True))
    variants.append(Variant("wirestack", "wirestack run", tuple(run), True))
    if not args.no_strace:
        assert strace is not None
        variants.append(Variant("strace", "strace -f -e trace=network",
                                (strace, "-f", "-e", "trace=network", "-o", "/dev/null", sys.executable), False))

    load = os.getloadavg()[0]
    source = _source_state()
    series = {}
    per_iteration: dict[str, float] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="wirestack-bench-probe-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # readable by a client that wirestack runs as the invoking user
        for name, text in (("http_server.py", HTTP_SERVER), ("http_client.py", HTTP_CLIENT),
                           ("echo_server.py", ECHO_SERVER), ("echo_client.py", ECHO_CLIENT)):
            (workdir / name).write_text(text)
            (workdir / name).chmod(0o644)
        workloads = [
            Workload("a", "http.client", "requests", args.requests, 1.3, workdir / "http_server.py",
                     workdir / "http_client.py"),
            Workload("b", "round trips", "round trips", args.round_trips, 2.0, workdir / "echo_server.py",
                     workdir / "echo_client.py"),
        ]
        series = {(w.key, v.key): Series() for w in workloads for v in variants}
        progress = sys.stderr.isatty()
        began = time.perf_counter()

        if args.check_count:
            checker = next(v for v in variants if v.traced)  # the cheaper traced variant comes first
            for w in workloads:
                count = min(args.check_count, w.count)
                try:
                    per_iteration[w.key] = check_wirestack(w, checker, count, workdir)
                    if strace is not None and not args.no_strace:
                        check_strace(w, strace, count, workdir)
                except CheckFailed as exc:
                    print(f"probe.py: check run of ({w.key}) failed: {exc}", file=sys.stderr)
                    failed = True

        total = args.warmup + args.runs
        for rnd in range(total):
            warm = rnd < args.warmup
            tag = f"warm-up {rnd + 1}" if warm else f"run {rnd - args.warmup + 1}"
            if progress:
                print(f"\r{tag}/{args.warmup if warm else args.runs} ...", end="", file=sys.stderr, flush=True)
            for w in workloads:
                for v in variants:
                    s = series[(w.key, v.key)]
                    try:
                        sample = run_client(v.prefix, w, w.count, workdir, v.traced, args.report_wait)
                    except CheckFailed as exc:
                        s.failures.append(f"{tag}: {exc}")
                        continue
                    if not warm:
                        s.loop_s.append(sample.loop_s)
                        s.cpu_s.append(sample.cpu_s)
                        s.whole_s.append((sample.whole_s, sample.censored))
        if progress:
            print(f"\r{' ' * 30}\r", end="", file=sys.stderr, flush=True)
        wall = time.perf_counter() - began

    rows, lines = summary(workloads, variants, series, args.runs, per_iteration)
    header = [
        f"probe cost benchmark: {args.runs} interleaved runs per variant after {args.warmup} warm-up round(s)",
        f"python {sys.version.split()[0]} ({sys.executable}), {os.cpu_count()} CPUs, load average {load:.2f} at "
        f"start, benchmark wall time {wall:.0f} s",
        source,
        f"(a) {args.requests} sequential http.client GET requests, a new connection each, to a local "
        "ThreadingHTTPServer",
        f"(b) {args.round_trips} round trips of {MESSAGE} bytes (sendall + recv) on one loopback TCP connection",
        "client loop: timed by the client itself (wall, and its CPU time: less sensitive to other load); whole "
        f"command: start to exit; '>' = stopped {args.report_wait:g} s after the client reported (a lower bound)",
    ]
    print("\n".join(header) + "\n")
    print(text_table(rows))
    print()
    print("\n".join(lines))
    if args.markdown:
        args.markdown.write_text(markdown(rows, lines, header))
        print(f"\nwrote {args.markdown}")

    failures = [(w, v, f) for w in workloads for v in variants for f in series[(w.key, v.key)].failures]
    if failures:
        print(f"\nSANITY CHECK FAILED ({len(failures)} run(s)):", file=sys.stderr)
        for w, v, message in failures:
            print(f"  ({w.key}) {v.label}: {message}", file=sys.stderr)
    return 1 if failed or failures else 0


if __name__ == "__main__":
    sys.exit(main())
