#!/usr/bin/env python3
"""Benchmark (not a test): how the whole `wirestack run` grows with the size of the program (issue 17).

Each workload (scripts/bench/workloads/NAME.py SIZE: a small program that starts any server it needs itself, in
an untraced subprocess, on 127.0.0.1) runs at three sizes (`--sizes full`: base, ~3.16×base, 10×base; `small`:
base/10, base/3.16, base), each size in these variants, interleaved, `--repeat` times (default 3 at sizes up to
base, 1 above), the median taken:

    untraced    .venv/bin/python NAME.py SIZE
    tcpdump     the same while `tcpdump -i lo -U -w F.pcap` runs beside it (marker datagrams before and after
                prove it captures; -U so that the file shows it)
    wirestack   .venv/bin/wirestack run --json F.json -w F.pcapng NAME.py SIZE      (what a user waits for)
    read        .venv/bin/wirestack read F.pcapng --json -       (stdout and stderr discarded)
    tshark      tshark -r F.pcapng -T fields -e frame.number -e frame.time_epoch -e ip.src -e tcp.flags

Times are wall seconds from spawn to exit. Peak memory is `ru_maxrss` from `os.wait4` on the wirestack
process: the peak RSS of the *largest single process* of its tree (wirestack itself, its capture worker, the
traced program, a tshark it runs for the application layer; those it waited for), not their sum. It includes
what a child inherits at fork: at least this benchmark's own peak (shown in the header; kept small by counting
the JSON in a subprocess). The verdict lines also give the wirestack process's own peak (VmHWM, polled every
50 ms). Memory per packet is (peak − the peak of a one-connect baseline run) / packets, at the largest size.

Targets (issue 17), per workload; the verdict is FAIL if any is missed (exit status 1):
    wirestack s <= 2 × untraced + 10 µs × packets + 20 µs × calls, at every size (packets, calls: the JSON's)
    growth exponent (least-squares slope of log t over log size) of wirestack's time <= 1.15, and of its
        peak memory beyond the baseline (where it is at least 4 MB at every size) <= 1.15
    read s <= 2 × tshark s at every size; every run finished (within --timeout), exit 0, all work done
Reported, not part of the exit status: memory per packet <= 1.5 KB beyond the raw frame bytes.

Which wirestack is measured (`--tree`): by default a copy of the working tree taken at the start (others may be
editing it), or a copy of the commit HEAD, or the live tree; the commit, the changed files and a hash of the copy
go into the results. A run that exceeds --timeout (default 600 s) is killed with its whole process group and
counts as a failure; wirestack is then not run at the larger sizes of that workload.

Usage: .venv/bin/python scripts/bench/scale.py [--sizes small|full] [--only NAME,...] [--repeat N] [--timeout S]
                                              [--tree worktree|head|live]
Writes scripts/bench/results/scale-DATE-SIZES.md and .json. Needs root (capture), tcpdump and tshark.
Exit status: 0 every target met, 1 a target missed or a run failed, 2 cannot run.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORKLOADS_DIR = HERE / "workloads"
RESULTS = HERE / "results"
PYTHON = str(ROOT / ".venv" / "bin" / "python")
WIRESTACK = str(ROOT / ".venv" / "bin" / "wirestack")
TSHARK_FIELDS = ["-T", "fields", "-e", "frame.number", "-e", "frame.time_epoch", "-e", "ip.src", "-e", "tcp.flags"]
EXPONENT_MAX = 1.15
READ_RATIO_MAX = 2.0
MEMORY_KB_MAX = 1.5  # per packet, beyond its raw bytes
MEMORY_FLOOR_KIB = 4096  # below this much beyond the baseline, a memory exponent is noise
LIVE: set[int] = set()  # process groups running now: killed on the way out, whatever happens


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    base: int
    packets_each: int | None  # packets one unit of work makes, where that is fixed


WORKLOADS = [
    Workload("refused_connects", "refused connects", 10_000, 2),
    Workload("udp_closed_port", "UDP to a closed port (ICMP back)", 10_000, 2),
    Workload("udp_sink", "UDP to a bound sink", 10_000, 1),
    Workload("http_requests", "sequential http.client requests", 200, None),
    Workload("round_trips", "round trips on one connection", 20_000, None),
    Workload("threads_connects", "threads, one failing connect each", 2_000, 2),
    Workload("asyncio_connects", "asyncio concurrent connects", 3_000, 2),
]


@dataclass
class Run:
    """One command: wall seconds, peak RSS (KiB: ru_maxrss of its tree; own_kib: the command's own process,
    its VmHWM polled), exit status (None: killed at the timeout), CPU seconds (user + system, of its tree: less
    disturbed than wall time by other load on the machine)."""

    wall: float
    rss_kib: int
    status: int | None
    own_kib: int = 0
    cpu: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def timed_out(self) -> bool:
        return self.status is None


@dataclass
class Cell:
    """Every run of one workload at one size."""

    workload: str
    size: int
    untraced: list[Run] = field(default_factory=list)
    tcpdump: list[Run] = field(default_factory=list)
    wirestack: list[Run] = field(default_factory=list)
    read: list[Run] = field(default_factory=list)
    tshark: list[Run] = field(default_factory=list)
    packets: list[int] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    frame_bytes: list[float] = field(default_factory=list)  # mean raw frame size of each wirestack run
    kernel_events: list[int] = field(default_factory=list)
    json_notes: list[str] = field(default_factory=list)  # the JSON's "notes" (first few of each run)
    tcpdump_counts: list[tuple[int, int]] = field(default_factory=list)  # (captured, dropped by kernel)
    problems: list[str] = field(default_factory=list)
    load: float = field(default_factory=lambda: os.getloadavg()[0])  # 1-minute load average at the start
    skipped: bool = False  # wirestack not run: a smaller size timed out


def log(msg: str) -> None:
    print(f"[scale] {msg}", file=sys.stderr, flush=True)


def _group_members(pgid: int) -> list[str]:
    """Commands of the live (not zombie) processes in a process group."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if rest[0] != "Z" and int(rest[2]) == pgid:
            found.append(comm)
    return found


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run(cmd: list[str], timeout: float, cwd: Path, stdout: Path | None = None, stderr: Path | None = None,
        env: dict[str, str] | None = None) -> Run:
    """Run cmd in a session of its own; kill the whole group at the timeout. Output to files or discarded."""
    expired, ended = threading.Event(), threading.Event()
    own = [0]
    with ExitStack() as files:
        out, err = (files.enter_context(open(p, "wb")) if p else subprocess.DEVNULL for p in (stdout, stderr))
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True, env=env)
    LIVE.add(proc.pid)

    def expire() -> None:
        expired.set()
        _kill_group(proc.pid)

    def poll() -> None:  # VmHWM only grows: the last reading before exit is the peak, give or take 50 ms
        while not ended.wait(0.05):
            own[0] = max(own[0], _hwm_kib(proc.pid))

    timer = threading.Timer(timeout, expire)
    timer.start()
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
        ended.set()
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    poller.join()
    result = Run(wall, usage.ru_maxrss, None if expired.is_set() else proc.returncode, own[0],
                 round(usage.ru_utime + usage.ru_stime, 3))
    if not expired.is_set() and (left := _group_members(proc.pid)):
        result.notes.append(f"left processes behind: {', '.join(left)}")
    _kill_group(proc.pid)
    LIVE.discard(proc.pid)
    return result


