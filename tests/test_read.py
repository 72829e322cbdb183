"""`wirestack read`: the live run's report back from its file (as an unprivileged user), ordinary captures from
tcpdump, and bad input."""

from __future__ import annotations

import importlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, wirestack
from pcaps import T0, pcap, pcapng, refused

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"


def _one_line_error(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wirestack: "), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    return lines[0]


def test_missing_file_text_file_and_folder(workdir: Path) -> None:
    assert "cannot read nothere.pcapng: No such file or directory" in _one_line_error(
        wirestack("read", "nothere.pcapng"))
    (workdir / "notes.txt").write_text("hello world\n")
    assert "notes.txt is not a pcap or pcapng file (it starts with 'hello wo')" in _one_line_error(
        wirestack("read", "notes.txt"))
    assert "it is a folder" in _one_line_error(wirestack("read", str(workdir)))


def test_truncated_capture_shows_what_is_readable_and_where_it_broke(workdir: Path) -> None:
    data = pcapng(refused())
    (workdir / "cut.pcapng").write_bytes(data[:-7])
    done = wirestack("read", "cut.pcapng", "--no-color")
    line = _one_line_error(done)
    assert "cut.pcapng is cut short at byte" in line and "packet 2 needs" in line
    assert "wirestack read cut.pcapng: 1 packet (pcapng, Ethernet)" in done.stdout
    assert "note: the file is cut short at byte" in done.stdout


def test_plain_pcap_shows_packets_and_what_the_wire_alone_shows(workdir: Path) -> None:
    (workdir / "plain.pcap").write_bytes(pcap(refused(after_us=22)))
    done = wirestack("read", "plain.pcap", "--no-color", "--width", "120")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "no wirestack trace in this file" in out and "Traceback" not in out
    assert "#1" in out and "#2" in out and "RA  seq=0 ack=1001" in out
    assert "the SYN (#1) was answered with RST/ACK (#2) after 22 µs: nothing accepted connections on 127.0.0.1:464" \
        in " ".join(out.split())
    data = json.loads(wirestack("read", "plain.pcap", "--json", "-").stdout)
    assert data["kind"] == "wire" and data["calls"] == [] and data["exception"] is None
    assert [p["flags"] for p in data["packets"]] == ["S", "RA"] and data["flows"][0]["outcome"] == "refused"
    assert data["capture"] == {"interface": None, "file": "plain.pcap", "format": "pcap", "writer": None,
                               "packets": 2, "seen": 2, "dropped": 0, "links": []}
    refusal = next(f for f in data["facts"] if f["kind"] == "tcp.refused")
    assert (refusal["syn"], refusal["rst"], refusal["server"]["addr"], refusal["client"]["sockets"]) == (
        1, 2, ["127.0.0.1", 464], [])


def test_json_output_is_not_overwritten_without_force(workdir: Path) -> None:
    (workdir / "plain.pcap").write_bytes(pcap(refused()))
    (workdir / "r.json").write_text("keep")
    assert "r.json exists" in _one_line_error(wirestack("read", "plain.pcap", "--json", "r.json"))
    assert wirestack("read", "plain.pcap", "--json", "r.json", "--force").returncode == 0


@pytest.fixture
def unprivileged() -> Iterator[tuple[list[str], Path]]:
    """A folder that user nobody can use, with a world-readable copy of this checkout's wirestack and of rich
    (pure Python), and the command prefix that runs `python -m wirestack` there as nobody with the system
    interpreter (root's pyenv interpreter lives under /root, which nobody cannot enter)."""
    setpriv = shutil.which("setpriv")
    assert setpriv and os.access(SYSTEM_PYTHON, os.X_OK), "setpriv and /usr/bin/python3 are needed"
    folder = Path(tempfile.mkdtemp(prefix="wirestack-nobody-", dir="/tmp"))
    lib = folder / "lib"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "wirestack", lib / "wirestack", ignore=ignore)
    for name in ("rich", "pygments", "markdown_it", "mdurl"):
        module = importlib.import_module(name)
        assert module.__file__
        shutil.copytree(Path(module.__file__).parent, lib / name, ignore=ignore)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    os.chown(folder, NOBODY, NOBODY)
    cmd = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", "env", "-i",
           f"PYTHONPATH={lib}", "LANG=C.UTF-8", SYSTEM_PYTHON, "-m", "wirestack"]
    try:
        yield cmd, folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.capture
