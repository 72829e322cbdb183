"""Under sudo, root's capture shows only the connections the program's own processes opened or accepted.

A program running as nobody reads another process's loopback connection from /proc/net/tcp and sends records
that claim it (an accept and a recv on that 4-tuple). The kernel layer shows no process of the run opening or
accepting that connection: its packets, which carry a password, stay out of the user's capture (checked with
tshark on the written pcapng), and a note says a connection was left out. The program's own connection stays.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wirestack

from wirestack.core.admission import Evidence, program_tasks, refused_flows
from wirestack.core.pairing import align
from wirestack.model import Call, KernelEvent, Packet

PASSWORD = b"hunter2-the-victims-password"
SYSTEM_PYTHON = "/usr/bin/python3"

FORGER = r'''
import marshal, os, socket, sys, time
victim_port, own_port = int(sys.argv[1]), int(sys.argv[2])

def tuples():
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        (lh, lp), (rh, rp) = [(h, int(p, 16)) for h, p in (x.split(":") for x in (local, remote))]
        if state == "01" and rp == victim_port:  # ESTABLISHED, the victim's client side
            yield lp, rp

# the program's own, honest connection
own = socket.create_connection(("127.0.0.1", own_port))
own.sendall(b"mine")
own.close()
client_port = next(tuples())[0]
now = time.time_ns()
serial = 99999
items = [("socket", serial, "AF_INET", "SOCK_STREAM"),
         ("call", 900001, "accept", "MainThread", os.getpid(), now - 10**9, now, (), serial, None,
          ("127.0.0.1", victim_port), ("127.0.0.1", client_port), {}, None, os.getpid()),
         ("call", 900002, "recv", "MainThread", os.getpid(), now - 10**9, now + 3 * 10**9, (), serial, None,
          ("127.0.0.1", victim_port), ("127.0.0.1", client_port), {"bufsize": 4096}, 64, os.getpid())]
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(os.environ["WIRESTACK_RECORDS"])
s.send(marshal.dumps(items))
s.close()
time.sleep(1.5)  # while the victim keeps talking
print("forged", client_port, flush=True)
'''


@pytest.fixture
def victim() -> Iterator[int]:
    """Another program's loopback connection, exchanging a password every 50 ms (root's, not traced)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while not stop.is_set():
                try:
                    conn.recv(4096)
                except OSError:
                    return

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client = socket.create_connection(("127.0.0.1", port))

    def talk() -> None:
        while not stop.is_set():
            try:
                client.sendall(PASSWORD)
            except OSError:
                return
            time.sleep(0.05)

    threading.Thread(target=talk, daemon=True).start()
    try:
        yield port
    finally:
        stop.set()
        client.close()
        server.close()


@pytest.mark.capture
def test_a_forged_record_does_not_bring_another_programs_connection_into_the_capture(victim: int) -> None:
    assert os.access(SYSTEM_PYTHON, os.X_OK), "a system python that the unprivileged user can run"
    sink = socket.create_server(("127.0.0.1", 0))
    own_port = sink.getsockname()[1]
    threading.Thread(target=lambda: [sink.accept()[0].recv(16) for _ in range(1)], daemon=True).start()
    shared = Path(tempfile.mkdtemp(prefix="wirestack-forge-"))
    try:
        shared.chmod(0o777)
        script = shared / "forger.py"
        script.write_text(FORGER)
        script.chmod(0o644)
        done = wirestack("run", "--python", SYSTEM_PYTHON, "--json", str(shared / "f.json"), "-w",
                         str(shared / "f.pcapng"), str(script), str(victim), str(own_port),
                         env={"SUDO_UID": "65534", "SUDO_GID": "65534"}, cwd=shared)
        assert done.returncode == 0, done.stderr
        assert "forged" in done.stdout
        tshark = shutil.which("tshark")
        assert tshark
        rows = subprocess.run([tshark, "-r", str(shared / "f.pcapng"), "-T", "fields", "-e", "tcp.srcport",
                               "-e", "tcp.dstport", "-e", "tcp.payload"], capture_output=True, text=True,
                              check=True).stdout.splitlines()
        assert rows, "the program's own connection was captured"
        assert all(str(victim) not in r.split("\t")[:2] for r in rows)  # nothing of the victim's connection
        assert PASSWORD.hex() not in (shared / "f.pcapng").read_bytes().hex()
        assert any(r.split("\t")[1] == str(own_port) for r in rows)  # the program's own connection stays
        data = json.loads((shared / "f.json").read_text())
        assert any("left out" in n and f":{victim}" in n for n in data["notes"]), data["notes"]
    finally:
        sink.close()
        shutil.rmtree(shared, ignore_errors=True)


