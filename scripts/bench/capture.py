#!/usr/bin/env python3
"""Benchmark (not a test): does the capture lose anything under load, and what does tracing cost?

One bounded loopback burst (scripts/bench/burst.py: 100,000 UDP datagrams from one socket, then 3,000 refused
connects, i.e. 106,000 packets offered) is run, interleaved, in these variants:

    untraced     python burst.py
    tcpdump      the same, while `tcpdump -i lo -w FILE` captures (the reference for completeness)
    wirestack    python -m wirestack run --no-pcap --json FILE burst.py           (kernel layer on)
    no-kernel    python -m wirestack run --no-pcap --json FILE --no-kernel burst.py
    pure-python  the wirestack variant with WIRESTACK_PURE_PROBE=1: the probe without its C short path (what a
                 machine without a compiler gets)

For each: packets of the burst captured / offered (tcpdump's file and wirestack's JSON are counted for the
burst's own ports only), the kernel's drop counter, the burst's own loop time (it prints it), the whole
command's wall time and peak memory (the command's own VmHWM, polled).

Targets (issue 8): captured/offered = 1.000 with 0 kernel drops, where tcpdump also gets 1.000; the traced
burst's run time at most 2x the untraced one; peak memory of `wirestack run` on the burst <= 1 GB.

Usage: sudo python3 scripts/bench/capture.py [--runs N] [--datagrams N] [--connects N] [--markdown FILE]
Traffic goes to 127.0.0.1 only; every count and every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BURST = Path(__file__).with_name("burst.py")
ROOT = Path(__file__).resolve().parent.parent.parent


def _hwm_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of one live process, in MB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _measured(cmd: list[str], cwd: str, env: dict[str, str] | None = None) -> tuple[int, str, str, float, float]:
    """(status, stdout, stderr, wall seconds, peak RSS MB) of one command. The peak is the command's own
    process's VmHWM, polled every 20 ms (not rusage: ru_maxrss is inherited across fork and exec, so every child
    of this benchmark would report this benchmark's own peak)."""
    start = time.perf_counter()
    peak = 0.0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err,
                                env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)})
        while proc.poll() is None:
            peak = max(peak, _hwm_mb(proc.pid))
            time.sleep(0.02)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read().decode(), err.read().decode(), wall, peak


def _burst_line(stdout: str) -> dict[str, Any]:
    line = next(x for x in stdout.splitlines() if x.startswith("{") and '"offered"' in x)
    data: dict[str, Any] = json.loads(line)
    return data


