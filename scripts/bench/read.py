#!/usr/bin/env python3
"""Benchmark (not a test): `wirestack read` of a plain 1,000,000-packet pcap against tshark on the same file.

The capture is synthesised directly (no traffic is sent): Ethernet/IPv4 frames between loopback addresses,
    - short TCP refusals: a SYN from 127.0.0.1:EPHEMERAL to 127.0.0.1:464, answered by RST/ACK, and
    - UDP datagrams to 127.0.0.1:9999, each answered by ICMP port unreachable quoting it,
in the proportion of --udp-share (default 20% of the exchanges), 10 µs apart. Then, interleaved for --runs
rounds (default 3), each as a subprocess with stdout to /dev/null:

    A   python -m wirestack read FILE --no-color --width 120
    B   tshark -r FILE -T fields -e frame.time_epoch -e ip.src -e ip.dst -e tcp.flags

and reports wall time (median, min) and peak memory (ru_maxrss of each child, from os.wait4).
Targets (issue 5): median(A) <= median(B), peak memory of A <= 2 GB.

Usage: python3 scripts/bench/read.py [--packets N] [--runs N] [--keep FILE] [--markdown FILE]
Exit status: 0 targets met, 1 a target missed or a run failed, 2 cannot run (no tshark, bad arguments).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LO = bytes([127, 0, 0, 1])
ETH = b"\x00" * 12 + b"\x08\x00"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ipv4(proto: int, payload: bytes, ident: int) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, 64, proto, 0, LO, LO)
    return head[:10] + struct.pack("!H", _checksum(head)) + head[12:] + payload


def _tcp(sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65495 if flags == 0x02 else 0, 0, 0)


def synthesise(path: Path, packets: int, udp_share: float) -> None:
    """Write a pcap (µs resolution, Ethernet) with `packets` frames: exchanges of two frames each."""
    t = 1_700_000_000_000_000  # µs
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    udp_every = max(1, round(1 / udp_share)) if udp_share > 0 else 0
    for n in range(packets // 2):
        sport = 32768 + n % 28000
        if udp_every and n % udp_every == 0:
            data = b"ping %08d" % n
            udp = struct.pack("!HHHH", sport, 9999, 8 + len(data), 0) + data
            first = _ipv4(17, udp, 2 * n)
            quoted = first[:28]
            icmp_body = struct.pack("!BBHI", 3, 3, 0, 0) + first
            icmp = icmp_body[:2] + struct.pack("!H", _checksum(icmp_body)) + icmp_body[4:]
            del quoted
            second = _ipv4(1, icmp, 2 * n + 1)
        else:
            seq = (n * 2654435761) & 0xFFFFFFFF
            first = _ipv4(6, _tcp(sport, 464, seq, 0, 0x02), 2 * n)
            second = _ipv4(6, _tcp(464, sport, 0, (seq + 1) & 0xFFFFFFFF, 0x14), 2 * n + 1)
        for frame, dt in ((ETH + first, 0), (ETH + second, 3)):
            ts = t + dt
            out.append(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame)))
            out.append(frame)
        t += 10
    path.write_bytes(b"".join(out))


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in KiB, exit status) of one run, stdout and stderr discarded."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--udp-share", type=float, default=0.2)
    ap.add_argument("--keep", metavar="FILE", help="write the capture here (and keep it)")
    ap.add_argument("--markdown", metavar="FILE", help="also write the results as a markdown table")
    args = ap.parse_args()
    tshark = shutil.which("tshark")
    if not tshark:
        print("bench: tshark is not installed", file=sys.stderr)
        return 2
    if not 2 <= args.packets <= 20_000_000 or not 1 <= args.runs <= 20:
        print("bench: --packets must be 2..20,000,000 and --runs 1..20", file=sys.stderr)
        return 2
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory(prefix="wirestack-bench-") as folder:
        path = Path(args.keep) if args.keep else Path(folder) / "big.pcap"
        t0 = time.perf_counter()
        synthesise(path, args.packets, args.udp_share)
        print(f"bench: wrote {path} ({path.stat().st_size / 1e6:.0f} MB, {args.packets:,} packets) in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        variants = {
            "A wirestack read": [sys.executable, "-m", "wirestack", "read", str(path), "--no-color", "--width", "120"],
            "B tshark -T fields": [tshark, "-r", str(path), "-T", "fields", "-e", "frame.time_epoch", "-e", "ip.src",
                                   "-e", "ip.dst", "-e", "tcp.flags"],
        }
        results: dict[str, list[tuple[float, int, int]]] = {k: [] for k in variants}
        for _ in range(args.runs):
            for name, cmd in variants.items():
                results[name].append(measure(cmd, env))
    failed = [n for n, rs in results.items() for r in rs if r[2] != 0]
    rows = ["| variant | median s | min s | peak RSS MB (max) | runs |", "|---|---|---|---|---|"]
    for name, rs in results.items():
        walls = [r[0] for r in rs]
        rows.append(f"| {name} | {statistics.median(walls):.2f} | {min(walls):.2f} | "
                    f"{max(r[1] for r in rs) / 1024:.0f} | {len(rs)} |")
    a, b = (statistics.median(r[0] for r in results[k]) for k in variants)
    peak = max(r[1] for r in results["A wirestack read"]) / 1024
    verdict = (f"read/tshark = {a / b:.2f} (target <= 1.00); read peak {peak:.0f} MB (target <= 2048)"
               + (f"; FAILED runs: {failed}" if failed else ""))
    print("\n".join(rows + ["", verdict]))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(rows + ["", verdict]) + "\n")
    return 0 if not failed and a <= b and peak <= 2048 else 1


if __name__ == "__main__":
    sys.exit(main())
