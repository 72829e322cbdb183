"""The kernel layer: tracefs events parsed, paired and shown; instances never left behind."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import CLIENT, SERVER, T0, US, call, tcp
from conftest import run_json, wirestack

from wirestack.core.kernel import link, select
from wirestack.core.pairing import align
from wirestack.output.text import describe_event as describe
from wirestack.record import tracefs
from wirestack.record.tracefs import parse

SAMPLE = """\
# tracer: nop
         python3-31181   [001] ..... 1700000000.000010: sys_connect(fd: 3, uservaddr: 0x7ffd, addrlen: 0x10)
         python3-31181   [001] ..... 1700000000.000012: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP \
sport=0 dport=464 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 \
oldstate=TCP_CLOSE newstate=TCP_SYN_SENT
         python3-31181   [001] .Ns1. 1700000000.000020: tcp_send_reset: skbaddr=00000000efe66a2c \
skaddr=0000000000000000 src=127.0.0.1:464 dest=127.0.0.1:40000 state=UNKNOWN reason=NO_SOCKET
         python3-31181   [001] .Ns1. 1700000000.000021: kfree_skb: skbaddr=00000000efe66a2c rx_sk=0000000000000000 \
protocol=2048 location=tcp_v4_rcv+0x91/0x13f0 reason: NO_SOCKET
         python3-31181   [001] .N... 1700000000.000030: inet_sk_error_report: family=AF_INET protocol=IPPROTO_TCP \
sport=40000 dport=464 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 error=111
         python3-31181   [001] .N... 1700000000.000031: inet_sk_error_report: family=AF_INET protocol=IPPROTO_TCP \
sport=40000 dport=0 saddr=0.0.0.0 daddr=127.0.0.1 saddrv6=::ffff:0.0.0.0 daddrv6=::ffff:127.0.0.1 error=0
         python3-31181   [001] .N... 1700000000.000032: sys_connect -> 0xffffffffffffff91
         othercmd-999    [000] ..... 1700000000.000033: sys_connect(fd: 7, uservaddr: 0x1, addrlen: 0x10)
