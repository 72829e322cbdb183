"""What the network tests share: captures with tcpdump inside a host, reading them with tshark, running a plain
Python client or server inside a host, and a check that a test leaves nothing behind.

(A helper module, not a conftest.py: tests/conftest.py is imported as `conftest` by the tests beside it, and a
second conftest.py without a package would take that name.)
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from wirestack.labs.network.topology import HOLDER_MARK, Topology

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
RECORD = os.environ.get("WIRESTACK_NETLAB_RECORD")  # a file: each test appends its measurements as a JSON line

FIELDS = ("frame.time_relative", "frame.len", "eth.src", "eth.dst", "arp.opcode", "arp.src.proto_ipv4",
          "arp.dst.proto_ipv4", "ip.src", "ip.dst", "ip.ttl", "ip.proto", "ip.len", "ip.flags.df", "ip.flags.mf",
          "ip.frag_offset", "ipv6.src", "ipv6.dst", "icmp.type", "icmp.code", "icmp.mtu", "icmpv6.type",
          "icmpv6.code", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.flags.syn", "tcp.flags.ack",
          "tcp.flags.reset", "tcp.len", "tcp.options.mss_val", "udp.srcport", "udp.dstport", "dns.id",
          "dns.qry.name", "dns.qry.type", "dns.flags.response", "dns.flags.rcode")

# Run by the client and server scripts (python -I -S: stdlib only, like a user's own program).
PRELUDE = r'''
import errno, json, socket, struct, sys, time
def done(fn):
    start, out = time.monotonic(), {}
    try:
        out["value"] = fn()
    except BaseException as exc:
        out.update(exception=type(exc).__name__, errno=getattr(exc, "errno", None), message=str(exc))
    out["seconds"] = round(time.monotonic() - start, 3)
    print(json.dumps(out), flush=True)
'''

# A TCP server on argv[1]: prints `ready`, then `peer ADDRESS PORT` per connection; reads to EOF and answers
# with the byte count.
SINK = PRELUDE + r'''
import threading
server = socket.create_server(("", int(sys.argv[1])), family=socket.AF_INET6, dualstack_ipv6=True)
print("ready", flush=True)
def serve(conn):
    with conn:
        n = 0
        while data := conn.recv(65536):
            n += len(data)
        conn.sendall(str(n).encode())
while True:
    conn, peer = server.accept()
    print("peer", peer[0].removeprefix("::ffff:"), peer[1], flush=True)
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
'''

# A UDP server on argv[1]: prints `ready`, then `got LENGTH ADDRESS` per datagram.
UDP_SINK = PRELUDE + r'''
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = sock.recvfrom(65536)
    print("got", len(data), peer[0], flush=True)
'''


def default_sigint() -> None:
    """preexec_fn of a process a test will interrupt: SIGINT's default disposition. A CI runner may start the suite
    with SIGINT ignored (an asynchronous command of a non-interactive shell is), which every child inherits,
    and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def python(net: Topology, host: str, code: str, timeout: float = 15) -> dict[str, Any]:
    """Run PRELUDE + CODE with plain python inside HOST; CODE ends with done(main). Its JSON line."""
    proc = net.run(host, [PYTHON, "-I", "-S", "-c", PRELUDE + code], stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"the program in {host} ran longer than {timeout} s") from None
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"no result from {host}: {err.strip()[-2000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def serve(net: Topology, host: str, code: str, *args: str) -> subprocess.Popen[str]:
    """Start a server script inside HOST and wait (5 s at most) for its `ready` line."""
    proc = net.run(host, [PYTHON, "-I", "-S", "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, text=True)
    assert proc.stdout
    first = _line(proc, 5.0)
    assert first.startswith("ready"), f"server in {host} did not start: {first!r}"
    return proc


def dns_server(net: Topology, mode: str, bind: str, *extra: str) -> subprocess.Popen[str]:
    proc = net.run("server", [PYTHON, "-m", "wirestack.labs.network.dns", "--mode", mode, "--bind", bind, *extra],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    first = _line(proc, 5.0)
    assert first == "ready 53", f"dns server did not start: {first!r}"
    return proc


def _line(proc: subprocess.Popen[str], seconds: float) -> str:
    assert proc.stdout
    if select.select([proc.stdout], [], [], seconds)[0]:
        return proc.stdout.readline().strip()
    return ""


def lines_until_quiet(proc: subprocess.Popen[str], seconds: float = 0.5, limit: float = 5.0) -> list[str]:
    """The lines PROC prints until it is quiet for SECONDS (LIMIT seconds at most)."""
    out, deadline = [], time.monotonic() + limit
    while time.monotonic() < deadline and (line := _line(proc, seconds)):
        out.append(line)
    return out


@contextmanager
def capture(net: Topology, host: str, interface: str, path: Path) -> Iterator[Path]:
    """tcpdump -i INTERFACE -w PATH -U inside HOST while the block runs. Waits until it is listening; afterwards
    stops it with SIGINT and checks that the kernel dropped nothing."""
    # -Z root: tcpdump would otherwise drop to user tcpdump before opening PATH; --immediate-mode: no 1 s
    # buffering, so nothing sent just before the stop is lost.
    proc = net.run(host, ["tcpdump", "-n", "-i", interface, "-w", str(path), "-U", "--immediate-mode", "-Z", "root"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr
    deadline, said = time.monotonic() + 5, ""
    while "listening on" not in said:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stderr], [], [], left)[0]:
            proc.kill()
            raise AssertionError(f"tcpdump in {host} on {interface} did not start: {said.strip()}")
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"tcpdump in {host} on {interface} exited: {said.strip()}")
        said += line
    try:
        yield path
    finally:
        time.sleep(0.05)  # the last frames of the block reach the socket
        proc.send_signal(signal.SIGINT)
        try:
            rest = proc.communicate(timeout=5)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            rest = proc.communicate()[1]
        assert re.search(r"^0 packets dropped by kernel", rest, re.M), rest


@contextmanager
def captures(net: Topology, tmp: Path, *where: tuple[str, str]) -> Iterator[dict[str, Path]]:
    """Several captures at once: {interface: pcap path} for each (host, interface)."""
    with ExitStack() as stack:
        yield {iface: stack.enter_context(capture(net, host, iface, tmp / f"{iface}.pcap")) for host, iface in where}


def frames(path: Path, display_filter: str = "") -> list[dict[str, str]]:
    """Each frame of PATH (matching DISPLAY_FILTER) as {field: first value} for FIELDS, via tshark."""
    cmd = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for name in FIELDS:
        cmd += ["-e", name]
    if display_filter:
        cmd += ["-Y", display_filter]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return [{k: v for k, v in zip(FIELDS, line.split("\t"), strict=True) if v}
            for line in done.stdout.splitlines()]


def times(rows: Sequence[dict[str, str]]) -> list[float]:
    return [round(float(r["frame.time_relative"]), 3) for r in rows]


def record(name: str, **facts: Any) -> None:
    """Keep what a scenario measured (WIRESTACK_NETLAB_RECORD=FILE) for the reference table."""
    if RECORD:
        with open(RECORD, "a") as f:
            f.write(json.dumps({"scenario": name, **facts}) + "\n")


def holders() -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if HOLDER_MARK.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.add(int(entry))
            except OSError:
                continue
    return found


def _state() -> tuple[set[str], str]:
    names = {line.split(": ")[1].split("@")[0] for line in
             subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=10).stdout.splitlines()}
    nft = shutil.which("nft")
    tables = subprocess.run([nft, "list", "tables"], capture_output=True, text=True, timeout=10).stdout if nft else ""
    return names, tables


@pytest.fixture(autouse=True)
def nothing_left() -> Iterator[None]:
    """No helper process, interface or nft table of a topology outlives its test (checked in the caller's
    namespace: the topology's own never had one there)."""
    root = os.geteuid() == 0
    before = _state() if root else None
    held = holders()
    yield
    deadline = time.monotonic() + 2
    while (left := holders() - held) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not left, f"helper processes left running: {sorted(left)}"
    if before is not None:
        assert _state() == before, "the machine's interfaces or nft tables changed"
