"""`wirestack smtp` for real: loopback capture, the probe in a child interpreter, tshark reading the file back."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import pyversion
from conftest import errno, fact_texts, run_json, wirestack

pytestmark = pytest.mark.capture

TSHARK = shutil.which("tshark")


def _tcp(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in data["packets"] if p["proto"] == "TCP"]


def test_seed_yields_one_syn_to_464_and_one_rst_ack_paired_with_all_frames(workdir: Path) -> None:
    data = run_json("smtp", "--no-pcap")
    packets = _tcp(data)
    assert [(p["flags"], p["dport"] if p["flags"] == "S" else p["sport"]) for p in packets] == [("S", 464),
                                                                                               ("RA", 464)]
    syn, rst = packets
    assert rst["ack"] == (syn["seq"] + 1) % 2**32 and rst["dport"] == syn["sport"]
    assert all(p["src"] == "127.0.0.1" and p["dst"] == "127.0.0.1" for p in packets)
    assert data["capture"]["dropped"] == 0 and data["capture"]["packets"] == 2

    exc = data["exception"]
    assert exc["type"] == "ConnectionRefusedError" and errno(exc) == 111
    names = [(Path(f["file"]).name, f["function"]) for f in exc["frames"]]
    assert names == [("<wirestack smtp>", "<module>"), ("smtplib.py", "__init__"), ("smtplib.py", "connect"),
                     ("smtplib.py", "_get_socket"), ("socket.py", "create_connection"),
                     ("socket.py", "create_connection")]
    assert [(f["code"], f["line"]) for f in exc["frames"][-2:]] == [(pyversion.RAISE_CODE, pyversion.RAISE),
                                                                     ("sock.connect(sa)", pyversion.CONNECT)]
    ids = [syn["id"], rst["id"]]
    assert all(f["packets"] == ids for f in exc["frames"])

    connect = next(c for c in data["calls"] if c["id"] == exc["call"])
    assert connect["op"] == "connect" and errno(connect) == 111 and connect["remote"] == ["127.0.0.1", 464]
    assert connect["packets"] == ids
    assert connect["start_ns"] <= syn["time_ns"] and Path(connect["frames"][-1]["file"]).name == "socket.py"
    gai = next(c for c in data["calls"] if c["op"] == "getaddrinfo")
    assert gai["args"] == {"host": "127.0.0.1", "port": 66000}
    texts = fact_texts(data)
    assert "port 66000 does not fit in 16 bits: getaddrinfo turned it into 464" in texts
    refusal = next(f for f in data["facts"] if f["kind"] == "tcp.refused")
    assert (refusal["syn"], refusal["rst"], refusal["reason"], refusal["call"]) == (syn["id"], rst["id"], "NO_SOCKET",
                                                                                    connect["id"])
    assert "was answered with RST/ACK" in texts and "no socket was listening on 127.0.0.1:464" in texts
    assert "socket.py raised it as ConnectionRefusedError; smtplib.py let it through" in texts


def test_pcapng_reads_back_in_tshark_with_comments_and_no_false_retransmission(workdir: Path) -> None:
    assert TSHARK, "tshark is required (scripts/bootstrap installs it)"
    done = wirestack("smtp", "-w", "refused.pcapng", "--json", "report.json")
    assert done.returncode == 0, done.stderr
    pcap = workdir / "refused.pcapng"
    assert pcap.stat().st_mode & 0o777 == 0o600
    out = subprocess.run([TSHARK, "-r", str(pcap), "-T", "fields", "-E", "separator=|", "-e", "tcp.flags.str",
                          "-e", "tcp.dstport", "-e", "frame.comment", "-e", "tcp.analysis.retransmission"],
                         capture_output=True, text=True, check=True)
    assert "Warning" not in out.stderr and "error" not in out.stderr.lower()
    rows = [line.split("|") for line in out.stdout.strip().splitlines()]
    assert len(rows) == 2
    assert "S" in rows[0][0] and rows[0][1] == "464" and "R" in rows[1][0]
    for row in rows:
        assert (f"connect() → ECONNREFUSED (111) at socket.py:{pyversion.CONNECT} create_connection ← "
                f"smtplib.py:{pyversion.GET_SOCKET} _get_socket") in row[2]
        assert row[3] == ""  # no "[TCP Retransmission]" from loopback duplicates
    filtered = subprocess.run([TSHARK, "-r", str(pcap), "-Y", 'frame.comment contains "smtplib"'],
                              capture_output=True, text=True, check=True)
    assert len(filtered.stdout.strip().splitlines()) == 2
    report = json.loads((workdir / "report.json").read_text())
    assert report["capture"]["file"] == "refused.pcapng" and report["capture"]["packets"] == 2


def test_scapy_sees_the_same_two_packets_independently(workdir: Path) -> None:
    from scapy.all import AsyncSniffer  # all: registers the link layers scapy needs to decode lo

    sniffer = AsyncSniffer(iface="lo", filter="tcp port 464")
    sniffer.start()
    time.sleep(1.0)  # AsyncSniffer.start() returns before it listens
    data = run_json("smtp", "--no-pcap")
    time.sleep(0.3)
    seen = sniffer.stop()
    ours = {(p["sport"], p["dport"], p["flags"]) for p in _tcp(data)}
    theirs = {(int(p["TCP"].sport), int(p["TCP"].dport), str(p["TCP"].flags)) for p in seen if p.haslayer("TCP")}
    assert ours and ours <= theirs


def test_ipv6_host(workdir: Path) -> None:
    data = run_json("smtp", "--host", "::1", "--port", "2525", "--no-pcap")
    packets = _tcp(data)
    assert [(p["src"], p["dst"], p["flags"]) for p in packets] == [("::1", "::1", "S"), ("::1", "::1", "RA")]
    assert packets[0]["dport"] == 2525
    assert errno(data["exception"]) == 111
    assert all(f["packets"] == [1, 2] for f in data["exception"]["frames"])
    assert not any("16 bits" in f["text"] for f in data["facts"])  # 2525 needs no wrapping


def test_a_listener_on_the_port_is_reported_as_what_happened(workdir: Path) -> None:
    # the data contradicts the usual lesson: something listens (and says 220) -> no refusal, no RST
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        conn.sendall(b"220 test ready\r\n")
        conn.recv(100)
        conn.sendall(b"221 bye\r\n")
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    data = run_json("smtp", "--port", str(port), "--no-pcap")
    server.close()
    assert data["exception"] is None
    flags = [p["flags"] for p in _tcp(data)]
    assert flags[:3] == ["S", "SA", "A"] and "RA" not in flags
    texts = fact_texts(data)
    assert f"the server 127.0.0.1:{port}: SYN/ACK" in texts and "the handshake completed" in texts
    assert not any(f["kind"] == "tcp.refused" for f in data["facts"])
    recv = [c for c in data["calls"] if c["op"].startswith("recv") and c["packets"]]
    assert recv, "the banner segment is paired with the recv that read it"


def test_unresolvable_host_is_a_result_not_a_crash(workdir: Path) -> None:
    data = run_json("smtp", "--host", "no-such-host.invalid", "--no-pcap")
    assert data["exception"]["type"] == "socket.gaierror"
    assert not _tcp(data)
    assert any("getaddrinfo('no-such-host.invalid', 66000) failed" in f["text"] for f in data["facts"])


def test_other_loopback_traffic_stays_out(workdir: Path) -> None:
    stop = threading.Event()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))

    def flood() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(200_000):  # bounded in count and time
                if stop.is_set():
                    return
                s.sendto(b"noise", sink.getsockname())
                time.sleep(0.0005)

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        data = run_json("smtp", "--no-pcap")
    finally:
        stop.set()
        t.join(5)
        sink.close()
    assert [p["flags"] for p in data["packets"]] == ["S", "RA"]
    assert data["capture"]["seen"] > data["capture"]["packets"]


def test_default_output_goes_to_captures_folder(workdir: Path) -> None:
    done = wirestack("smtp", "--no-color")
    assert done.returncode == 0, done.stderr
    files = list((workdir / "captures").glob("smtp-*.pcapng"))
    assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
    assert "Traceback (most recent call last):" in done.stdout
    assert "connect(127.0.0.1:464) → ECONNREFUSED (111)" in done.stdout
    assert "\x1b[" not in done.stdout  # not a terminal: no colour


def test_files_belong_to_the_sudo_user(workdir: Path) -> None:
    done = wirestack("smtp", "-w", "mine.pcapng", "--json", "mine.json", env={"SUDO_UID": "65534",
                                                                              "SUDO_GID": "65534"})
    assert done.returncode == 0, done.stderr
    for name in ("mine.pcapng", "mine.json"):
        st = (workdir / name).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o600)
