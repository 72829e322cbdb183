"""Facts come from the data, on hand-built records: each class of error the reports made before has a case here
(the namespace of an error, which end did what when both are traced, wording that follows the kernel's reason,
joins on strong keys, the lessons a library failure shows). Pure: no capture."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from builders import (
    CLIENT,
    SEED_STACK,
    SERVER,
    T0,
    US,
    call,
    errno_fault,
    event,
    frames,
    icmp_unreachable,
    refused,
    tcp,
    timeout_fault,
    trace,
    udp,
)

from wirestack.core.errnos import name, parse_defines
from wirestack.core.layers import MODULE, PROGRAM, TRANSPORT, layer_of
from wirestack.explain import facts as F
from wirestack.explain.wording import Words, duration, flag_name, sentence
from wirestack.model import Call, ExceptionInfo, Fault, KernelEvent, Packet
from wirestack.output.json import to_json
from wirestack.report import Report, build_report


def report(calls: Sequence[Call] = (), packets: Sequence[Packet] = (), exc: ExceptionInfo | None = None,
           kernel: Sequence[KernelEvent] = (), traced: bool = True) -> Report:
    return build_report(trace(calls, packets, exc, kernel, traced))


def of(r: Report, kind: type[F.Fact]) -> list[Any]:
    return [f for f in r.facts if isinstance(f, kind)]


def texts(r: Report) -> list[str]:
    words = Words({c.id: c for c in r.trace.calls})
    return [sentence(f, words) for f in r.facts]


def consistent(r: Report) -> None:
    """No two facts disagree about one packet: who sent it, and what it is."""
    packets = {p.id: p for p in r.trace.packets}
    for f in r.facts:
        for pid, sender, what in f.claims():
            p = packets[pid]
            if sender is not None:
                assert (p.src, p.sport) == sender, (f.kind, pid, sender)
            flags = {"SYN": "S", "RST": "R", "FIN": "F", "SYN/ACK": "SA"}.get(what)
            if flags is not None:
                assert set(flags) <= set(p.flags), (f.kind, pid, what, p.flags)


GAI = call(1, "getaddrinfo", 0, 5, socket=0, local=None, remote=None, args={"host": "127.0.0.1", "port": 66000},
           result=[["AF_INET", "SOCK_STREAM", ["127.0.0.1", 464]]])
SEED_PACKETS = [tcp(1, 20, CLIENT, SERVER, "S", seq=1), tcp(2, 34, SERVER, CLIENT, "RA", ack=2)]


# -- refusals, and what the kernel's reason says -------------------------------------------------------------------


def test_seed_refusal() -> None:
    r = report([GAI, call(2, "connect", 10, 60, errno=111)], SEED_PACKETS, refused(2))
    wrap = of(r, F.PortWrap)[0]
    assert (wrap.asked, wrap.given, wrap.first, wrap.carried) == (66000, 464, 1, False)
    refusal = of(r, F.Refused)[0]
    assert (refusal.syn, refusal.rst, refusal.delay_ns, refusal.call, refusal.error) == (1, 2, 14 * US, 2,
                                                                                         "ECONNREFUSED")
    assert refusal.client.sockets == (1,) and refusal.server.sockets == () and refusal.reason == ""
    origin = of(r, F.Origin)[0]
    assert (origin.call, origin.raised_in, origin.through, origin.namespace) == (2, "socket.py", ("smtplib.py",),
                                                                                  "errno")
    text = " | ".join(texts(r))
    assert "no listening socket there, or a firewall that rejects with RST" in text  # without the kernel: say less
    assert "connect() failed with ECONNREFUSED (111); socket.py raised it as ConnectionRefusedError; smtplib.py " \
           "let it through" in text
    consistent(r)


def test_the_kernels_reset_reason_is_told_as_the_kernel_gave_it() -> None:
    reset = event(1, 30, "tcp_send_reset", 0, skbaddr="0xaa", skaddr="0000000000000000", src="127.0.0.1:464",
                  dest="127.0.0.1:40000", state="UNKNOWN", reason="NO_SOCKET")
    r = report([call(1, "connect", 10, 60, errno=111)], SEED_PACKETS, kernel=[reset])
    refusal = of(r, F.Refused)[0]
    assert refusal.reason == "NO_SOCKET" and refusal.kernel == (1,)
    assert "no socket was listening on 127.0.0.1:464 (the kernel's tcp_send_reset reason NO_SOCKET)" in \
        " ".join(texts(r))


def test_something_listening_is_not_called_a_refusal() -> None:
    r = report([call(2, "connect", 10, 60)],
               [tcp(1, 20, CLIENT, SERVER, "S", seq=1), tcp(2, 30, SERVER, CLIENT, "SA", seq=9, ack=2),
                tcp(3, 31, CLIENT, SERVER, "A", seq=2, ack=10)])
    assert not of(r, F.Refused)
    est = of(r, F.Established)[0]
    assert (est.syn, est.synack, est.delay_ns, est.accepted_by, est.listener_traced) == (1, 2, 10 * US, None, False)
    assert "accepted" not in " ".join(texts(r))  # the server's kernel completed it; a program may never accept


def test_silence_with_retransmits_ended_by_the_programs_own_timeout() -> None:
    syns = [tcp(1, 20, CLIENT, SERVER, "S", seq=5), tcp(2, 1_020_020, CLIENT, SERVER, "S", seq=5),
            tcp(3, 2_040_020, CLIENT, SERVER, "S", seq=5)]
    r = report([call(2, "connect", 10, 2_500_000, fault=timeout_fault(), args={"timeout": 2.5})], syns)
    waits = of(r, F.SynRetransmits)[0]
    assert waits.pattern == "equal" and waits.waits_ns == (1_020_000 * US, 1_020_000 * US)
    silent = of(r, F.Unanswered)[0]
    assert (silent.copies, silent.ended_by) == (3, "timeout")
    text = " ".join(texts(r))
    assert "not doubling" in text and "no errno" in text and "nothing listened" not in text
    assert not of(r, F.Refused)


def test_the_kernel_giving_up_is_told_apart_from_the_programs_timeout() -> None:
    syns = [tcp(1, 20, CLIENT, SERVER, "S", seq=5), tcp(2, 1_000_020, CLIENT, SERVER, "S", seq=5),
            tcp(3, 3_000_020, CLIENT, SERVER, "S", seq=5)]
    r = report([call(2, "connect", 10, 7_000_000, errno=110)], syns)
    assert of(r, F.SynRetransmits)[0].pattern == "doubling"
    silent = of(r, F.Unanswered)[0]
    assert silent.ended_by == "errno" and "the kernel gave up" in " ".join(texts(r))


def test_no_packets_means_no_wire_claims() -> None:
    r = report([call(2, "connect", 10, 60, errno=111)], [], refused(2))
    assert not of(r, F.Refused) and any(isinstance(f, F.Note) and f.what == "capture.empty" for f in r.facts)
    assert not any("RST" in t for t in texts(r))


def test_drops_are_never_silent() -> None:
    t = trace()
    from dataclasses import replace

    r = build_report(replace(t, capture=replace(t.capture, dropped=3)))
    assert any(isinstance(f, F.Note) and f.what == "capture.dropped" and f.count == 3 for f in r.facts)


# -- errors in their own namespaces ---------------------------------------------------------------------------------


def test_a_resolver_error_is_an_eai_code_not_an_errno() -> None:
    fault = Fault("eai", "socket.gaierror", "[Errno -3] Temporary failure in name resolution", -3, "EAI_AGAIN")
    gai = call(1, "getaddrinfo", 0, 5_000_000, socket=0, local=None, remote=None, fault=fault,
               args={"host": "db.example", "port": 5432})
    dns = ("127.0.0.53", 53)
    me = ("127.0.0.1", 51000)
    packets = [udp(1, 100, me, dns, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02db\x07example\x00\x00\x01"
                   b"\x00\x01"), icmp_unreachable(2, 110, (me, dns))]
    r = report([gai], packets)
    failed = of(r, F.ResolveFailed)[0]
    assert (failed.error, failed.code, failed.queries, failed.icmp, failed.servers) == ("EAI_AGAIN", -3, 1, 1, (dns,))
    assert failed.packets[:2] == (1, 2)  # the resolver's C-made queries are kept and told
    assert r.alignment.packets_of_call(1) == (1, 2)
    cf = of(r, F.CallFailed)[0]
    assert (cf.namespace, cf.code, cf.name) == ("eai", -3, "EAI_AGAIN")
    text = " ".join(texts(r))
    assert "EAI_AGAIN (-3), a resolver error" in text and "errno -3" not in text
    j = to_json(r)
    assert j["calls"][0]["fault"]["namespace"] == "eai"


def test_an_openssl_error_is_not_a_kernel_errno() -> None:
    fault = Fault("openssl", "ssl.SSLError", "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)", 1,
                  "SSL_ERROR_SSL", "SSL", "WRONG_VERSION_NUMBER")
    hs = call(2, "do_handshake", 100, 900, socket=2, fault=fault)
    hello = b"\x16\x03\x01\x02\x00\x01" + bytes(60)
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 20, SERVER, CLIENT, "SA", seq=50, ack=2),
               tcp(3, 150, SERVER, CLIENT, "PA", seq=51, ack=2, payload=b"220 wirestack.peer ESMTP\r\n"),
               tcp(4, 600, CLIENT, SERVER, "PA", seq=2, ack=77, payload=hello)]
    r = report([call(1, "connect", 0, 30), hs], packets)
    cf = of(r, F.CallFailed)[0]
    assert (cf.namespace, cf.name, cf.reason) == ("openssl", "SSL_ERROR_SSL", "WRONG_VERSION_NUMBER")
    hello_fact = of(r, F.TlsHello)[0]
    assert hello_fact.reply == "not-tls" and hello_fact.reply_first and hello_fact.header == (0x32, 0x3230, 0x2077)
    assert hello_fact.client.addr == CLIENT  # the ClientHello is the client's, the clear text the server's
    text = " ".join(texts(r))
    assert "EPERM" not in text and "not a kernel errno" in text
    consistent(r)


def test_a_python_timeout_has_no_errno_and_no_syscall_result() -> None:
    from wirestack.output.text import kernel_line

    c = call(2, "recv", 100, 2_000_100, fault=timeout_fault(), args={"bufsize": 512, "timeout": 2.0})
    r = report([call(1, "connect", 0, 30), c], [])
    line = kernel_line(r, c)
    assert "TimeoutError" in line and "no errno" in line and "→ TimeoutError" not in line


def test_a_timed_connects_syscall_result_is_shown_as_the_kernel_returned_it() -> None:
    from wirestack.output.text import kernel_line

    c = call(1, "connect", 0, 100, errno=111, args={"address": ["127.0.0.1", 464], "timeout": 5.0}, tid=7)
    kernel = [event(1, 5, "sys_enter_connect", 7, fd="3"), event(2, 20, "sys_exit_connect", 7, ret="-115")]
    r = report([c], SEED_PACKETS, kernel=kernel)
    line = kernel_line(r, c)
    assert "EINPROGRESS (115) from the syscall" in line and "ECONNREFUSED (111) read through SO_ERROR" in line


# -- both ends traced: roles come from the wire, not from whose socket a rule looked at -----------------------------


def _both_ends(client_closes_first: bool) -> Report:
    calls = [call(1, "connect", 0, 30, socket=1),
             call(2, "accept", 25, 28, socket=2, local=SERVER, remote=CLIENT, args={"listener": 3}),
             call(3, "send", 40, 45, socket=1, args={"bytes": 4}, result=4),
             call(4, "recv", 41, 60, socket=2, local=SERVER, remote=CLIENT, args={"bufsize": 100}, result=4)]
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 12, SERVER, CLIENT, "SA", seq=100, ack=2),
               tcp(3, 14, CLIENT, SERVER, "A", seq=2, ack=101),
               tcp(4, 42, CLIENT, SERVER, "PA", seq=2, ack=101, payload=b"PING")]
    if client_closes_first:
        calls += [call(5, "close", 70, 72, socket=1),
                  call(6, "recv", 61, 80, socket=2, local=SERVER, remote=CLIENT, args={"bufsize": 100}, result=0),
                  call(7, "close", 90, 92, socket=2, local=SERVER, remote=CLIENT)]
        packets += [tcp(5, 71, CLIENT, SERVER, "FA", seq=6, ack=101), tcp(6, 91, SERVER, CLIENT, "FA", seq=101, ack=7)]
    else:
        calls += [call(5, "close", 70, 72, socket=2, local=SERVER, remote=CLIENT),
                  call(6, "recv", 50, 80, socket=1, args={"bufsize": 100}, result=0)]
        packets += [tcp(5, 71, SERVER, CLIENT, "FA", seq=101, ack=6)]
    return report(calls, packets)


def test_both_ends_traced_the_client_closed_first() -> None:
    r = _both_ends(client_closes_first=True)
    closed = of(r, F.Closed)[0]
    assert closed.first_role == "client" and closed.first.addr == CLIENT and closed.first.sockets == (1,)
    assert closed.second.sockets == (2,) and (closed.sent_first, closed.sent_second) == (4, 0)
    assert closed.eof_call == 6 and closed.other_fin == 6
    text = " ".join(texts(r))
    assert "the client 127.0.0.1:40000 (traced: socket 1) closed its side first" in text
    assert "peer" not in text and "program" not in text
    consistent(r)


def test_both_ends_traced_the_server_closed_first() -> None:
    r = _both_ends(client_closes_first=False)
    closed = of(r, F.Closed)[0]
    assert closed.first_role == "server" and closed.first.sockets == (2,) and closed.sent_first == 0
    assert closed.sent_second == 4 and closed.eof_call == 6 and closed.other_fin is None
    consistent(r)


def test_a_reset_is_told_by_its_sender_with_the_kernels_reason() -> None:
    calls = [call(1, "connect", 0, 30), call(2, "sendall", 40, 45, args={"bytes": 5}),
             call(3, "recv", 46, 200, errno=104)]
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 12, SERVER, CLIENT, "SA", seq=100, ack=2),
               tcp(3, 14, CLIENT, SERVER, "A", seq=2, ack=101),
               tcp(4, 42, CLIENT, SERVER, "PA", seq=2, ack=101, payload=b"EHLO\n"),
               tcp(5, 44, SERVER, CLIENT, "A", seq=101, ack=7), tcp(6, 120, SERVER, CLIENT, "RA", seq=101, ack=7)]
    kernel = [event(1, 119, "tcp_send_reset", 0, skbaddr="0xbb", skaddr="ffff8880aa", src="127.0.0.1:464",
                    dest="127.0.0.1:40000", state="TCP_ESTABLISHED", reason="TCP_ABORT_ON_LINGER")]
    r = report(calls, packets, kernel=kernel)
    reset = of(r, F.Reset)[0]
    assert (reset.sender_role, reset.sender.addr, reset.reason, reset.met_by, reset.error) == (
        "server", SERVER, "TCP_ABORT_ON_LINGER", 3, "ECONNRESET")
    assert (reset.last_data, reset.acked) == (4, 5)
    assert "SO_LINGER 0" in " ".join(texts(r)) and "close() with unread" not in " ".join(texts(r))
    consistent(r)


def test_a_reset_answering_data_after_the_sender_closed_is_not_called_unread_data() -> None:
    # the server closed (FIN) long before; the client's late data meets a socket in TIME_WAIT/FIN_WAIT2
    calls = [call(1, "connect", 0, 30), call(2, "send", 300_000, 300_010, args={"bytes": 4}, result=4)]
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 12, SERVER, CLIENT, "SA", seq=100, ack=2),
               tcp(3, 14, CLIENT, SERVER, "A", seq=2, ack=101), tcp(4, 100, SERVER, CLIENT, "FA", seq=101, ack=2),
               tcp(5, 110, CLIENT, SERVER, "A", seq=2, ack=102),
               tcp(6, 300_005, CLIENT, SERVER, "PA", seq=2, ack=102, payload=b"GET\n"),
               tcp(7, 300_020, SERVER, CLIENT, "R", seq=102)]
    r = report(calls, packets)
    reset = of(r, F.Reset)[0]
    assert reset.sender_role == "server" and reset.after_fin == 4 and reset.answered == 6 and reset.unread is None
    stale = of(r, F.Stale)[0]
    assert (stale.fin, stale.data, stale.answer, stale.gap_ns) == (4, 6, 7, 299_905 * US)
    assert "unread" not in " ".join(texts(r))
    consistent(r)


def test_the_traced_side_closing_with_unread_data() -> None:
    calls = [call(1, "connect", 0, 30), call(2, "recv", 40, 50, args={"bufsize": 4}, result=4),
             call(3, "close", 60, 62)]
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 12, SERVER, CLIENT, "SA", seq=100, ack=2),
               tcp(3, 14, CLIENT, SERVER, "A", seq=2, ack=101),
               tcp(4, 30, SERVER, CLIENT, "PA", seq=101, ack=2, payload=b"220 hello there\r\n"),
               tcp(5, 61, CLIENT, SERVER, "RA", seq=2, ack=118)]
    r = report(calls, packets)
    reset = of(r, F.Reset)[0]
    assert (reset.sender_role, reset.unread, reset.received) == ("client", 13, 17)


# -- joins on strong keys ----------------------------------------------------------------------------------------


def test_syscalls_join_by_thread_and_order_not_by_whichever_call_ran() -> None:
    # a worker thread (tid 8) connects; the main thread (tid 7) closes something at the same moment
    worker = call(1, "connect", 0, 100, errno=111, thread="worker", tid=8)
    main_close = call(2, "close", 80, 150, socket=2, local=("127.0.0.1", 41000), remote=None, tid=7)
    kernel = [event(1, 10, "sys_enter_connect", 8, fd="5"), event(2, 95, "sys_exit_connect", 8, ret="-111"),
              event(3, 90, "sys_enter_close", 7, fd="6"), event(4, 140, "sys_exit_close", 7, ret="0")]
    r = report([worker, main_close], SEED_PACKETS, kernel=kernel)
    assert r.kernel.for_call(1) == (1, 2) and r.kernel.for_call(2) == (3, 4)


def test_a_kfree_skb_joins_only_the_reset_of_the_same_skb_and_time() -> None:
    reset = event(1, 30, "tcp_send_reset", 0, skbaddr="0xaa", skaddr="0", src="127.0.0.1:464",
                  dest="127.0.0.1:40000", reason="NO_SOCKET")
    drop = event(2, 31, "kfree_skb", 0, skbaddr="0xaa", location="tcp_v4_rcv+0x91", reason="NO_SOCKET")
    reused = event(3, 9_031, "kfree_skb", 0, skbaddr="0xaa", location="tcp_v6_rcv+0x10", reason="NO_SOCKET")
    r = report([call(1, "connect", 10, 60, errno=111)], SEED_PACKETS, kernel=[reset, drop, reused])
    assert 2 in r.kernel.links and r.kernel.links[2].packets == (1,)
    assert 3 not in r.kernel.links  # another drop 9 ms later at the same address: not ours
    assert [f.location for f in of(r, F.Drop)] == ["tcp_v4_rcv"]


# -- exceptions ---------------------------------------------------------------------------------------------------


def test_a_wrapped_exception_names_its_wrapper() -> None:
    inner = refused(2)
    outer = ExceptionInfo("urllib.error.URLError", "<urlopen error [Errno 111] Connection refused>",
                          inner.frames[:2], None, None, cause=inner)
    r = report([call(2, "connect", 10, 60, errno=111)], [], outer)
    origin = of(r, F.Origin)[0]
    assert (origin.wrapper, origin.how, origin.raised_as) == ("urllib.error.URLError", "raised from it",
                                                              "ConnectionRefusedError")


def test_asyncio_builds_its_error_from_so_error_of_the_socket_its_message_names() -> None:
    # two sockets connect at once; the one to port 8081 fails; asyncio names it in its message
    other = ("127.0.0.1", 8080)
    named = ("127.0.0.1", 8081)
    calls = [call(1, "connect", 0, 10, socket=1, remote=other, errno=115),
             call(2, "connect", 1, 11, socket=2, local=("127.0.0.1", 40001), remote=named, errno=115),
             call(3, "getsockopt", 50, 51, socket=1, remote=other, result=111, args={"option": "SO_ERROR"}),
             call(4, "getsockopt", 52, 53, socket=2, local=("127.0.0.1", 40001), remote=named, result=111,
                  args={"option": "SO_ERROR"})]
    asyncio_frames = frames(("/app/main.py", 5, "<module>", 1),
                            ("/usr/lib/python3.11/asyncio/selector_events.py", 640, "sock_connect", 9))
    exc = ExceptionInfo("ConnectionRefusedError", "[Errno 111] Connect call failed ('127.0.0.1', 8081)",
                        asyncio_frames, errno_fault(111), None)
    r = report(calls, [], exc)
    built = of(r, F.Built)[0]
    assert (built.getsockopt, built.socket, built.address, built.connect) == (4, 2, named, 2)


def test_an_exception_group_keeps_each_member_with_its_own_call() -> None:
    a = refused(1)
    b = ExceptionInfo("ConnectionRefusedError", "[Errno 111] Connection refused", SEED_STACK, errno_fault(111), 2)
    group = ExceptionInfo("ExceptionGroup", "create_connection failed", SEED_STACK[:2], None, None, group=(a, b))
    r = report([call(1, "connect", 0, 10, errno=111), call(2, "connect", 20, 30, socket=2, errno=111)], [], group)
    g = of(r, F.Group)[0]
    assert [m[1] for m in g.members] == [1, 2]
    assert sorted(o.call for o in of(r, F.Origin)) == [1, 2]
    from wirestack.output.text import render_text

    text = render_text(r)
    assert "Exception Group Traceback" in text and "2 sub-exceptions" in text and text.count("kernel  connect") == 2


def test_create_connection_raised_the_error_of_its_last_attempt() -> None:
    cc = frames(("/app/c.py", 1, "<module>", 1), ("/usr/lib/python3.11/socket.py", 836, "create_connection", 5))
    v6 = (("::1", 40001), ("::1", 464))
    calls = [call(1, "connect", 0, 10, socket=1, local=v6[0], remote=v6[1], errno=111, stack=cc),
             call(2, "connect", 20, 30, socket=2, errno=111, stack=cc)]
    r = report(calls, [], refused(2, cc))
    tries = of(r, F.Attempts)[0]
    assert tries.raised == 2 and [t[0] for t in tries.tries] == [1, 2]
    assert "attempt 2 of 2" in " ".join(texts(r)) and "first error" not in " ".join(texts(r))


def test_library_retries_are_told_with_their_gaps() -> None:
    urllib3 = frames(("/app/c.py", 1, "<module>", 1),
                     ("/usr/lib/python3/dist-packages/urllib3/connectionpool.py", 700, "urlopen", 2),
                     ("/usr/lib/python3.11/socket.py", 836, "create_connection", 3))
    starts = [0, 700_000, 201_000 + 700_000, 402_000 + 901_000]
    calls = [call(i + 1, "connect", s, s + 50, socket=i + 1, errno=111, stack=urllib3) for i, s in enumerate(starts)]
    r = report(calls, [])
    retry = of(r, F.Retries)[0]
    assert len(retry.attempts) == 4 and retry.module == "urllib3/connectionpool.py"
    assert [round(g / 1e6) for g in retry.gaps_ns] == [700, 201, 402]


# -- other lessons --------------------------------------------------------------------------------------------------


def test_icmp_to_an_unconnected_socket_is_never_told() -> None:
    dns = ("127.0.0.1", 9999)
    calls = [call(1, "sendto", 0, 10, kind="SOCK_DGRAM", remote=dns, args={"bytes": 1, "address": list(dns)},
                  result=1),
             call(2, "recvfrom", 20, 2_000_020, kind="SOCK_DGRAM", remote=None, fault=timeout_fault(),
                  args={"bufsize": 512, "timeout": 2.0})]
    r = report(calls, [udp(1, 5, CLIENT, dns), icmp_unreachable(2, 21, (CLIENT, dns))])
    icmp = of(r, F.IcmpError)[0]
    assert (icmp.told, icmp.timed_out, icmp.datagram, icmp.meaning) == ("unconnected", 2, 1, "port unreachable")
    assert "never told" in " ".join(texts(r))


def test_icmp_to_a_connected_socket_reaches_its_next_call() -> None:
    dns = ("127.0.0.1", 9999)
    calls = [call(1, "connect", 0, 2, kind="SOCK_DGRAM", remote=dns),
             call(2, "send", 3, 10, kind="SOCK_DGRAM", remote=dns, args={"bytes": 1}, result=1),
             call(3, "recv", 20, 30, kind="SOCK_DGRAM", remote=dns, errno=111)]
    r = report(calls, [udp(1, 5, CLIENT, dns), icmp_unreachable(2, 6, (CLIENT, dns))])
    icmp = of(r, F.IcmpError)[0]
    assert (icmp.told, icmp.learner, icmp.error, icmp.sent_by, icmp.sent_returned) == ("call", 3, "ECONNREFUSED",
                                                                                        2, 1)


def test_a_read_timeout_after_the_request_was_acknowledged() -> None:
    calls = [call(1, "connect", 0, 30), call(2, "sendall", 40, 45, args={"bytes": 18}),
             call(3, "recv_into", 46, 3_000_046, fault=timeout_fault(), args={"bufsize": 8192, "timeout": 3.0})]
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 12, SERVER, CLIENT, "SA", seq=100, ack=2),
               tcp(3, 14, CLIENT, SERVER, "A", seq=2, ack=101),
               tcp(4, 42, CLIENT, SERVER, "PA", seq=2, ack=101, payload=b"GET / HTTP/1.1\r\n\r\n"),
               tcp(5, 44, SERVER, CLIENT, "A", seq=101, ack=20)]
    r = report(calls, packets)
    rt = of(r, F.ReadTimeout)[0]
    assert (rt.request, rt.ack, rt.call, rt.timeout_s) == (4, 5, 3, 3.0)
    assert round(rt.silent_ns / 1e9, 2) == 3.0


def test_sendall_returned_but_most_bytes_never_left() -> None:
    calls = [call(1, "connect", 0, 30), call(2, "sendall", 40, 500, args={"bytes": 2_000_000})]
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 12, SERVER, CLIENT, "SA", seq=100, ack=2),
               tcp(3, 14, CLIENT, SERVER, "A", seq=2, ack=101),
               tcp(4, 50, CLIENT, SERVER, "PA", seq=2, ack=101, payload=b"x" * 30_000),
               tcp(5, 60, SERVER, CLIENT, "A", seq=101, ack=30_002, window=0),
               tcp(6, 900, SERVER, CLIENT, "RA", seq=101, ack=30_002)]
    r = report(calls, packets)
    unsent = of(r, F.Unsent)[0]
    assert (unsent.written, unsent.left, unsent.ended_by, unsent.ended) == (2_000_000, 30_000, "RST", 6)
    assert of(r, F.ZeroWindow)[0].side.addr == SERVER


def test_an_http_body_cut_short_of_its_content_length() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 12, SERVER, CLIENT, "SA", seq=100, ack=2),
               tcp(3, 14, CLIENT, SERVER, "A", seq=2, ack=101),
               tcp(4, 20, CLIENT, SERVER, "PA", seq=2, ack=101, payload=b"GET / HTTP/1.1\r\n\r\n"),
               tcp(5, 30, SERVER, CLIENT, "PA", seq=101, ack=20, payload=head + b"x" * 100),
               tcp(6, 31, SERVER, CLIENT, "FA", seq=101 + len(head) + 100, ack=20)]
    r = report([], packets, traced=False)
    short = of(r, F.ShortBody)[0]
    assert (short.promised, short.delivered, short.ended_by, short.status) == (1000, 100, "FIN", "200")


def test_an_ehlo_without_starttls() -> None:
    ehlo = b"250-wirestack.peer\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250 HELP\r\n"
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 12, SERVER, CLIENT, "SA", seq=100, ack=2),
               tcp(3, 14, SERVER, CLIENT, "PA", seq=101, ack=2, payload=b"220 wirestack.peer ESMTP\r\n"),
               tcp(4, 20, CLIENT, SERVER, "PA", seq=2, ack=127, payload=b"ehlo me\r\n"),
               tcp(5, 30, SERVER, CLIENT, "PA", seq=127, ack=11, payload=ehlo)]
    exc = ExceptionInfo("smtplib.SMTPNotSupportedError", "STARTTLS extension not supported by server.", SEED_STACK)
    r = report([call(1, "connect", 0, 12)], packets, exc)
    no = of(r, F.NoStartTls)[0]
    assert no.reply == 5 and "STARTTLS" not in no.extensions and no.raised == "smtplib.SMTPNotSupportedError"


def test_a_tls_alert_is_told_by_its_sender() -> None:
    hello = b"\x16\x03\x01\x00\x40\x01" + bytes(64)
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 12, SERVER, CLIENT, "SA", seq=100, ack=2),
               tcp(3, 20, CLIENT, SERVER, "PA", seq=2, ack=101, payload=hello),
               tcp(4, 30, SERVER, CLIENT, "PA", seq=101, ack=71, payload=b"\x15\x03\x03\x00\x02\x02\x46")]
    r = report([], packets, traced=False)
    alert = of(r, F.TlsAlert)[0]
    assert (alert.sender_role, alert.level, alert.description, alert.sender.addr) == ("server", "fatal",
                                                                                        "protocol_version", SERVER)
    consistent(r)


def test_a_certificate_the_client_rejected_is_its_own_verdict() -> None:
    fault = Fault("openssl", "ssl.SSLCertVerificationError", "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                  "failed: self-signed certificate (_ssl.c:1006)", 1, "SSL_ERROR_SSL", "SSL",
                  "CERTIFICATE_VERIFY_FAILED", "self-signed certificate")
    hello = b"\x16\x03\x01\x00\x40\x01" + bytes(64)
    server_hello = b"\x16\x03\x03\x00\x40\x02" + bytes(64)
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 12, SERVER, CLIENT, "SA", seq=100, ack=2),
               tcp(3, 20, CLIENT, SERVER, "PA", seq=2, ack=101, payload=hello),
               tcp(4, 30, SERVER, CLIENT, "PA", seq=101, ack=71, payload=server_hello),
               tcp(5, 50, CLIENT, SERVER, "FA", seq=71, ack=170)]
    calls = [call(1, "connect", 0, 12), call(2, "do_handshake", 15, 45, socket=2, fault=fault)]
    r = report(calls, packets)
    rejected = of(r, F.CertificateRejected)[0]
    assert (rejected.detail, rejected.server_records, rejected.ended_by) == ("self-signed certificate", (4,), 5)
    assert "its own verdict" in " ".join(texts(r))


def test_a_plain_capture_gets_the_same_recognisers_and_no_claim_about_calls() -> None:
    r = report([], SEED_PACKETS, traced=False)
    refusal = of(r, F.Refused)[0]
    assert refusal.call is None and refusal.client.sockets == () and refusal.server.sockets == ()
    text = " ".join(texts(r))
    assert "no listening socket there, or a firewall" in text and "traced" not in text and "()" not in text


def test_arp_that_got_no_answer() -> None:
    asks = [Packet(i, T0 + i * 1_000_000_000, "ARP", "192.0.2.10", "192.0.2.99", icmp=(1, 0), length=42)
            for i in (1, 2, 3)]
    r = report([], asks, traced=False)
    note = next(f for f in r.facts if isinstance(f, F.Note) and f.what == "arp.unanswered")
    assert note.count == 3 and note.addr == ("192.0.2.99", 0)


def test_small_helpers() -> None:
    assert duration(14_000) == "14 µs" and duration(3_200_000) == "3200 µs"
    assert duration(25_000_000) == "25.0 ms" and duration(1_020_000_000) == "1.02 s"
    assert flag_name("RA") == "RST/ACK" and flag_name("SA") == "SYN/ACK" and flag_name("FA") == "FIN/ACK"
    assert name(111) == "ECONNREFUSED"
    assert parse_defines("#define\tECONNREFUSED\t111\t/* Connection refused */\n") == {
        111: "#define ECONNREFUSED 111 /* Connection refused */"}
    assert parse_defines("# define EAI_NONAME\t  -2\t/* NAME or SERVICE is unknown.  */", "eai") == {
        -2: "# define EAI_NONAME -2 /* NAME or SERVICE is unknown. */"}
    assert layer_of("/usr/lib/python3.11/socket.py") == TRANSPORT
    assert layer_of("/usr/lib/python3.11/smtplib.py") == MODULE
    assert layer_of("/home/me/client.py") == PROGRAM and layer_of("<stdin>") == PROGRAM


def test_the_mss_clause_only_when_the_announced_mss_allows_too_big_packets() -> None:
    """path.mtu says what the handshake announced only when the data supports the lesson: an MSS of 1460 allows
    1500-byte packets over a 1000-byte MTU; a server that announced 960 (its own link's MTU is 1000) leaves
    nothing to say; over IPv6 the headers take 60 bytes."""
    def said(mss: tuple[tuple[int, str, int], ...], sender: str = "192.0.2.10") -> str:
        fact = F.PathMtu(sender=(sender, 40000), target=("198.51.100.10", 80), reporter="192.0.2.1", mtu=1000,
                         icmp=(10,), big=3, largest=1500, df=True, mss=mss, time_ns=0)
        return sentence(fact, Words({}))

    assert "the handshake announced MSS 1460 (SYN #3) and 1460 (SYN/ACK #6), which allows IP packets of 1500" \
        in said(((3, "SYN", 1460), (6, "SYN/ACK", 1460)))
    assert "MSS" not in said(((3, "SYN", 1460), (6, "SYN/ACK", 960)))
    assert "MSS" not in said(())
    assert "allows IP packets of 1020 bytes" in said(((3, "SYN", 960),), sender="2001:db8:1::10")
