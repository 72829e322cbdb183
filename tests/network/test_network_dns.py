"""The DNS server's wire format and its command line, on loopback: no namespace, no privilege."""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest
from netlab import ROOT, nothing_left  # noqa: F401 (autouse fixture)

from wirestack.labs.network.dns import Query, parse, reply, resolv_conf


def query(name: str, qtype: int = 1, ident: int = 0x1234) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", qtype, 1)


def test_parse() -> None:
    q = parse(query("Name.Example", 28))
    assert (q.id, q.name, q.qtype, q.type_name(), q.qclass) == (0x1234, "name.example", 28, "AAAA", 1)
    for bad in (b"short", query("x")[:-2], struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0)):
        with pytest.raises(ValueError):
            parse(bad)


@pytest.mark.parametrize("mode, rcode", [("answer", 0), ("nxdomain", 3), ("servfail", 2), ("refused", 5)])
def test_reply_codes(mode: str, rcode: int) -> None:
    q = parse(query("name.example"))
    data = reply(q, mode, a=["198.51.100.10", "198.51.100.11"])
    assert data is not None
    ident, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", data)
    assert (ident, flags & 0x8000, flags & 0x0100, flags & 0xF, qd) == (0x1234, 0x8000, 0x0100, rcode, 1)
    assert an == (2 if mode == "answer" else 0) and (ns, ar) == (0, 0)
    assert data[12:12 + len(q.question)] == q.question


def test_answer_records() -> None:
    q = parse(query("name.example", 28))
    data = reply(q, "answer", a=["198.51.100.10"], aaaa=["2001:db8:2::10"], ttl=30)
    assert data is not None
    record = data[12 + len(q.question):]
    pointer, rtype, rclass, ttl, size = struct.unpack_from("!HHHIH", record)
    assert (pointer, rtype, rclass, ttl, size) == (0xC00C, 28, 1, 30, 16)
    assert socket.inet_ntop(socket.AF_INET6, record[12:28]) == "2001:db8:2::10"
    assert struct.unpack_from("!H", reply(parse(query("name.example", 15)), "answer", a=["1.2.3.4"]) or b"",
                              6) == (0,)  # NODATA for other types
    names = reply(q, "answer", aaaa=["2001:db8:2::10"], names=["other.example"]) or b""
    assert struct.unpack_from("!H", names, 2)[0] & 0xF == 3  # not ours: NXDOMAIN


def test_silent_gives_nothing() -> None:
    assert reply(Query(1, 0x0100, "x", 1, 1, b""), "silent") is None


def test_resolv_conf() -> None:
    assert resolv_conf(["198.51.100.53"]) == "nameserver 198.51.100.53\noptions timeout:1 attempts:2\n"
    assert resolv_conf(["198.51.100.53", "2001:db8:2::53"], timeout=2, attempts=1, search=["example"],
                       options=["single-request"]).splitlines() == [
        "nameserver 198.51.100.53", "nameserver 2001:db8:2::53", "search example",
        "options timeout:2 attempts:1 single-request"]


def server(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-m", "wirestack.labs.network.dns", "--bind", "127.0.0.1", "--port",
                             "0", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout and select.select([proc.stdout], [], [], 5)[0]
    word, port = proc.stdout.readline().split()
    assert word == "ready"
    return proc, int(port)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(5)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream:
            stream.close()


def ask(port: int, data: bytes, timeout: float = 2) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        try:
            return s.recv(4096)
        except TimeoutError:
            return None


def test_cli_answers_logs_and_exits_when_stdin_closes() -> None:
    proc, port = server("--a", "198.51.100.10", "--log")
    try:
        answer = ask(port, query("name.example"))
        assert answer and answer[-4:] == socket.inet_aton("198.51.100.10")
        assert proc.stdout and proc.stdout.readline().split()[2:] == ["4660", "name.example", "A", "answer"]
        assert proc.stdin
        proc.stdin.close()
        assert proc.wait(3) == 0
    finally:
        stop(proc)


@pytest.mark.parametrize("mode", ["silent", "nxdomain"])
def test_cli_exits_on_sigterm(mode: str) -> None:
    proc, port = server("--mode", mode)
    try:
        answer = ask(port, query("name.example"), timeout=0.3)
        assert (answer is None) == (mode == "silent")
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(3) == 0 and time.monotonic() - start < 1
    finally:
        stop(proc)


def test_cli_refuses_a_taken_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        done = subprocess.run([sys.executable, "-m", "wirestack.labs.network.dns", "--bind", "127.0.0.1", "--port",
                               str(taken.getsockname()[1])], capture_output=True, text=True, timeout=10,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1 and done.stderr.startswith("dns: cannot serve on 127.0.0.1:")
