"""The pcapng writer, read back by scapy's reader and by tshark."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from builders import CLIENT, SERVER, call, refused, tcp
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgReader

from wirestack.model import CaptureInfo, Trace
from wirestack.output.annotate import blocks
from wirestack.report import build_report


def _trace() -> Trace:
    raw_syn = bytes(Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=40000, dport=464, flags="S", seq=1000))
    raw_rst = bytes(Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=464, dport=40000, flags="RA",
                                                                          ack=1001))
    from wirestack.core.dissect import dissect

    syn = tcp(1, 10, CLIENT, SERVER, "S", seq=1000)
    rst = tcp(2, 24, SERVER, CLIENT, "RA", ack=1001)
    packets = (dissect(1, syn.time_ns, raw_syn), dissect(2, rst.time_ns, raw_rst))  # what reading them back gives
    calls = (call(1, "connect", 0, 40, errno=111),)
    return Trace("smtp", "x", packets, calls, refused(1), CaptureInfo("lo", None, 2, 2, 0))


def test_blocks_round_trip_through_scapy_with_ns_times_and_comments(tmp_path: Path) -> None:
    trace = _trace()
    path = tmp_path / "t.pcapng"
    path.write_bytes(b"".join(blocks(build_report(trace))))
    read = list(PcapNgReader(str(path)))
    assert len(read) == 2
    assert [int(p.time * 1_000_000_000) // 1000 for p in read] == [q.time_ns // 1000 for q in trace.packets]
    assert str(read[0][TCP].flags) == "S" and str(read[1][TCP].flags) == "RA"
    for p in read:
        assert p.comments and "connect() → ECONNREFUSED (111) at socket.py:836 create_connection ← smtplib.py:312 " \
            "_get_socket" in p.comments[0].decode()
    assert read[0].comments[0].decode().startswith("sent by ")
    assert read[1].comments[0].decode().startswith("received by ")


def test_tshark_opens_it_without_complaint(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    assert tshark, "tshark is required (scripts/bootstrap installs it)"
    path = tmp_path / "t.pcapng"
    path.write_bytes(b"".join(blocks(build_report(_trace()))))
    done = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.comment"], capture_output=True,
                          text=True)
    assert done.returncode == 0
    assert "appears to be damaged" not in done.stderr and "isn't" not in done.stderr
    assert done.stdout.count("connect() → ECONNREFUSED") == 2
