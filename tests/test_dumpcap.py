"""Capture through dumpcap (`record.dumpcap`): the raw socket's promises kept by a real, setcap'd dumpcap, run by an
unprivileged member of the `wireshark` group, as Debian's wireshark-common sets it up for lab machines.

The system's dumpcap is left alone: a copy in a root-owned folder gets the group and the file capabilities, and the
user, the copy and (when this test made it) the group are removed afterwards.
"""

from __future__ import annotations

import grp
import importlib
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from wirestack.formats import pcapng
from wirestack.record.capture import CaptureError
from wirestack.record.dumpcap import PcapngStream
from wirestack.record.source import file_capabilities

SYSTEM_PYTHON = "/usr/bin/python3"
GROUP = "wireshark"
TARGETS = Path(__file__).parent / "targets"


@dataclass
class Member:
    """An unprivileged user in the wireshark group, and how to run the system Python as that user with a
    world-readable copy of this checkout's wirestack."""

    name: str
    folder: Path
    dumpcap: Path
    python: list[str]

    def run(self, code: str, timeout: float = 120) -> dict[str, Any]:
        done = subprocess.run([*self.python, "-c", code], capture_output=True, text=True, timeout=timeout,
                              cwd=self.folder / "work")
        assert done.returncode == 0, done.stderr
        data: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        return data

    def wirestack(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.python, "-m", "wirestack", *args], capture_output=True, text=True,
                              timeout=timeout, cwd=self.folder / "work")


def _copy_wirestack(lib: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "wirestack", lib / "wirestack", ignore=ignore)
    for name in ("rich", "pygments", "markdown_it", "mdurl", "aiosmtpd", "public", "attr", "attrs"):
        module = importlib.import_module(name)
        assert module.__file__
        shutil.copytree(Path(module.__file__).parent, lib / name, ignore=ignore)


