"""The seams' fakes: a traced run without the privilege to capture, and a renderer chosen like any other."""

from __future__ import annotations

import sys
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from wirestack.record.assemble import assemble
from wirestack.record.runner import Client, run_traced
from wirestack.report import build_report
from wirestack.testing.fakes import FakeRenderer, FakeSource


def test_a_traced_run_with_a_fake_capture(tmp_path: Path) -> None:
    """The runner, the probe and the assembly work the same on frames from anywhere (no root needed)."""
    frames = [(1_000, bytes(Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=1, dport=2, flags="S")))]
    program = tmp_path / "p.py"
    program.write_text("import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n"
                       "except OSError as e:\n    print(type(e).__name__)\n")
    rec = run_traced(Client("run p", mode="script", target=str(program), python=sys.executable), kernel=False,
                     source=FakeSource(frames))
    assert rec.returncode == 0 and len(rec.frames) == 1
    trace, alignment = assemble(rec)
    assert [c.op for c in trace.calls if c.op in ("connect", "socket")]  # the probe's records came through
    assert trace.capture.seen == 1 and trace.packets == ()  # the fake frame is not the program's flow
    report = build_report(trace, alignment)
    assert FakeRenderer().render(report).startswith("0 packets")


def test_a_fake_source_replays_a_capture_file(tmp_path: Path) -> None:
    from wirestack.formats import pcapng

    raw = bytes(Ether() / IP() / TCP(flags="RA"))
    path = tmp_path / "one.pcapng"
    path.write_bytes(pcapng.section_header("test") + pcapng.interface_description(1, 65535, "lo")
                     + pcapng.enhanced_packet(5_000_000_000, raw, len(raw)))
    source = FakeSource.from_pcap(path).open()
    assert source.pump() is False and source.frames.data == [raw] and source.frames.times == [5_000_000_000]
    source.close()