"""


def test_parse_moves_tai_to_realtime_and_reads_fields() -> None:
    events = parse(SAMPLE, offset_ns=37_000_000_000)
    assert [e.event for e in events] == ["sys_enter_connect", "inet_sock_set_state", "tcp_send_reset", "kfree_skb",
                                         "inet_sk_error_report", "inet_sk_error_report", "sys_exit_connect",
                                         "sys_enter_connect"]
    assert events[0].time_ns == 1_700_000_000_000_010_000 - 37_000_000_000 and events[0].tid == 31181
    assert events[0].fields["fd"] == "3"
    assert events[3].fields["reason"] == "NO_SOCKET" and events[3].fields["location"].startswith("tcp_v4_rcv")
    assert events[6].fields == {"ret": "-111"}
    assert describe(events[6]) == "syscall connect returns -111 (-ECONNREFUSED)"


def test_events_pair_with_the_call_and_the_packets_they_concern() -> None:
    events = parse(SAMPLE, offset_ns=1_700_000_000_000_000_000 - T0)  # put them on the builders' clock
    calls = [call(1, "connect", 0, 40, errno=111, pid=31181, tid=31181)]
    packets = [tcp(1, 15, CLIENT, SERVER, "S", seq=1), tcp(2, 22, SERVER, CLIENT, "RA", ack=2)]
    kept = select(events, calls, packets)
    names = [e.event for e in kept]
    # the other process's syscall is left out; so is the error report that only clears the error (error=0, a
    # 4-tuple of no traced flow), which the kernel layer also filters in the kernel
    assert names == ["sys_enter_connect", "inet_sock_set_state", "tcp_send_reset", "kfree_skb",
                     "inet_sk_error_report", "sys_exit_connect"]
    view = link(kept, calls, packets, align(calls, packets))
    assert all(view.links[e.id].call == 1 for e in kept)
    reset = kept[names.index("tcp_send_reset")]
    drop = kept[names.index("kfree_skb")]
    assert view.links[reset.id].packets == (2,) and view.links[drop.id].packets == (1,)
    assert link([], calls, packets, align(calls, packets)).links == {}
    assert T0 + 10 * US < kept[0].time_ns + 1  # sanity: on the same clock


@pytest.fixture
def global_tracing() -> Iterator[None]:
    """Nothing global may change: the same settings after the test (seen from the initial mount namespace, where
    tracefs is mounted or not as before: wirestack mounts it only in a private one), and no instance left."""
    names = ("set_event", "tracing_on", "trace_clock", "current_tracer", "set_event_pid", "buffer_size_kb")

    def snapshot() -> dict[str, str]:
        mounts = Path("/proc/1/mounts").read_text()  # the initial namespace's mount table
        out = {"mounted": str(any(line.split()[2:3] == ["tracefs"] for line in mounts.splitlines()))}
        if (tracefs.MOUNT / "set_event").exists():
            out.update({n: (tracefs.MOUNT / n).read_text() for n in names if (tracefs.MOUNT / n).exists()})
        return out

    mounted_before = snapshot()["mounted"]
    tracefs._ensure_mounted()  # the kernel's settings, seen through a private mount when there is no global one
    before = {**snapshot(), "mounted": mounted_before}
    yield
    # wirestack runs of other processes may be under way; none of a finished process may be left
    left = [n for n in tracefs.instances() if not Path(f"/proc/{n.split('-')[1]}").exists()]
    assert left == []
    assert snapshot() == before


@pytest.mark.capture
def test_smtp_kernel_layer(workdir: Path, global_tracing: None) -> None:
    data = run_json("smtp", "--no-pcap")
    assert data["kernel_off"] is None
    connect = next(c for c in data["calls"] if c["op"] == "connect")
    mine = [k for k in data["kernel"] if k["call"] == connect["id"]]
    states = [(k["fields"]["oldstate"], k["fields"]["newstate"]) for k in mine if k["event"] == "inet_sock_set_state"]
    assert ("TCP_CLOSE", "TCP_SYN_SENT") in states and ("TCP_SYN_SENT", "TCP_CLOSE") in states
    reset = next(k for k in mine if k["event"] == "tcp_send_reset")
    assert reset["fields"]["reason"] == "NO_SOCKET"
    rst = next(p for p in data["packets"] if p["flags"] == "RA")
    assert reset["packets"] == [rst["id"]]
    assert any(k["event"] == "inet_sk_error_report" and k["fields"]["error"] == "111" for k in mine)
    assert any(k["event"] == "sys_exit_connect" and k["fields"]["ret"] == "-111" for k in mine)
    times = [k["time_ns"] for k in mine]
    assert connect["start_ns"] - 50_000_000 <= min(times) and max(times) <= connect["end_ns"] + 50_000_000
    texts = " ".join(f["text"] for f in data["facts"])
    assert "tcp_send_reset reason NO_SOCKET" in texts
    assert any(f["kind"] == "kernel.states" and f["states"] == ["CLOSE", "SYN_SENT", "CLOSE"] for f in data["facts"])


@pytest.mark.capture
def test_udp_kernel_layer_shows_icmp_send(workdir: Path, global_tracing: None) -> None:
    target = Path(__file__).parent / "targets" / "udp_refused.py"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = wirestack("run", "--json", "k.json", "--no-pcap", str(target), str(port))
    assert done.returncode == 1, done.stderr
    data = json.loads((workdir / "k.json").read_text())
    icmp = next(k for k in data["kernel"] if k["event"] == "icmp_send")
    assert (icmp["fields"]["type"], icmp["fields"]["code"], icmp["fields"]["dport"]) == ("3", "3", str(port))
    icmp_packet = next(p for p in data["packets"] if p["proto"] == "ICMP")
    assert icmp["packets"] == [icmp_packet["id"]]
    # data syscalls are not traced (their return is the call's own result); what the kernel did is: the ICMP
    # error set ECONNREFUSED on the socket (while the send ran: on loopback the ICMP comes back at once), and
    # the recv raised it later
    send = next(c for c in data["calls"] if c["op"] == "send")
    recv = next(c for c in data["calls"] if c["op"] == "recv")
    assert recv["fault"]["namespace"] == "errno" and recv["fault"]["code"] == 111
    assert not any(k["event"].startswith(("sys_enter_", "sys_exit_")) and k["event"].split("_", 2)[2]
                   not in ("connect", "accept", "accept4", "close") for k in data["kernel"])
    report = next(k for k in data["kernel"] if k["event"] == "inet_sk_error_report")
    assert (report["fields"]["error"], report["fields"]["dport"], report["call"]) == ("111", str(port), send["id"])


@pytest.mark.capture
def test_timeout_shows_syn_retransmissions(workdir: Path, global_tracing: None) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue: later SYNs are dropped, so the client retransmits
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.2)
    try:
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2.5)"
        done = wirestack("run", "--json", "t.json", "--no-pcap", "-c", code)
        data = json.loads((workdir / "t.json").read_text())
    finally:
        for s in fillers:
            s.close()
        server.close()
    assert done.returncode == 1
    assert data["exception"]["type"] in ("TimeoutError", "socket.timeout")
    retrans = [k for k in data["kernel"] if k["event"] == "tcp_retransmit_skb"]
    assert retrans and all(k["packets"] for k in retrans)
    syns = [p for p in data["packets"] if p["flags"] == "S"]
    assert len(syns) >= 2 and {i for k in retrans for i in k["packets"]} <= {p["id"] for p in syns}


@pytest.mark.capture
def test_no_kernel_flag_and_interrupt_leave_nothing(workdir: Path, global_tracing: None) -> None:
    data = run_json("smtp", "--no-pcap", "--no-kernel")
    assert data["kernel"] == [] and data["kernel_off"] == "kernel layer off: --no-kernel"


def test_without_root_the_kernel_layer_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracefs.os, "geteuid", lambda: 1000)
    with pytest.raises(tracefs.KernelOff, match="kernel layer off: reading tracepoints needs root"):
        tracefs.Recorder.start()


def test_quiet_drops_are_filtered_by_this_kernels_numbers(tmp_path: Path) -> None:
    fmt = tmp_path / "events" / "skb" / "kfree_skb"
    fmt.mkdir(parents=True)
    fmt.joinpath("format").write_text('print fmt: "reason: %s", __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, '
                                      '{ 3, "NO_SOCKET" }, { 7, "SOCKET_RCVBUFF" }, { 9, "PROTO_MEM" })')
    assert tracefs._drop_filter(tmp_path) == "reason != 2 && reason != 7 && reason != 9"
    fmt.joinpath("format").write_text("print fmt: no reasons here")
    assert tracefs._drop_filter(tmp_path) == "0"


@pytest.mark.capture
def test_the_trace_keeps_the_error_a_refused_connect_sets_not_its_clearing(global_tracing: None) -> None:
    # recorded as wirestack records (the filters are in the kernel): the ECONNREFUSED report is there, the
    # report of the error being cleared (error=0, one per failed connect) is not
    with socket.socket() as gone:
        gone.bind(("127.0.0.1", 0))
        port = gone.getsockname()[1]
    rec = tracefs.Recorder.start(sys.executable)
    try:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) == 111
    finally:
        text, _ = rec.stop()
    reports = [line for line in text.splitlines() if "inet_sk_error_report:" in line and f"dport={port}" in line]
    assert reports and all(line.endswith("error=111") for line in reports)
    assert not any("inet_sk_error_report:" in line and line.endswith("error=0") for line in text.splitlines())