def _count_pcap(path: Path, ports: set[int]) -> int:
    """Frames of a pcap (tcpdump's) with a UDP/TCP port of the burst (IPv4 over Ethernet on lo)."""
    data = path.read_bytes()
    little = data[:4] == b"\xd4\xc3\xb2\xa1" or data[:4] == b"\x4d\x3c\xb2\xa1"
    fmt = "<IIII" if little else ">IIII"
    pos, n = 24, 0
    while pos + 16 <= len(data):
        _, _, caplen, _ = struct.unpack_from(fmt, data, pos)
        frame = data[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
        if len(frame) >= 38 and frame[12:14] == b"\x08\x00" and frame[23] in (6, 17):
            ihl = (frame[14] & 0x0F) * 4
            sport, dport = struct.unpack_from("!HH", frame, 14 + ihl)
            if sport in ports or dport in ports:
                n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--datagrams", type=int, default=100_000)
    ap.add_argument("--connects", type=int, default=3000)
    ap.add_argument("--markdown", metavar="FILE")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("capture.py: needs root (capture and tcpdump): run it with sudo", file=sys.stderr)
        return 2
    if not 1 <= args.runs <= 10 or not 1 <= args.datagrams <= 1_000_000 or not 0 <= args.connects <= 20_000:
        print("capture.py: --runs 1-10, --datagrams 1-1,000,000, --connects 0-20,000", file=sys.stderr)
        return 2
    burst = [sys.executable, str(BURST), "--datagrams", str(args.datagrams), "--connects", str(args.connects)]
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in ("untraced", "tcpdump", "wirestack", "no-kernel",
                                                             "pure-python")}
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            # untraced
            code, out, err, wall, rss = _measured(burst, tmp)
            b = _burst_line(out)
            rows["untraced"].append({"captured": None, "offered": b["offered"], "dropped": None,
                                     "loop": b["seconds"], "wall": wall, "rss": rss})
            # tcpdump
            pcap = Path(tmp, "td.pcap")
            td = subprocess.Popen(["tcpdump", "-i", "lo", "-w", str(pcap), "-B", "65536", "--immediate-mode",
                                   "-U", "-s", "128"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(1.0)  # tcpdump prints "listening" before it listens; give it time
            code, out, err, wall, rss = _measured(burst, tmp)
            time.sleep(0.5)
            td.send_signal(signal.SIGINT)
            td_err = td.communicate(timeout=30)[1]
            b = _burst_line(out)
            dropped = next((int(x.split()[0]) for x in td_err.splitlines() if "dropped by kernel" in x), -1)
            got = _count_pcap(pcap, {b["sink_port"], b["refused_port"]})
            rows["tcpdump"].append({"captured": got, "offered": b["offered"], "dropped": dropped,
                                    "loop": b["seconds"], "wall": wall, "rss": rss})
            # wirestack, with and without the kernel layer
            for name, extra, env in (("wirestack", [], {}), ("no-kernel", ["--no-kernel"], {}),
                                     ("pure-python", [], {"WIRESTACK_PURE_PROBE": "1"})):
                report = Path(tmp, f"{name}.json")
                report.unlink(missing_ok=True)
                cmd = [sys.executable, "-m", "wirestack", "run", "--no-pcap", "--json", str(report), *extra,
                       str(BURST), "--datagrams", str(args.datagrams), "--connects", str(args.connects)]
                code, out, err, wall, rss = _measured(cmd, tmp, env)
                if code != 0 or not report.exists():
                    failures.append(f"{name}: exit {code}: {err.strip().splitlines()[-1:]}")
                    continue
                b = _burst_line(out)
                data = json.loads(report.read_text())
                ports = {b["sink_port"], b["refused_port"]}
                got = sum(1 for p in data["packets"] if p["sport"] in ports or p["dport"] in ports)
                rows[name].append({"captured": got, "offered": b["offered"], "dropped": data["capture"]["dropped"],
                                   "loop": b["seconds"], "wall": wall, "rss": rss,
                                   "notes": [n for n in data["notes"] if "overflow" in n]})
    base = statistics.median(r["loop"] for r in rows["untraced"])
    lines = ["| variant | captured / offered | kernel drops | burst loop s (median) | × untraced | wall s | "
             "peak MB |", "|---|---|---|---|---|---|---|"]
    for name, runs in rows.items():
        if not runs:
            continue
        loop = statistics.median(r["loop"] for r in runs)
        cap = "—" if runs[0]["captured"] is None else ", ".join(f"{r['captured'] / r['offered']:.3f}" for r in runs)
        drops = "—" if runs[0]["dropped"] is None else ", ".join(str(r["dropped"]) for r in runs)
        lines.append(f"| {name} | {cap} | {drops} | {loop:.3f} | {loop / base:.2f} | "
                     f"{statistics.median(r['wall'] for r in runs):.1f} | {max(r['rss'] for r in runs):.0f} |")
    ws = rows["wirestack"] + rows["no-kernel"] + rows["pure-python"]
    complete = all(r["captured"] == r["offered"] and r["dropped"] == 0 for r in ws) and bool(ws)
    td_complete = all(r["captured"] == r["offered"] for r in rows["tcpdump"])
    ratio = statistics.median(r["loop"] for r in rows["wirestack"]) / base if rows["wirestack"] else float("nan")
    fast = not os.environ.get("WIRESTACK_PURE_PROBE") and subprocess.run(
        [sys.executable, "-c", "import wirestack.record._fastpath"], env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True).returncode == 0
    peak = max((r["rss"] for r in ws), default=0.0)
    verdict = [
        f"completeness: wirestack {'1.000 with 0 drops' if complete else 'INCOMPLETE'}; "
        f"tcpdump {'1.000' if td_complete else 'incomplete'}",
        f"traced/untraced burst loop time: {ratio:.2f} (target <= 2: {'met' if ratio <= 2 else 'NOT met'}; "
        f"probe: {'its C short path' if fast else 'pure Python (the C short path is not built)'})",
        f"peak memory of wirestack run: {peak:.0f} MB (target <= 1024: {'met' if peak <= 1024 else 'NOT met'})",
    ]
    overflow = sorted({n for r in ws for n in r.get("notes", [])})
    if overflow:
        verdict.append("kernel layer: " + "; ".join(overflow))
    print("\n".join(lines + [""] + verdict + [f"failure: {f}" for f in failures]))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(["### Capture under load (`scripts/bench/capture.py`)", "",
                                                  f"{args.datagrams} datagrams + {args.connects} refused connects, "
                                                  f"{args.runs} interleaved runs", "", *lines, "",
                                                  *[f"- {v}" for v in verdict]]) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