# -- the rules, on hand-made events ------------------------------------------------------------------------------

def _state(i: int, t: int, tid: int, pid: int, old: str, new: str, sport: int, dport: int) -> KernelEvent:
    return KernelEvent(i, t, "inet_sock_set_state", tid, {"family": "AF_INET", "protocol": "IPPROTO_TCP",
                                                         "sport": str(sport), "dport": str(dport),
                                                         "saddr": "127.0.0.1", "daddr": "127.0.0.1",
                                                         "oldstate": old, "newstate": new}, pid)


def _tcp(pid: int, t: int, sport: int, dport: int, flags: str, seq: int = 1, ack: int = 0) -> Packet:
    return Packet(pid, t, "TCP", "127.0.0.1", "127.0.0.1", sport, dport, flags, seq, ack)


def _call(cid: int, op: str, t0: int, t1: int, local: int, remote: int) -> Call:
    return Call(cid, op, "MainThread", t0, t1, (), 1, "AF_INET", "SOCK_STREAM", None, ("127.0.0.1", local),
                ("127.0.0.1", remote), {}, None, 100, 100)


def test_tasks_are_the_run_and_what_it_forked() -> None:
    fork = [KernelEvent(1, 10, "sched_process_fork", 100, {"pid": "100", "child_pid": "101"}, 100),
            KernelEvent(2, 20, "sched_process_fork", 101, {"pid": "101", "child_pid": "102"}, 101),
            KernelEvent(3, 30, "sched_process_fork", 500, {"pid": "500", "child_pid": "501"}, 500)]
    assert program_tasks(fork, 100) == {100, 101, 102}


def test_a_connect_the_kernel_saw_is_admitted_and_a_claimed_one_is_not() -> None:
    ms = 1_000_000
    packets = [_tcp(1, 10 * ms, 40000, 80, "S", 7), _tcp(2, 10 * ms + 1000, 80, 40000, "SA", 9, 8),
               _tcp(3, 20 * ms, 41000, 81, "S", 7), _tcp(4, 20 * ms + 1000, 81, 41000, "SA", 9, 8)]
    calls = [_call(1, "connect", 9 * ms, 11 * ms, 40000, 80), _call(2, "connect", 19 * ms, 21 * ms, 41000, 81)]
    alignment = align(calls, packets)
    events = [_state(1, 10 * ms - 5000, 100, 100, "TCP_CLOSE", "TCP_SYN_SENT", 0, 80),  # ours
              _state(2, 20 * ms - 5000, 777, 777, "TCP_CLOSE", "TCP_SYN_SENT", 0, 81)]  # another process's
    evidence = Evidence.of(events, {100})
    refused = refused_flows(alignment.flows, alignment, packets, evidence)
    assert [alignment.flows.flows[f - 1].b for f in refused] == [("127.0.0.1", 81)]


def test_an_accepted_connection_needs_our_listen_and_our_accept() -> None:
    ms = 1_000_000
    packets = [_tcp(1, 10 * ms, 40000, 80, "S", 7), _tcp(2, 10 * ms + 1000, 80, 40000, "SA", 9, 8)]
    calls = [_call(1, "accept", 9 * ms, 11 * ms, 80, 40000)]
    alignment = align(calls, packets)
    listen = _state(1, 1 * ms, 100, 100, "TCP_CLOSE", "TCP_LISTEN", 80, 0)
    accepted = KernelEvent(2, 11 * ms, "sys_exit_accept4", 100, {"ret": "5"}, 100)
    ok = Evidence.of([listen, accepted], {100})
    assert refused_flows(alignment.flows, alignment, packets, ok) == []
    someone_elses = Evidence.of([listen, accepted], {200})
    assert len(refused_flows(alignment.flows, alignment, packets, someone_elses)) == 1