def _marker(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"wirestack scale.py marker", ("127.0.0.1", port))


def _until_file_grows(path: Path, beyond: int, port: int, what: str) -> None:
    """Send marker datagrams until tcpdump has written past `beyond` bytes (at most 10 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        _marker(port)
        time.sleep(0.1)  # tcpdump hands packets over in blocks, at the latest after ~1 s
        if path.exists() and path.stat().st_size > beyond:
            return
    raise RuntimeError(f"tcpdump wrote nothing {what} within 10 s")


@contextmanager
def tcpdump_beside(pcap: Path, errors: Path, counts: list[tuple[int, int]]) -> Iterator[None]:
    """tcpdump capturing on lo for the duration of the block: proven live before, drained and stopped after,
    killed whatever happens. Appends (captured, dropped by kernel) to counts."""
    port = _closed_udp_port()
    with open(errors, "wb") as err:
        proc = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-w", str(pcap)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    LIVE.add(proc.pid)
    try:
        _until_file_grows(pcap, 24, port, "before the program")  # 24: the pcap file header
        yield
        _until_file_grows(pcap, pcap.stat().st_size, port, "after the program")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            _kill_group(proc.pid)
            proc.wait()
        LIVE.discard(proc.pid)
    said = errors.read_text(errors="replace").splitlines()
    number = {key: int(line.split()[0]) for line in said for key in ("captured", "dropped by kernel")
              if line.endswith(key) and line.split()[0].isdigit()}
    counts.append((number.get("captured", -1), number.get("dropped by kernel", -1)))


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


COUNT = """\
import json, sys
d = json.load(open(sys.argv[1]))
frames = [p["length"] for p in d["packets"]]
print(json.dumps({"packets": len(d["packets"]), "calls": len(d["calls"]), "kernel": len(d["kernel"]),
                  "frame_bytes": sum(frames) / len(frames) if frames else 0.0,
                  "dropped": d["capture"]["dropped"], "notes": d["notes"][:5], "kernel_off": d.get("kernel_off")}))