@pytest.fixture(scope="module")
def member() -> Iterator[Member]:
    for tool in ("useradd", "userdel", "groupadd", "setcap", "setpriv"):
        assert shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin"), f"{tool} is needed"
    system_dumpcap = shutil.which("dumpcap", path="/usr/bin:/usr/sbin")
    assert system_dumpcap, "dumpcap is needed (apt-get install wireshark-common; scripts/bootstrap installs tshark)"
    made_group = False
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", "--system", GROUP], check=True)
        made_group = True
    name = f"wsdc{random.randrange(10**6):06d}"
    subprocess.run(["useradd", "--no-create-home", "--no-user-group", "--gid", "nogroup", "--groups", GROUP,
                    "--shell", "/usr/sbin/nologin", name], check=True)
    folder = Path(tempfile.mkdtemp(prefix="wirestack-dumpcap-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        (folder / "bin").mkdir(mode=0o755)
        dumpcap = folder / "bin" / "dumpcap"
        shutil.copy(system_dumpcap, dumpcap)
        os.chown(dumpcap, 0, grp.getgrnam(GROUP).gr_gid)
        dumpcap.chmod(0o750)  # as wireshark-common installs it: root:wireshark, 0750, with capture capabilities
        subprocess.run(["setcap", "cap_net_raw,cap_net_admin+eip", str(dumpcap)], check=True)
        _copy_wirestack(folder / "lib")
        work = folder / "work"
        work.mkdir()
        for path in [folder / "lib", *(folder / "lib").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.chown(work, name)
        work.chmod(0o700)
        python = ["setpriv", f"--reuid={name}", "--regid=nogroup", "--init-groups", "--", "env", "-i",
                  f"PYTHONPATH={folder / 'lib'}", "LANG=C.UTF-8", f"PATH={folder / 'bin'}:/usr/bin:/bin",
                  f"HOME={work}", SYSTEM_PYTHON]
        yield Member(name, folder, dumpcap, python)
    finally:
        subprocess.run(["userdel", name], check=False)
        # the group goes if this test made it and no one else (a run of this test side by side) is in it now
        if made_group and not [m for m in _members(GROUP) if m != name]:
            subprocess.run(["groupdel", GROUP], check=False)
        shutil.rmtree(folder, ignore_errors=True)


def _members(group: str) -> list[str]:
    try:
        return list(grp.getgrnam(group).gr_mem)
    except KeyError:
        return []


@pytest.mark.capture
def test_the_member_may_capture_only_through_dumpcap(member: Member) -> None:
    data = member.run("import json; from wirestack.record import source as s; "
                      "print(json.dumps([s.can_capture_raw(), s.dumpcap_usable(), s.needs_namespace('auto'), "
                      "s.describe(s.choose_source('lo'))]))")
    assert data == [False, str(member.dumpcap), False, f"capture: dumpcap ({member.dumpcap}), reading its pcapng "
                                                        "from a pipe"]
    assert {12, 13} <= file_capabilities(str(member.dumpcap))  # cap_net_admin, cap_net_raw


BURST = r"""
import json, socket, time
from collections import Counter
from wirestack.core.dissect import dissect
from wirestack.record.source import choose_source

N, CONNECTS = {n}, {connects}
capture = choose_source("lo").open()
start = time.time_ns()
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("127.0.0.1", 0))
closed = socket.socket()
closed.bind(("127.0.0.1", 0))
refused_port = closed.getsockname()[1]
closed.close()
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:  # the first datagram right after open(): the barrier
    for i in range(N):
        out.sendto(b"burst-%08d" % i, sink.getsockname())
for _ in range(CONNECTS):
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", refused_port)) == 111
end = time.time_ns()
capture.drain()  # no sleep: everything the kernel put on lo before this call
frames = capture.take()
capture.stop()
packets = [dissect(i + 1, t, d, capture.linktype, n)
           for i, (t, n, d) in enumerate(zip(frames.times, frames.lengths, frames.data))]
burst = Counter(p.payload for p in packets if p.proto == "UDP" and p.dport == sink.getsockname()[1])
tcp = [p.flags for p in packets if p.proto == "TCP" and refused_port in (p.sport, p.dport)]
ours = [p for p in packets if p.payload in capture._own]  # this capture's own probes and marker (another
# wirestack's on the same loopback may be captured, and is data like any other)
times = [p.time_ns for p in packets if p.proto == "UDP" and p.dport == sink.getsockname()[1]]
print(json.dumps({{"distinct": len(burst), "copies": max(burst.values(), default=0), "tcp": Counter(tcp),
                  "own": len(ours), "dropped": capture.dropped, "received": capture.received,
                  "inside": all(start <= t <= end for t in times), "ordered": times == sorted(times),
                  "linktype": capture.linktype}}))
"""


@pytest.mark.capture
def test_a_burst_is_captured_completely_once_and_drained_without_waiting(member: Member) -> None:
    data = member.run(BURST.format(n=20_000, connects=200))
    assert data["distinct"] == 20_000 and data["copies"] == 1  # every datagram, none twice (loopback)
    assert data["tcp"] == {"S": 200, "RA": 200}
    assert data["own"] == 0  # the start probes and the drain marker are never kept
    assert data["dropped"] == 0 and data["received"] >= 20_400
    assert data["inside"] and data["ordered"] and data["linktype"] == 1  # kernel timestamps, in ns, Ethernet


@pytest.mark.capture
def test_run_as_the_member_captures_with_dumpcap_and_says_so(member: Member) -> None:
    shutil.copy(TARGETS / "whoami.py", member.folder / "work" / "whoami.py")
    port = str(_closed_port())
    done = member.wirestack("run", "--json", "r.json", "-w", "r.pcapng", "whoami.py", port)
    assert done.returncode == 0, done.stderr
    data = json.loads((member.folder / "work" / "r.json").read_text())
    assert [p["flags"] for p in data["packets"]] == ["S", "RA"]
    assert f"capture: dumpcap ({member.dumpcap}), reading its pcapng from a pipe" in data["notes"]
    assert data["kernel_off"].startswith("kernel layer off")
    tshark = subprocess.run(["tshark", "-r", str(member.folder / "work" / "r.pcapng"), "-T", "fields", "-e",
                             "tcp.flags.str"], capture_output=True, text=True, check=True)
    assert len(tshark.stdout.split("\n")) - 1 == 2
    forced = member.wirestack("run", "--capture", "netns", "--json", "n.json", "--no-pcap", "whoami.py", port)
    assert forced.returncode == 0, forced.stderr
    notes = json.loads((member.folder / "work" / "n.json").read_text())["notes"]
    assert any(n.startswith("capture: raw socket in a private user + network namespace") for n in notes)
    raw = member.wirestack("run", "--capture", "raw", "--no-pcap", "whoami.py", port)
    assert raw.returncode == 2 and "needs root or CAP_NET_RAW" in raw.stderr


# -- the pcapng stream, without capture ---------------------------------------------------------------------------


def _file(count: int) -> bytes:
    head = pcapng.section_header("test") + pcapng.interface_description(1, 262144, "lo")
    body = b"".join(pcapng.enhanced_packet(1_700_000_000_123_456_789 + i, bytes([i % 256]) * (60 + i % 7), 70 + i)
                    for i in range(count))
    return head + body


def test_stream_parses_blocks_split_anywhere() -> None:
    data = _file(200)
    stream, got = PcapngStream(), []
    pos = 0
    rng = random.Random(7)
    while pos < len(data):
        step = rng.randrange(1, 300)
        stream.feed(data[pos:pos + step])
        pos += step
        stream.blocks(lambda t, n, d: got.append((t, n, d)) is not None)
    assert [g[0] for g in got] == [1_700_000_000_123_456_789 + i for i in range(200)]
    assert all(n == 70 + i and d == bytes([i % 256]) * (60 + i % 7) for i, (_, n, d) in enumerate(got))
    assert stream.linktype == 1 and stream.pending() == 0


def test_stream_reads_microsecond_resolution_and_statistics() -> None:
    head = pcapng.section_header("test")
    idb = pcapng.block(pcapng.IDB, struct.pack("<HHI", 1, 0, 65535))  # no if_tsresol: microseconds
    epb = pcapng.block(pcapng.EPB, struct.pack("<IIIII", 0, 0, 1_000_001, 4, 4) + b"abcd")
    isb = pcapng.block(5, struct.pack("<III", 0, 0, 0) + pcapng.options([(4, struct.pack("<Q", 9)),
                                                                          (5, struct.pack("<Q", 3))]))
    stream, got = PcapngStream(), []
    stream.feed(head + idb + epb + isb)
    stream.blocks(lambda t, n, d: got.append(t) is not None)
    assert got == [1_000_001_000] and (stream.received, stream.dropped) == (9, 3)


def test_stream_refuses_what_is_not_pcapng() -> None:
    stream = PcapngStream()
    stream.feed(pcapng.section_header("x") + struct.pack("<II", 6, 7) + b"\0" * 16)
    with pytest.raises(CaptureError, match="not pcapng"):
        stream.blocks(lambda t, n, d: False)



@pytest.mark.capture
def test_shell_as_the_member_captures_with_dumpcap(member: Member) -> None:
    import pexpect

    port = _closed_port()
    child = pexpect.spawn(member.python[0], [*member.python[1:], "-m", "wirestack", "shell", "--no-color", "--width",
                                             "200", "-w", "s.pcapng"],
                          cwd=str(member.folder / "work"), encoding="utf-8", timeout=60, dimensions=(60, 200))
    child.expect_exact(">>> ")
    assert f"(dumpcap ({member.dumpcap}), reading its pcapng from a pipe)" in str(child.before)
    child.sendline(f"import socket; socket.socket().connect(('127.0.0.1', {port}))")
    child.expect_exact(">>> ")
    out = str(child.before)
    assert "ConnectionRefusedError" in out and f"\ncapture: dumpcap ({member.dumpcap})" in out  # in the header
    child.sendline("[p.flags for p in wire.packets]")
    child.expect_exact(">>> ")
    assert "['S', 'RA']" in str(child.before)
    child.sendeof()
    child.expect(pexpect.EOF)
    assert "wirestack: wrote s.pcapng (2 inputs, 2 packets)" in str(child.before)
    assert (member.folder / "work" / "s.pcapng").stat().st_size > 0


@pytest.mark.capture
def test_a_notebook_kernel_of_the_member_captures_with_dumpcap(member: Member) -> None:
    # the kernel's choice (wirestack.ipython), made as the member; IPython itself is not needed for it
    port = _closed_port()
    data = member.run(f"""
import json, socket, time
from wirestack.core.dissect import dissect
from wirestack.ipython import Cell, Session, _open_capture
session = Session()
session.capture, session.how = _open_capture("auto", "lo")
cell = Cell(1, "", time.time_ns())
socket.socket().connect_ex(("127.0.0.1", {port}))
session._drain(cell)
session.stop()
flags = [p.flags for p in (dissect(i + 1, t, d, 1, n) for i, (t, n, d) in
         enumerate(zip(cell.frames.times, cell.frames.lengths, cell.frames.data))) if {port} in (p.sport, p.dport)]
print(json.dumps([session.how, flags]))
""")
    assert data == [f"capture: dumpcap ({member.dumpcap}), reading its pcapng from a pipe", ["S", "RA"]]


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port