def test_read_as_nobody_gives_the_live_runs_text_and_json(workdir: Path,
                                                          unprivileged: tuple[list[str], Path]) -> None:
    cmd, folder = unprivileged
    live = wirestack("smtp", "-w", "x.pcapng", "--json", "a.json", "--no-color", "--width", "100")
    assert live.returncode == 0, live.stderr
    shutil.copy(workdir / "x.pcapng", folder / "x.pcapng")
    (folder / "x.pcapng").chmod(0o644)
    who = subprocess.run([*cmd[:-2], "-c", "import os, wirestack; print(os.geteuid(), wirestack.__file__)"],
                         capture_output=True, text=True, cwd=folder)
    assert who.stdout.split() == [str(NOBODY), str(folder / "lib" / "wirestack" / "__init__.py")], who.stderr
    done = subprocess.run([*cmd, "read", "x.pcapng", "--json", "b.json", "--no-color", "--width", "100"],
                          capture_output=True, text=True, cwd=folder, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads((folder / "b.json").read_text()) == json.loads((workdir / "a.json").read_text())
    assert done.stdout == live.stdout
    flat = " ".join(done.stdout.split())
    assert "ECONNREFUSED (111)" in flat and "no socket was listening on 127.0.0.1:464" in flat  # a root run: kernel


@pytest.mark.capture
def test_ordinary_tcpdump_capture(workdir: Path) -> None:
    tcpdump = shutil.which("tcpdump")
    assert tcpdump, "tcpdump is required (scripts/bootstrap installs it)"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections to it are refused
        # --immediate-mode: without it, packets wait in the kernel ring for a 1 s block timeout and are lost
        # when tcpdump is stopped ("12 packets received by filter", "0 packets captured")
        dump = subprocess.Popen([tcpdump, "-i", "lo", "-Q", "in", "-U", "--immediate-mode", "-w", "dump.pcap",
                                 f"tcp port {port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert dump.stderr is not None
            ready = select.select([dump.stderr], [], [], 10)[0]
            assert ready and "listening on" in dump.stderr.readline()
            time.sleep(0.5)  # tcpdump says "listening" before the capture is live
            for _ in range(3):
                with socket.socket() as c, pytest.raises(ConnectionRefusedError):
                    c.connect(("127.0.0.1", port))
            time.sleep(0.5)
        finally:
            dump.terminate()
            dump.wait(10)
    done = wirestack("read", "dump.pcap", "--json", "-")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["capture"]["packets"] == 6, (data["capture"], dump.stderr.read() if dump.stderr else "")
    refusals = [f for f in data["facts"] if f["kind"] == "tcp.refused"]
    assert len(refusals) == 3 and all(f["server"]["addr"] == ["127.0.0.1", port] for f in refusals)
    assert all(not p["calls"] and p["role"] is None for p in data["packets"])


# -- --packet: chosen packets whole, as scapy decodes them -----------------------------------------------------


def test_packet_detail_is_the_file_as_tshark_reads_it() -> None:
    """`read --packet` of a shipped network capture: the SYN's IP and TCP fields and options as tshark gives
    them, the call that sent it, where it was seen; and the report itself never imports scapy."""
    path = ROOT / "captures" / "mtu.pcapng"
    done = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", "tcp.flags.syn == 1 and tcp.flags.ack == 0", "-T",
                           "fields", "-E", "separator=|", "-e", "frame.number", "-e", "ip.ttl", "-e", "ip.id",
                           "-e", "tcp.options.mss_val", "-e", "tcp.options.wscale.shift", "-e", "tcp.srcport",
                           "-e", "frame.interface_name"], capture_output=True, text=True, check=True)
    number, ttl, ident, mss, wscale, sport, iface = done.stdout.splitlines()[0].split("|")
    shown = wirestack("read", str(path), "--packet", number, "--width", "100")
    assert shown.returncode == 0, shown.stderr
    head, *rest = shown.stdout.splitlines()
    assert head.startswith(f"#{number} ") and f"on {iface}" in head
    assert f"mss={mss} sack_perm ts wscale={wscale}" in head
    assert rest[0].strip().startswith("sent: call ") and "connect(" in rest[0]
    text = "\n".join(rest)
    assert f"ttl={ttl}" in text and f"id={int(ident, 16) if ident.startswith('0x') else ident}" in text
    assert f"('MSS', {mss})" in text and f"('WScale', {wscale})" in text and f"sport={sport}" in text
    probe = ("import sys, wirestack.cli as c\nsys.argv = ['wirestack', 'read', sys.argv[1], '--no-color']\n"
             "try:\n    c.run()\nexcept SystemExit:\n    pass\nassert 'scapy' not in sys.modules, 'scapy imported'\n")
    plain = subprocess.run([sys.executable, "-c", probe, str(path)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert plain.returncode == 0 and "scapy imported" not in plain.stderr, plain.stderr


def test_packet_detail_of_neighbour_discovery_and_hostile_names(tmp_path: Path) -> None:
    """IPv6 neighbour discovery named in the report's line and decoded by scapy; a DNS name with terminal
    escapes in it reaches the terminal escaped."""
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
    from scapy.layers.l2 import Ether

    ns = Ether(src="02:00:00:00:00:01") / IPv6(src="fe80::1", dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt="fe80::2") \
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
    query = Ether() / IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=5353, dport=53) / \
        DNS(rd=1, qd=DNSQR(qname=b"evil\x1b]0;owned\x07.example"))
    path = tmp_path / "nd.pcap"
    path.write_bytes(pcap([(T0, bytes(ns)), (T0 + 1000, bytes(query))]))
    report = wirestack("read", str(path), "--no-color", "--width", "200")
    assert report.returncode == 0, report.stderr
    assert "neighbor solicitation for fe80::2" in report.stdout
    shown = wirestack("read", str(path), "--packet", "1,2")
    assert shown.returncode == 0, shown.stderr
    assert "ICMPv6 Neighbor Discovery - Neighbor Solicitation" in shown.stdout and "tgt=fe80::2" in shown.stdout
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "DNS" in shown.stdout


@pytest.mark.parametrize(("spec", "says"), [("x", "numbers and ranges"), ("0", "no packet #0"),
                                            ("3-1", "no packet #3-1"), ("99", "no packet #99")])
def test_packet_selection_errors(spec: str, says: str) -> None:
    done = wirestack("read", str(ROOT / "captures" / "smtp.pcapng"), "--packet", spec)
    assert says in _one_line_error(done)


def test_packet_takes_no_output_files(tmp_path: Path) -> None:
    done = wirestack("read", str(ROOT / "captures" / "smtp.pcapng"), "--packet", "1", "--json", str(tmp_path / "x"))
    assert "takes no --json" in _one_line_error(done)
    assert not (tmp_path / "x").exists()


def test_packet_without_scapy_is_one_line(tmp_path: Path) -> None:
    """A Python that cannot import scapy (here: a broken one first on the path): one line, exit 2; the report
    itself still reads."""
    broken = tmp_path / "scapy"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('no scapy in this Python', name='scapy')\n")
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    capture = str(ROOT / "captures" / "smtp.pcapng")
    done = subprocess.run([sys.executable, "-m", "wirestack", "read", capture, "--packet", "1"], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=60)
    assert "--packet decodes with scapy, which this Python cannot import (scapy)" in _one_line_error(done)
    plain = subprocess.run([sys.executable, "-m", "wirestack", "read", capture], capture_output=True, text=True,
                           env={**os.environ, **env}, timeout=60)
    assert plain.returncode == 0 and "ConnectionRefusedError" in plain.stdout