"""


def count(report: Path, cwd: Path) -> dict[str, Any]:
    """Counts from a wirestack JSON, parsed in a subprocess so that this process stays small (its peak RSS is
    inherited by every child it starts, see the docstring)."""
    done = subprocess.run([PYTHON, "-c", COUNT, str(report)], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"cannot read {report.name}: {done.stderr.strip().splitlines()[-1:]}")
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def _check_program(run_: Run, stdout: Path, size: int, what: str) -> list[str]:
    """Problems with one run of a workload: killed, failed, or not all of its work done."""
    if run_.timed_out:
        return [f"{what}: killed at the timeout"]
    line = next((x for x in stdout.read_text(errors="replace").splitlines() if x.startswith('{"workload"')), None)
    problems = [f"{what}: exit {run_.status}"] if run_.status else []
    if line is None:
        problems.append(f"{what}: the workload printed no result line")
    else:
        said = json.loads(line)
        if said["done"] != size or said["ok"] != size:
            problems.append(f"{what}: {said['done']:,} of {size:,} done, {said['ok']:,} as expected")
    return problems


def _tail(path: Path, lines: int = 6) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def measure(w: Workload, size: int, repeat: int, timeout: float, tmp: Path, skip_wirestack: bool,
            env: dict[str, str] | None) -> Cell:
    """Every variant of one workload at one size, interleaved, `repeat` times (env: wirestack's)."""
    cell = Cell(w.name, size, skipped=skip_wirestack)
    prog = [str(WORKLOADS_DIR / f"{w.name}.py"), str(size), str(int(timeout / 2))]
    out, err = tmp / "out.txt", tmp / "err.txt"
    for i in range(repeat):
        r = run([PYTHON, *prog], timeout, tmp, out, err, user_env())
        cell.untraced.append(r)
        cell.problems += _check_program(r, out, size, "untraced")
        line = f"{w.name} n={size:,} run {i + 1}/{repeat}: untraced {r.wall:.2f} s"
        pcap = tmp / "beside.pcap"
        try:
            with tcpdump_beside(pcap, tmp / "tcpdump.txt", cell.tcpdump_counts):
                r = run([PYTHON, *prog], timeout, tmp, out, err, user_env())
            cell.tcpdump.append(r)
            cell.problems += _check_program(r, out, size, "beside tcpdump")
            line += f", tcpdump beside {r.wall:.2f} s"
        except RuntimeError as e:
            cell.problems.append(str(e))
        finally:
            pcap.unlink(missing_ok=True)
        log(line + (", wirestack not run (a smaller size timed out)" if skip_wirestack else
                    traced(cell, w, prog, timeout, tmp, env)))
    return cell


def traced(cell: Cell, w: Workload, prog: list[str], timeout: float, tmp: Path, env: dict[str, str] | None) -> str:
    """One `wirestack run`, then `wirestack read` and tshark on its pcapng; adds to cell, returns a log line."""
    out, err, report, pcapng = tmp / "out.txt", tmp / "err.txt", tmp / "F.json", tmp / "F.pcapng"
    for f in (report, pcapng):
        f.unlink(missing_ok=True)
    r = run([WIRESTACK, "run", "--json", str(report), "-w", str(pcapng), *prog], timeout, tmp, out, err, env)
    cell.wirestack.append(r)
    if "Traceback (most recent call last)" in err.read_text(errors="replace"):
        cell.problems.append(f"wirestack run printed a traceback: {_tail(err)}")
    cell.problems += _check_program(r, out, cell.size, "wirestack run")
    cell.problems += [f"wirestack run: {n}" for n in r.notes]
    line = f", wirestack {'>timeout' if r.timed_out else f'{r.wall:.2f} s'}"
    if r.timed_out:
        return line
    if not report.exists():
        cell.problems.append(f"wirestack run wrote no JSON (exit {r.status}): {_tail(err)}")
    else:
        try:
            c = count(report, tmp)
        except RuntimeError as e:
            cell.problems.append(str(e))
        else:
            cell.packets.append(c["packets"])
            cell.calls.append(c["calls"])
            cell.frame_bytes.append(c["frame_bytes"])
            cell.kernel_events.append(c["kernel"])
            said = c["notes"] + ([f"kernel_off: {c['kernel_off']}"] if c["kernel_off"] else [])
            if not c["kernel"] and not c["kernel_off"]:
                said.append("no kernel events, and no kernel_off saying why")
            cell.json_notes += [n for n in said if n not in cell.json_notes]
            line += f" ({c['packets']:,} packets, {c['calls']:,} calls, {c['kernel']:,} kernel events)"
            if w.packets_each and c["packets"] != w.packets_each * cell.size:
                cell.problems.append(f"wirestack run: {c['packets']:,} packets, expected "
                                     f"{w.packets_each * cell.size:,}")
            if c["dropped"]:
                cell.problems.append(f"wirestack run: {c['dropped']:,} packets dropped by the kernel")
        report.unlink()
    if not pcapng.exists():
        cell.problems.append("wirestack run wrote no pcapng")
        return line
    rd = run([WIRESTACK, "read", str(pcapng), "--json", "-"], timeout, tmp, None, err, env)
    cell.read.append(rd)
    if rd.timed_out or rd.status:
        cell.problems.append(f"wirestack read: {'killed at the timeout' if rd.timed_out else f'exit {rd.status}'}: "
                             f"{_tail(err)}")
    ts = run(["tshark", "-r", str(pcapng), *TSHARK_FIELDS], timeout, tmp, None, err)
    cell.tshark.append(ts)
    if ts.timed_out or ts.status:
        cell.problems.append(f"tshark: {'killed at the timeout' if ts.timed_out else f'exit {ts.status}'}: "
                             f"{_tail(err)}")
    pcapng.unlink()
    return line + f", read {_secs([rd], timeout)}, tshark {_secs([ts], timeout)}"


def _median(runs: list[Run]) -> float | None:
    """Median wall time of the runs that succeeded; None when any was killed, or none succeeded."""
    ok = [r.wall for r in runs if r.status == 0]
    return None if not ok or any(r.timed_out for r in runs) else statistics.median(ok)


def _secs(runs: list[Run], timeout: float) -> str:
    t = _median(runs)
    if t is not None:
        return f"{t:.2f}"
    return "—" if not runs else f">{timeout:.0f}" if any(r.timed_out for r in runs) else "error"


def target_s(cell: Cell) -> float | None:
    untraced = _median(cell.untraced)
    if untraced is None or not cell.packets:
        return None
    return 2 * untraced + 10e-6 * statistics.median(cell.packets) + 20e-6 * statistics.median(cell.calls)


def exponent(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of log y over log x."""
    pts = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx, my = statistics.fmean(p[0] for p in pts), statistics.fmean(p[1] for p in pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None


def _peak_kib(cell: Cell) -> float | None:
    ok = [r.rss_kib for r in cell.wirestack if r.status == 0]
    return statistics.median(ok) if ok else None


def kb_per_packet(cell: Cell, baseline_kib: float) -> float | None:
    peak = _peak_kib(cell)
    if peak is None or not cell.packets or not statistics.median(cell.packets):
        return None
    return (peak - baseline_kib) / statistics.median(cell.packets)


def table(cells: list[Cell], baseline_kib: float, timeout: float) -> list[str]:
    titles = {w.name: w.title for w in WORKLOADS}
    rows = ["| workload | size | untraced s | tcpdump beside s | wirestack s | × untraced | target s | packets | "
            "calls | peak MB | KB/packet | read s | tshark s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            "---:|---:|---:|"]
    for c in cells:
        untraced, ws, target = _median(c.untraced), _median(c.wirestack), target_s(c)
        read, tshark = _median(c.read), _median(c.tshark)
        over = " ✗" if ws is not None and target is not None and ws > target else ""
        slow_read = " ✗" if read is not None and tshark and read > READ_RATIO_MAX * tshark else ""
        peak, per = _peak_kib(c), kb_per_packet(c, baseline_kib)
        rows.append(" | ".join([
            f"| {titles[c.workload]}", f"{c.size:,}", _secs(c.untraced, timeout), _secs(c.tcpdump, timeout),
            ("not run" if c.skipped else _secs(c.wirestack, timeout)) + over,
            f"{ws / untraced:.0f}" if ws is not None and untraced else "—",
            f"{target:.2f}" if target is not None else "—",
            f"{statistics.median(c.packets):,.0f}" if c.packets else "—",
            f"{statistics.median(c.calls):,.0f}" if c.calls else "—",
            f"{peak / 1024:.0f}" if peak is not None else "—", f"{per:.1f}" if per is not None else "—",
            _secs(c.read, timeout) + slow_read, _secs(c.tshark, timeout) + " |"]))
    return rows


def verdicts(cells: list[Cell], baseline_kib: float, timeout: float) -> tuple[list[str], bool, dict[str, Any]]:
    """One line per workload, whether any failed, and the numbers behind them."""
    lines, failed, numbers = [], False, {}
    for w in WORKLOADS:
        mine = [c for c in cells if c.workload == w.name]
        if not mine:
            continue
        why: list[str] = []
        # a run killed at the timeout counts as the timeout: the exponent is then a lower bound
        ws_points = [(float(c.size), timeout if any(r.timed_out for r in c.wirestack) else _median(c.wirestack))
                     for c in mine]
        ws_points_known = [(x, y) for x, y in ws_points if y is not None]
        censored = any(r.timed_out for c in mine for r in c.wirestack)
        t_exp = exponent(ws_points_known)
        u_exp = exponent([(c.size, u) for c in mine if (u := _median(c.untraced))])
        beyond = [(c.size, p - baseline_kib) for c in mine if (p := _peak_kib(c)) is not None]
        m_exp = exponent(beyond) if len(beyond) == len(mine) and all(
            b >= MEMORY_FLOOR_KIB for _, b in beyond) else None
        if t_exp is not None and t_exp > EXPONENT_MAX:
            why.append(f"time exponent {t_exp:.2f}{' (a lower bound)' if censored else ''} > {EXPONENT_MAX}")
        if m_exp is not None and m_exp > EXPONENT_MAX:
            why.append(f"memory exponent {m_exp:.2f} > {EXPONENT_MAX}")
        over = [c for c in mine if (goal := target_s(c)) is not None and (_median(c.wirestack) or 0) > goal]
        if over:
            worst = max(over, key=lambda c: (_median(c.wirestack) or 0) / (target_s(c) or 1))
            why.append(f"over the target at {', '.join(f'{c.size:,}' for c in over)} (worst "
                       f"{_median(worst.wirestack):.2f} s vs {target_s(worst):.2f} s at {worst.size:,})")
        ratios = [(c.size, rd / ts) for c in mine if (rd := _median(c.read)) is not None and (ts := _median(c.tshark))]
        slow = [f"{s:,} ({x:.1f}×)" for s, x in ratios if x > READ_RATIO_MAX]
        if slow:
            why.append(f"read > {READ_RATIO_MAX:.0f}× tshark at {', '.join(slow)}")
        killed = [c.size for c in mine if any(r.timed_out for r in c.wirestack + c.read)]
        if killed or any(c.skipped for c in mine):
            why.append(f"killed at the {timeout:.0f} s timeout at {', '.join(f'{s:,}' for s in killed)}"
                       + ("; larger sizes not run" if any(c.skipped for c in mine) else ""))
        problems = sorted({p for c in mine for p in c.problems})
        if problems:
            why.append(f"{len(problems)} problem(s), listed below")
        last = max((c for c in mine if c.packets), key=lambda c: c.size, default=None)
        per = kb_per_packet(last, baseline_kib) if last else None
        raw = statistics.fmean(last.frame_bytes) if last and last.frame_bytes else 0.0
        mem = (f"{per:.2f} KB/packet beyond the baseline at {last.size:,} (raw frames {raw:.0f} B on average; "
               f"target ≤ {MEMORY_KB_MAX} KB + raw: {'met' if per <= MEMORY_KB_MAX + raw / 1024 else 'NOT met'})"
               if last and per is not None else "memory per packet: —")
        if last and (own := [r.own_kib for r in last.wirestack if r.status == 0]):
            mem += (f"; peak of the wirestack process itself {statistics.median(own) / 1024:.0f} MB of the "
                    f"tree's {(_peak_kib(last) or 0) / 1024:.0f} MB")
        failed |= bool(why)
        expo = (f"time exponent {'≥ ' * censored}{t_exp:.2f}" if t_exp is not None else "time exponent —") + \
            f" (untraced {u_exp:.2f})" * (u_exp is not None) + \
            (f", memory exponent {m_exp:.2f}" if m_exp is not None else ", memory exponent —")
        lines.append(f"- **{w.name}**: {expo}; {mem}; "
                     f"{'**FAIL**: ' + '; '.join(why) if why else 'PASS'}")
        lines += [f"    - {p}" for p in problems]
        lines += _notes(mine)
        numbers[w.name] = {"time_exponent": t_exp, "time_exponent_censored": censored, "untraced_exponent": u_exp,
                           "memory_exponent": m_exp, "kb_per_packet": per, "frame_bytes": raw,
                           "read_over_tshark": dict(ratios), "fail": why}
    return lines, failed, numbers


def _notes(cells: list[Cell]) -> list[str]:
    """The JSON's notes, one line each, alike ones (differing only in numbers) once with the sizes they came at."""
    seen: dict[str, tuple[str, list[int]]] = {}
    for c in cells:
        for note in c.json_notes:
            flat = " ".join(note.split())
            sizes = seen.setdefault(re.sub(r"\d[\d,]*", "#", flat), (flat, []))[1]
            if c.size not in sizes:
                sizes.append(c.size)
    return [f"    - wirestack noted at {', '.join(f'{s:,}' for s in sizes)}: {first[:200]}"
            for first, sizes in seen.values()]


def _sig3(x: float) -> int:
    return max(1, int(float(f"{x:.3g}")))


def sizes_of(w: Workload, which: str) -> list[int]:
    r = math.sqrt(10)
    return [w.base, _sig3(w.base * r), w.base * 10] if which == "full" else [_sig3(w.base / 10),
                                                                              _sig3(w.base / r), w.base]


def snapshot(tmp: Path, which: str) -> tuple[dict[str, str], str]:
    """A copy of wirestack/ (others may edit the tree while this runs): the working tree as it is now, or the
    commit HEAD (with the C short path built in the working tree, which git does not hold), and the environment
    that makes .venv/bin/wirestack import it (PYTHONPATH comes before the editable install's finder). Returns
    (env, sha256 of the copied files)."""
    tree = tmp / "tree"
    if which == "head":
        archive = subprocess.run(["git", "archive", "--format=tar", "HEAD", "wirestack"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        for built in (ROOT / "wirestack").rglob("*.so"):
            shutil.copyfile(built, tree / built.relative_to(ROOT))
    else:
        shutil.copytree(ROOT / "wirestack", tree / "wirestack", ignore=shutil.ignore_patterns("__pycache__"))
    digest = hashlib.sha256()
    for f in sorted(p for p in (tree / "wirestack").rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(tree)).encode() + b"\0" + f.read_bytes())
    # compiled once, as `pip install` does: what a user runs has its .pyc files (each run compiling the copy
    # again was 0.2 s of every command, the program's start included)
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(tree / "wirestack")], check=True, capture_output=True)
    env = {**user_env(), "PYTHONPATH": str(tree)}
    where = subprocess.run([PYTHON, "-c", "import wirestack; print(wirestack.__file__)"], env=env, cwd=tmp,
                           capture_output=True, text=True).stdout.strip()
    if not where.startswith(str(tree)):
        raise RuntimeError(f"the snapshot is not what wirestack imports ({where})")
    return env, digest.hexdigest()


def user_env() -> dict[str, str]:
    """The environment of every run: this one without PYTHONDONTWRITEBYTECODE (a user's machine keeps the
    interpreter's compiled files)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def machine() -> dict[str, Any]:
    def out(cmd: list[str]) -> str:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        return (done.stdout or done.stderr).strip()

    dirty = [line[3:] for line in out(["git", "status", "--porcelain", "--", "wirestack"]).splitlines()]
    return {"host": platform.node(), "nproc": os.cpu_count(), "kernel": platform.release(),
            "python": out([PYTHON, "-c", "import sys; print(sys.version.split()[0])"]),
            "wirestack_commit": out(["git", "rev-parse", "--short", "HEAD"]),
            "wirestack_uncommitted_files": dirty,
            "tcpdump": out(["tcpdump", "--version"]).splitlines()[0],
            "tshark": out(["tshark", "--version"]).splitlines()[0].rstrip("."),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "load_at_start": os.getloadavg()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", choices=("small", "full"), default="full")
    ap.add_argument("--only", help="comma-separated workloads: " + ", ".join(w.name for w in WORKLOADS))
    ap.add_argument("--repeat", type=int, help="runs per size (default 3 up to the base size, 1 above)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per run before it is killed")
    ap.add_argument("--tree", choices=("worktree", "head", "live"), default="worktree",
                    help="which wirestack to measure: a copy of the working tree taken at the start (default), a "
                         "copy of the commit HEAD, or the working tree live, as others change it")
    args = ap.parse_args()
    chosen = WORKLOADS
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - {w.name for w in WORKLOADS})
        if unknown:
            ap.error(f"unknown workload(s): {', '.join(unknown)}")
        chosen = [w for w in WORKLOADS if w.name in names]
    if args.repeat is not None and not 1 <= args.repeat <= 20 or not 10 <= args.timeout <= 7200:
        ap.error("--repeat 1..20, --timeout 10..7200")
    if os.geteuid() != 0:
        print("scale.py: needs root (wirestack's capture, tcpdump)", file=sys.stderr)
        return 2
    missing = [t for t in ("tcpdump", "tshark") if not shutil.which(t)] + \
        [p for p in (PYTHON, WIRESTACK) if not os.access(p, os.X_OK)]
    if missing:
        print(f"scale.py: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    info = machine()
    tmp = Path(tempfile.mkdtemp(prefix="wirestack-scale-"))
    cells: list[Cell] = []
    started = time.monotonic()
    try:
        env, info["wirestack_snapshot_sha256"] = (user_env(), None) if args.tree == "live" else \
            snapshot(tmp, args.tree)
        info["wirestack_tree"] = args.tree
        if args.tree == "head":
            info["wirestack_uncommitted_files"] = []
        log(f"{info['host']}: {info['nproc']} CPUs, kernel {info['kernel']}, Python {info['python']}; wirestack "
            f"{info['wirestack_commit']} + {len(info['wirestack_uncommitted_files'])} files changed under "
            f"wirestack/ ({args.tree})")
        baseline = []
        for _ in range(3):  # a one-connect run: wirestack's fixed memory and time
            b = run([WIRESTACK, "run", "--json", str(tmp / "b.json"), "-w", str(tmp / "b.pcapng"), "--force",
                     str(WORKLOADS_DIR / "refused_connects.py"), "1"], args.timeout, tmp, None, tmp / "b.txt", env)
            if b.status != 0:
                print(f"scale.py: the baseline run failed (exit {b.status}): {_tail(tmp / 'b.txt')}",
                      file=sys.stderr)
                return 2
            baseline.append(b)
        baseline_kib = statistics.median(r.rss_kib for r in baseline)
        log(f"baseline (one refused connect): {statistics.median(r.wall for r in baseline):.2f} s, "
            f"peak {baseline_kib / 1024:.0f} MB")
        for w in chosen:
            sizes = sizes_of(w, args.sizes)
            run([PYTHON, str(WORKLOADS_DIR / f"{w.name}.py"), str(sizes[0])], args.timeout, tmp)  # warm-up
            timed_out = False
            for size in sizes:
                repeat = args.repeat or (3 if size <= w.base else 1)
                cell = measure(w, size, repeat, args.timeout, tmp, timed_out, env)
                timed_out |= any(r.timed_out for r in cell.wirestack)
                cells.append(cell)
    finally:
        for pgid in list(LIVE):
            _kill_group(pgid)
        shutil.rmtree(tmp, ignore_errors=True)
    own_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    took = time.monotonic() - started
    loads = [c.load for c in cells] or [0.0]
    header = [f"# Scaling benchmark (`scripts/bench/scale.py {' '.join(sys.argv[1:])}`)", "",
              f"{info['date']} on {info['host']}: {info['nproc']} CPUs, kernel {info['kernel']}, Python "
              f"{info['python']}, wirestack {info['wirestack_commit']}"
              + (f" + {len(info['wirestack_uncommitted_files'])} uncommitted files under wirestack/"
                 if info["wirestack_uncommitted_files"] else "")
              + (f" ({args.tree}, sha256 {info['wirestack_snapshot_sha256'][:12]}, compiled as pip install does)"
                 if args.tree != "live" else " (live tree)")
              + f"; {info['tcpdump']}; {info['tshark']}. Took {took / 60:.0f} min. The 1-minute load average was "
              f"{min(loads):.1f}–{max(loads):.1f} (at the start of each row; other work on these "
              f"{info['nproc']} CPUs inflates wall times; CPU times are in the JSON).", "",
              f"Median of {args.repeat or '3 (1 above the base size)'} run(s); wall seconds from spawn to exit, "
              "every run with the interpreter's compiled files (PYTHONDONTWRITEBYTECODE unset). "
              f"Target s = 2 × untraced + 10 µs × packets + 20 µs × calls. Peak MB: ru_maxrss (wait4) of "
              f"wirestack's tree, its largest process; KB/packet: beyond the baseline run's "
              f"{baseline_kib / 1024:.0f} MB (one refused connect, "
              f"{statistics.median(r.wall for r in baseline):.2f} s). This benchmark's own peak, a floor of "
              f"every peak: {own_kib / 1024:.0f} MB. ✗: over the target, or read > {READ_RATIO_MAX:.0f}× tshark.",
              ""]
    rows = table(cells, baseline_kib, args.timeout)
    lines, failed, numbers = verdicts(cells, baseline_kib, args.timeout)
    text = "\n".join([*header, *rows, "", *lines, "", f"Verdict: {'FAIL' if failed else 'PASS'}"]) + "\n"
    print(text, end="")
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"scale-{time.strftime('%Y-%m-%d')}-{args.sizes}"
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps({
        "machine": info, "args": vars(args), "baseline": [asdict(r) for r in baseline], "benchmark_peak_kib": own_kib,
        "cells": [asdict(c) for c in cells], "workloads": numbers, "fail": failed}, indent=1) + "\n")
    log(f"wrote {stem}.md and .json")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # every process it started is gone already (main's finally)
        print("scale.py: interrupted; nothing written", file=sys.stderr)
        sys.exit(130)
