#!/usr/bin/env python3
"""Benchmark (not a test): wall time of `wirestack smtp` against a minimal hand-written scapy script.

Variants, each started as a subprocess with this interpreter (`sys.executable`) from one temporary directory:

    A   python -m wirestack smtp --json - --no-pcap   (stdout captured, checked, discarded)
    A2  python -m wirestack smtp --json -             (also writes the default captures/smtp-TIME.pcapng)
    B   the scapy reference below: AsyncSniffer on lo with "tcp port 464", smtplib.SMTP to port 66000
        (getaddrinfo wraps it to 464, the kernel answers RST/ACK), stop, wrpcap to a temporary file

Runs are interleaved (A, A2, B, A, A2, B, ...) after 2 warm-up rounds, so drifts (CPU frequency, page cache,
other load) hit every variant alike. Every run is sanity-checked: wirestack must exit 0 with 2 packets in its
JSON (A2: and a pcapng file with 2 packets, removed after the check so the next run's default name, which has
one-second resolution, cannot collide); the reference must exit 0 and its pcap file must hold >= 2 packets.
Timed runs that fail the check are reported and left out of the statistics.

Targets: median(A) / median(B) <= 1.5 and median(A) <= 300 ms.

How the reference waits, and why it is not made slow:
- Start: `AsyncSniffer.running` is set at the very top of the sniffer thread, *before* the socket is opened, so
  polling it is no barrier, and a fixed sleep is either racy or a handicap. scapy's own `started_callback` is
  called after the socket is opened, the filter attached and the socket bound: from then on every frame is
  queued. The script waits on an Event set by that callback: exact and free.
- Stop: `AsyncSniffer.stop()` ends the loop after at most one more read, dropping frames that are queued but not
  yet read (measured with a plain stop() right after connect(): 5 runs in 20 kept fewer than 2 frames, 9 in 20
  lost the RST). On loopback the RST/ACK is queued before connect() returns, so the script waits (at most 2 s)
  until the sniffer thread has read a RST, then stops: the same "drain what was captured" that wirestack does
  with its marker, at the cost of a thread switch.
- scapy keeps both copies of each loopback frame (outgoing and incoming), so the reference file holds 4 frames;
  wirestack drops the outgoing copy in its BPF filter and keeps 2. Hence ">= 2" for the reference.

Usage: sudo python3 scripts/bench/smtp.py [--runs N] [--markdown FILE]
Exit status: 0 done, 1 a sanity check failed, 2 cannot run (not root, port 464 taken, bad arguments).
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

WARMUP = 2
TIMEOUT = 20.0  # seconds, per run
TARGET_RATIO = 1.5
TARGET_MEDIAN_MS = 300.0
PORT = 464  # 66000 wrapped to 16 bits

REFERENCE = '''\
"""Reference: the capture `wirestack smtp` does, hand-written with scapy. Argument: the pcap file to write."""
import smtplib
import sys
import threading
import time

import scapy.layers.inet  # noqa: F401  IP and TCP, bound on top of Ether
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether  # noqa: F401  Ether, registered for loopback (ARPHRD_LOOPBACK) frames
from scapy.sendrecv import AsyncSniffer
from scapy.utils import wrpcap

listening = threading.Event()  # set by scapy once the socket is bound with the filter attached
got_rst = threading.Event()


def seen(packet):
    if TCP in packet and packet[TCP].flags.R:
        got_rst.set()


sniffer = AsyncSniffer(iface="lo", filter="tcp port 464", prn=seen, started_callback=listening.set)
sniffer.start()
deadline = time.monotonic() + 10
while not listening.wait(0.005):
    if not sniffer.thread.is_alive() or time.monotonic() > deadline:
        sys.exit(f"reference: the sniffer did not start: {sniffer.exception!r}")
try:
    smtplib.SMTP("127.0.0.1", port=66000)
except ConnectionRefusedError:
    pass
else:
    sys.exit("reference: something accepted the connection on port 464")
got_rst.wait(2)  # already queued on loopback: let the sniffer thread read it before stopping
packets = sniffer.stop()
wrpcap(sys.argv[1], packets)
print(len(packets))
'''


@dataclass
class Variant:
    key: str
    label: str
    times_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Setup:
    python: str
    workdir: Path
    reference: Path
    reference_pcap: Path


class CheckFailed(Exception):
    pass


# -- pcap / pcapng counting (no scapy in this process) -----------------------------------------------------------


def count_pcap(data: bytes) -> int:
    """Packets in a classic pcap file."""
    if len(data) < 24:
        raise CheckFailed(f"pcap file too short ({len(data)} bytes)")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise CheckFailed(f"not a pcap file (magic {magic.hex()})")
    count, offset = 0, 24
    while offset + 16 <= len(data):
        (incl_len,) = struct.unpack_from(endian + "I", data, offset + 8)
        offset += 16 + incl_len
        count += 1
    if offset != len(data):
        raise CheckFailed("pcap file is truncated")
    return count


def count_pcapng(data: bytes) -> int:
    """Enhanced and simple packet blocks in a pcapng file."""
    if len(data) < 12 or data[:4] != b"\x0a\x0d\x0d\x0a":
        raise CheckFailed("not a pcapng file")
    endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    count, offset = 0, 0
    while offset + 12 <= len(data):
        kind, length = struct.unpack_from(endian + "II", data, offset)
        if length < 12 or length % 4:
            raise CheckFailed(f"pcapng block at {offset} has a bad length {length}")
        if kind in (3, 6):
            count += 1
        offset += length
    if offset != len(data):
        raise CheckFailed("pcapng file is truncated")
    return count


# -- the runs ----------------------------------------------------------------------------------------------------


def _run(cmd: Sequence[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"did not finish within {TIMEOUT:.0f} s") from None
    elapsed = (time.perf_counter() - start) * 1000.0
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no stderr)"]
        raise CheckFailed(f"exit status {done.returncode}: {tail[0]}")
    return elapsed, done


def _check_wirestack_json(stdout: bytes) -> None:
    try:
        report = json.loads(stdout)
    except ValueError as exc:
        raise CheckFailed(f"stdout is not JSON: {exc}") from None
    packets = report.get("packets")
    if not isinstance(packets, list) or len(packets) != 2:
        got = len(packets) if isinstance(packets, list) else packets
        raise CheckFailed(f"JSON has {got} packets, expected 2")


def run_wirestack(setup: Setup, pcap: bool) -> float:
    folder = setup.workdir / "captures"
    cmd = [setup.python, "-m", "wirestack", "smtp", "--json", "-"] + ([] if pcap else ["--no-pcap"])
    elapsed, done = _run(cmd, setup.workdir)
    _check_wirestack_json(done.stdout)
    written = sorted(folder.glob("*.pcapng")) if folder.is_dir() else []
    try:
        if not pcap:
            if written:
                raise CheckFailed(f"--no-pcap wrote {written[0].name}")
            return elapsed
        if len(written) != 1:
            raise CheckFailed(f"expected 1 pcapng file in captures/, found {len(written)}")
        n = count_pcapng(written[0].read_bytes())
        if n != 2:
            raise CheckFailed(f"{written[0].name} has {n} packets, expected 2")
        return elapsed
    finally:
        for path in written:
            path.unlink(missing_ok=True)


def run_reference(setup: Setup) -> float:
    setup.reference_pcap.unlink(missing_ok=True)
    elapsed, done = _run([setup.python, str(setup.reference), str(setup.reference_pcap)], setup.workdir)
    if not setup.reference_pcap.is_file():
        raise CheckFailed("wrote no pcap file")
    n = count_pcap(setup.reference_pcap.read_bytes())
    if n < 2:
        raise CheckFailed(f"captured {n} packet(s), expected >= 2")
    setup.reference_pcap.unlink()
    return elapsed


def run_one(variant: Variant, setup: Setup) -> float:
    if variant.key == "A":
        return run_wirestack(setup, pcap=False)
    if variant.key == "A2":
        return run_wirestack(setup, pcap=True)
    return run_reference(setup)


# -- statistics and output ---------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.1f}"


def _median(variant: Variant) -> float:
    return statistics.median(variant.times_ms) if variant.times_ms else math.nan


def summary(variants: list[Variant], runs: int) -> tuple[list[list[str]], list[str]]:
    """Rows of the table (header first) and the lines below it."""
    rows = [["variant", "runs ok", "median ms", "p90 ms", "min ms"]]
    for v in variants:
        t = v.times_ms
        rows.append([f"{v.key} {v.label}", f"{len(t)}/{runs}", _fmt(_median(v)),
                     _fmt(percentile(t, 0.9) if t else None), _fmt(min(t) if t else None)])
    by_key = {v.key: v for v in variants}
    a, a2, b = (_median(by_key[k]) for k in ("A", "A2", "B"))
    ratio_a, ratio_a2 = a / b, a2 / b

    def verdict(value: float, limit: float) -> str:
        return "n/a" if math.isnan(value) else ("met" if value <= limit else "NOT met")

    lines = [
        f"ratio median(A)/median(B)  = {_fmt_ratio(ratio_a)}  (target <= {TARGET_RATIO}: "
        f"{verdict(ratio_a, TARGET_RATIO)})",
        f"ratio median(A2)/median(B) = {_fmt_ratio(ratio_a2)}  (same limit, for information: "
        f"{verdict(ratio_a2, TARGET_RATIO)})",
        f"median(A) = {_fmt(a)} ms  (target <= {TARGET_MEDIAN_MS:.0f} ms: {verdict(a, TARGET_MEDIAN_MS)})",
    ]
    if math.isnan(ratio_a):
        lines.append("targets: undetermined (a variant has no successful run)")
    else:
        lines.append(f"targets: {'all met' if ratio_a <= TARGET_RATIO and a <= TARGET_MEDIAN_MS else 'NOT all met'}")
    return rows, lines


def _fmt_ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        out.append("  ".join(cells))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown(rows: list[list[str]], lines: list[str], header: str) -> str:
    out = [f"# {header}", "", "| " + " | ".join(rows[0]) + " |",
           "|" + "|".join(["---"] + ["---:"] * (len(rows[0]) - 1)) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    out += [""] + [f"- {line}" for line in lines]
    return "\n".join(out) + "\n"


# -- main --------------------------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return int(text)


def _port_free() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", PORT)) != 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Wall time of `wirestack smtp` versus a minimal scapy script.")
    parser.add_argument("--runs", type=_positive, default=20, help="timed runs per variant (default 20)")
    parser.add_argument("--markdown", metavar="FILE", type=Path, help="also write the table as markdown")
    args = parser.parse_args(argv)

    if os.geteuid() != 0:
        print("smtp.py: capturing needs root: run it with sudo", file=sys.stderr)
        return 2
    if not _port_free():
        print(f"smtp.py: something listens on 127.0.0.1:{PORT}; the scenario needs it refused", file=sys.stderr)
        return 2

    variants = [Variant("A", "wirestack --no-pcap"), Variant("A2", "wirestack (pcapng)"),
                Variant("B", "scapy reference")]
    with tempfile.TemporaryDirectory(prefix="wirestack-bench-") as tmp:
        workdir = Path(tmp)
        reference = workdir / "scapy_reference.py"
        reference.write_text(REFERENCE)
        setup = Setup(sys.executable, workdir, reference, workdir / "scapy_reference.pcap")
        total = WARMUP + args.runs
        progress = sys.stderr.isatty()
        began = time.perf_counter()
        for rnd in range(total):
            warm = rnd < WARMUP
            tag = f"warm-up {rnd + 1}" if warm else f"run {rnd - WARMUP + 1}"
            for v in variants:
                try:
                    elapsed = run_one(v, setup)
                except CheckFailed as exc:
                    v.failures.append(f"{tag}: {exc}")
                    continue
                if not warm:
                    v.times_ms.append(elapsed)
            if progress:
                print(f"\r{tag}/{WARMUP if warm else args.runs} ...", end="", file=sys.stderr, flush=True)
        if progress:
            print(f"\r{' ' * 30}\r", end="", file=sys.stderr, flush=True)
        wall = time.perf_counter() - began

    rows, lines = summary(variants, args.runs)
    header = f"wirestack smtp benchmark: {args.runs} interleaved runs per variant after {WARMUP} warm-ups"
    print(header)
    print(f"python {sys.version.split()[0]} ({sys.executable}), benchmark wall time {wall:.1f} s\n")
    print(text_table(rows))
    print()
    print("\n".join(lines))
    if args.markdown:
        args.markdown.write_text(markdown(rows, lines, header))
        print(f"\nwrote {args.markdown}")

    failed = [(v, f) for v in variants for f in v.failures]
    if failed:
        print(f"\nSANITY CHECK FAILED ({len(failed)} run(s)):", file=sys.stderr)
        for v, message in failed:
            print(f"  {v.key} {v.label}: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
