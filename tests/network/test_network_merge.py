"""`wirestack read CLIENT --peer SERVER`: two captures of one exchange, taken by tcpdump in two namespaces (the
client's link and the server's), one of them with its clock moved by a known offset. Checked against tshark on
both files: the packets matched are the ones both hold, the offset is the one applied (to within the link's
delay), and what the client sent that never reached the server is named, and nothing else."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from netlab import ROOT, SINK, captures, frames, nothing_left, python, serve  # noqa: F401  (autouse fixture)

from wirestack.labs.network import Topology, drop_frag_needed, three_hosts
from wirestack.labs.network.topology import CLIENT, SERVER

pytestmark = pytest.mark.capture
OFFSET_S = 5  # the server's clock, moved ahead
BULK = f'''
def main():
    s = socket.create_connection(({SERVER!r}, 5001), timeout=1.2)
    s.sendall(b"x" * 200000)
done(main)
'''


def shift(pcap: Path, seconds: int) -> None:
    """Move every timestamp of a classic pcap (tcpdump's) by SECONDS, in place."""
    data = bytearray(pcap.read_bytes())
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, cap, _ = struct.unpack_from(order + "IIII", data, pos)
        struct.pack_into(order + "I", data, pos, sec + seconds)
        pos += 16 + cap
    pcap.write_bytes(bytes(data))


def test_two_captures_of_a_black_hole(tmp_path: Path) -> None:
    with Topology(three_hosts(bottleneck=1000, firewall=drop_frag_needed())) as net:
        serve(net, "server", SINK, "5001")
        with captures(net, tmp_path, ("client", "client-eth0"), ("server", "server-eth0")) as pcap:
            python(net, "client", BULK)
    here, there = pcap["client-eth0"], pcap["server-eth0"]
    shift(there, OFFSET_S)
    done = subprocess.run([sys.executable, "-m", "wirestack", "read", str(here), "--peer", str(there), "--json", "-"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    (clock,) = [f for f in data["facts"] if f["kind"] == "merge.clock"]
    # tshark: the TCP packets of the server's capture are exactly those matched (the client's link sees them all)
    server_tcp = [f for f in frames(there) if "tcp.srcport" in f]
    assert clock["matched"] == len(server_tcp) and clock["both_ways"]
    assert abs(clock["offset_ns"] - OFFSET_S * 10**9) < 5_000_000  # within 5 ms: the link's delay is µs
    assert 0 <= clock["delay_ns"] < 5_000_000
    unseen = {f["direction"]: f for f in data["facts"] if f["kind"] == "merge.unseen"}
    assert set(unseen) == {"to the peer"}  # the server sent nothing the client did not get
    client_rows = frames(here)
    lost = [i + 1 for i, f in enumerate(client_rows) if f.get("ip.src") == CLIENT and int(f.get("ip.len", 0)) > 1000]
    assert lost and sorted(unseen["to the peer"]["packets"]) == lost[:64]  # the full-size segments, and only they
    assert unseen["to the peer"]["count"] == len(lost)
    text = subprocess.run([sys.executable, "-m", "wirestack", "read", str(here), "--peer", str(there), "--no-color"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "never appeared in the peer's capture" in " ".join(text.stdout.split())


def test_a_peer_file_with_nothing_in_common(tmp_path: Path) -> None:
    """A peer capture of another exchange: a note, no clock, exit 0; a peer that is no capture: one line, 2."""
    from pcaps import pcap, tcp

    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    a.write_bytes(pcap([tcp(0, ("127.0.0.1", 40000), ("127.0.0.1", 25), "S", 100)]))
    b.write_bytes(pcap([tcp(0, ("127.0.0.1", 40001), ("127.0.0.1", 80), "S", 7)]))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "wirestack", "read", str(a), "--peer", str(b), "--json", "-"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert not [f for f in data["facts"] if f["kind"].startswith("merge.")]
    assert any("holds none of this capture's packets" in n for n in data["notes"])
    (tmp_path / "junk").write_bytes(b"not a capture")
    bad = subprocess.run([sys.executable, "-m", "wirestack", "read", str(a), "--peer", str(tmp_path / "junk")],
                         capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1 and "Traceback" not in bad.stderr
