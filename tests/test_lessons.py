"""Each lesson on hand-built records: what it says when its pattern is there, what it says when the data departs
from the usual story, and that it stays silent when the pattern is absent."""

from __future__ import annotations

from builders import CLIENT, SEED_STACK, SERVER, T0, US, call, frames, icmp_unreachable, refused, tcp, udp

from wirestack.core.pairing import align
from wirestack.explain.explanation import Finding
from wirestack.explain.lessons import (
    _module,
    is_client_hello,
    is_tls_record,
    lessons,
    preview,
    readers,
    socket_flows,
)
from wirestack.model import Call, CaptureInfo, ExceptionInfo, Frame, Packet, Trace

PEER = ("127.0.0.1", 2525)
SMTPLIB = "/usr/lib/python3.11/smtplib.py"
SOCKETPY = "/usr/lib/python3.11/socket.py"


def _lessons(calls: list[Call], packets: list[Packet], exc: ExceptionInfo | None = None) -> list[Finding]:
    trace = Trace("t", "", tuple(packets), tuple(calls), exc, CaptureInfo("lo", None, len(packets), 0, 0))
    return lessons(trace, align(trace.calls, trace.packets))


def _texts(calls: list[Call], packets: list[Packet], exc: ExceptionInfo | None = None) -> list[str]:
    return [f.text for f in _lessons(calls, packets, exc)]


def _stack(*functions: str, program_instance: int = 1) -> tuple[Frame, ...]:
    """<module> → smtplib functions → socket.py, with distinct instances."""
    specs = [("<wirestack t>", 1, "<module>", program_instance)]
    specs += [(SMTPLIB, 10 + i, fn, 100 + i) for i, fn in enumerate(functions)]
    specs += [(SOCKETPY, 706, "readinto", 900)]
    return frames(*specs)


# -- the seed: a plain refusal needs no lesson beyond explain()'s own -------------------------------------------


def test_a_plain_refusal_adds_nothing() -> None:
    assert _texts([call(2, "connect", 10, 60, errno=111)],
                  [tcp(1, 20, CLIENT, SERVER, "S", seq=1), tcp(2, 34, SERVER, CLIENT, "RA", ack=2)], refused(2)) == []


# -- SYN spacing ------------------------------------------------------------------------------------------------


def _syns(*t_us: float) -> list[Packet]:
    return [tcp(i + 1, t, CLIENT, SERVER, "S", seq=77) for i, t in enumerate(t_us)]


def _timeout_call(end_us: float, errno: int | None = None) -> Call:
    c = call(1, "connect", 0, end_us, errno=errno)
    if errno is None:
        from dataclasses import replace

        c = replace(c, error="TimeoutError: timed out")
    return c


def test_syn_waits_that_double() -> None:
    texts = _texts([_timeout_call(3_500_000)], _syns(10, 1_010_010, 3_030_010))
    assert texts == ["the waits between the 3 copies of the SYN to 127.0.0.1:464 were 1.01 s, 2.02 s: each twice "
                     "the one before (exponential backoff); nothing came back, and connect() gave up after 3.50 s "
                     "(470.0 ms after the last SYN) with TimeoutError: timed out, without an errno: the program's "
                     "own timeout ended the wait, not the kernel"]


def test_syn_waits_that_stay_equal_are_reported_as_equal_not_doubling() -> None:
    # what Linux >= 6.7 does by default (tcp_syn_linear_timeouts = 4): the usual "doubling" lesson does not hold
    text = _texts([_timeout_call(3_500_000)], _syns(10, 1_020_010, 2_040_010, 3_060_010))[0]
    assert "were 1.02 s, 1.02 s, 1.02 s: each the same as the one before, not doubling" in text
    assert "exponential" not in text


def test_syn_waits_mixed_are_listed_wait_by_wait() -> None:
    text = _texts([_timeout_call(9_000_000)], _syns(0, 1_000_000, 2_000_000, 4_000_000, 8_000_000))[0]
    assert "from one wait to the next: same, doubled, doubled" in text


def test_kernel_giving_up_is_told_apart_from_the_programs_timeout() -> None:
    text = _texts([_timeout_call(7_200_000, errno=110)], _syns(0, 1_000_000, 3_000_000))[0]
    assert "the kernel gave up: connect() failed with ETIMEDOUT (110) 4.20 s after the last SYN" in text
    assert "program's own timeout" not in text


def test_a_syn_answered_after_retransmission() -> None:
    packets = _syns(0, 1_000_000) + [tcp(3, 1_000_030, SERVER, CLIENT, "SA", seq=5, ack=78)]
    text = _texts([call(1, "connect", 0, 1_000_040)], packets)[0]
    assert text.endswith("were 1.00 s; SYN/ACK (#3) answered after SYN #2")


# -- create_connection trying several addresses ---------------------------------------------------------------


def test_several_addresses_tried_in_turn() -> None:
    stack = frames(("<t>", 1, "<module>", 1), (SOCKETPY, 836, "create_connection", 5))
    c1 = call(1, "connect", 0, 10, errno=111, stack=stack, local=("::1", 40000), remote=("::1", 25))
    c2 = call(2, "connect", 20, 30, errno=111, stack=stack, socket=2, remote=("127.0.0.1", 25))
    texts = _texts([c1, c2], [])
    assert texts == ["create_connection tried 2 addresses in turn: [::1]:25 → ECONNREFUSED (111), "
                     "127.0.0.1:25 → ECONNREFUSED (111); when all had failed it raised the first error"]


# -- IPv6 ---------------------------------------------------------------------------------------------------------


def test_ipv6_frames_are_named_with_their_sizes() -> None:
    c6, s6 = ("::1", 40000), ("::1", 2525)
    syn = Packet(1, T0 + 20 * US, "TCP", "::1", "::1", 40000, 2525, "S", 1, 0, 94)
    rst = Packet(2, T0 + 40 * US, "TCP", "::1", "::1", 2525, 40000, "RA", 0, 2, 74)
    texts = _texts([call(1, "connect", 10, 60, errno=111, local=c6, remote=s6)], [syn, rst])
    assert texts == ["this flow ran over IPv6, [::1]:40000 → [::1]:2525: frame sizes #1 94, #2 74 bytes "
                     "(an IPv6 header is 40 bytes, an IPv4 header 20)"]


# -- UDP and ICMP -------------------------------------------------------------------------------------------------

UDP_PEER = ("127.0.0.1", 9999)


def _udp_calls(recv_errno: int | None = 111, recv_result: int | None = None) -> list[Call]:
    kw = {"kind": "SOCK_DGRAM", "remote": UDP_PEER}
    return [call(1, "connect", 0, 5, **kw), call(2, "send", 10, 400, result=5, **kw),  # type: ignore[arg-type]
            call(3, "recv", 420, 430, errno=recv_errno, result=recv_result, **kw)]  # type: ignore[arg-type]


def test_icmp_port_unreachable_after_a_datagram() -> None:
    packets = [udp(1, 20, CLIENT, UDP_PEER, b"hello"), icmp_unreachable(2, 45, (CLIENT, UDP_PEER))]
    texts = _texts(_udp_calls(), packets)
    assert texts[0] == ("ICMP port unreachable (type 3 code 3, #2) from 127.0.0.1 came back 25 µs after the datagram "
                        "#1 (5 bytes, 'hello'), quoting it (UDP 127.0.0.1:40000 → 127.0.0.1:9999): no socket was "
                        "bound to UDP port 9999 there; send() returned 5 bytes, though the error came while it was "
                        "still running: sending a datagram waits for no answer")
    assert texts[1] == ("the program learned of it when recv() failed with ECONNREFUSED (111), the errno a TCP "
                        "refusal gives, carried here by ICMP instead of RST")
    assert len(texts) == 2  # the datagram was answered (by ICMP): no "silence" lesson


def test_a_udp_reply_instead_of_icmp_is_reported_as_a_reply() -> None:
    packets = [udp(1, 20, CLIENT, UDP_PEER, b"hello"), udp(2, 45, UDP_PEER, CLIENT, b"hi there")]
    texts = _texts(_udp_calls(recv_errno=None, recv_result=8), packets)
    assert texts == ["1 datagram(s) came back from 127.0.0.1:9999: #2, 8 bytes, 'hi there': a socket there received "
                     "and answered"]


def test_udp_silence_is_silence() -> None:
    calls = _udp_calls(recv_errno=None)
    from dataclasses import replace

    calls[2] = replace(calls[2], end_ns=calls[2].start_ns + 2_000_000_000, error="TimeoutError: timed out")
    texts = _texts(calls, [udp(1, 20, CLIENT, UDP_PEER, b"hello")])
    assert texts == ["no reply and no ICMP error came back for the 1 datagram(s) sent (#1); recv() gave up after "
                     "2.00 s with TimeoutError: timed out"]


# -- TLS ------------------------------------------------------------------------------------------------------------

HELLO = bytes([0x16, 3, 1, 0, 40, 1]) + bytes(39)
BANNER = b"220 mail.example ESMTP\r\n"


def _tls_case(reply: bytes) -> list[str]:
    stack = SEED_STACK
    calls = [call(1, "connect", 0, 60, stack=stack), call(2, "close", 900, 910, stack=stack)]
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=0), tcp(2, 20, SERVER, CLIENT, "SA", seq=100, ack=1),
               tcp(3, 30, CLIENT, SERVER, "A", seq=1, ack=101),
               tcp(4, 100, SERVER, CLIENT, "PA", seq=101, ack=1, payload=reply),
               tcp(5, 300, CLIENT, SERVER, "PA", seq=1, ack=101 + len(reply), payload=HELLO)]
    exc = ExceptionInfo("ssl.SSLError", "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)",
                        stack[:3] + frames(("/usr/lib/python3.11/ssl.py", 1383, "do_handshake", 50)))
    return _texts(calls, packets, exc)


def test_tls_client_hello_meeting_clear_text() -> None:
    texts = _tls_case(BANNER)
    assert texts[0].startswith("a TLS ClientHello went out (#5, 45 bytes: a handshake record, 0x16 0x03 0x01 …); "
                               "no recorded socket call was running when it left")
    assert texts[1] == ("the peer's first bytes (#4, 24 bytes) came 200 µs before the ClientHello left: the peer "
                        "spoke first, and they are clear text: '220 mail.example ESMTP'; read as a TLS record header "
                        "they give content type 0x32, version 0x3230, length 8301: no TLS version is 0x3230; ssl "
                        "raised ssl.SSLError: [SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    assert not any("commands and replies" in t for t in texts)  # a binary turn: not a text conversation


def test_tls_peer_that_speaks_tls_is_not_called_a_mismatch() -> None:
    server_hello = bytes([0x16, 3, 3, 0, 50, 2]) + bytes(49)
    texts = _tls_case(server_hello)
    assert "the peer answered in TLS: #4 is a handshake record" in texts[0]
    assert not any("clear text" in t or "no TLS version" in t for t in texts)


def test_tls_record_recognition() -> None:
    assert is_client_hello(HELLO) and is_tls_record(HELLO)
    assert not is_tls_record(BANNER) and not is_client_hello(bytes([0x16, 3, 3, 0, 5, 2]))


# -- resets and closes ------------------------------------------------------------------------------------------


def _session(*tail: Packet) -> list[Packet]:
    return [tcp(1, 10, CLIENT, PEER, "S", seq=0), tcp(2, 20, PEER, CLIENT, "SA", seq=500, ack=1),
            tcp(3, 30, CLIENT, PEER, "A", seq=1, ack=501), *tail]


def test_peer_reset_after_reading() -> None:
    ehlo = b"ehlo client\r\n"
    packets = _session(tcp(4, 100, PEER, CLIENT, "PA", seq=501, ack=1, payload=BANNER),
                       tcp(5, 200, CLIENT, PEER, "PA", seq=1, ack=525, payload=ehlo),
                       tcp(6, 210, PEER, CLIENT, "A", seq=525, ack=1 + len(ehlo)),
                       tcp(7, 290, PEER, CLIENT, "RA", seq=525, ack=1 + len(ehlo)))
    calls = [call(1, "connect", 0, 40, remote=PEER), call(2, "recv_into", 50, 120, remote=PEER, result=24),
             call(3, "sendall", 190, 205, remote=PEER), call(4, "recv_into", 300, 310, remote=PEER, errno=104)]
    texts = _texts(calls, packets)
    assert texts[0] == ("the peer reset the established connection: RST/ACK (#7) came 90 µs after the program's last "
                        "data (#5, 13 bytes, 'ehlo client'), which the peer's kernel had acknowledged (#6); before it "
                        "the peer had sent 24 bytes; recv_into() met it: ECONNRESET (104), though the RST had come "
                        "10 µs before the call: the error waited on the socket")


def test_an_rst_answering_a_syn_is_a_refusal_not_a_reset() -> None:
    texts = _texts([call(1, "connect", 0, 40, errno=111, remote=PEER)],
                   [tcp(1, 10, CLIENT, PEER, "S", seq=0), tcp(2, 20, PEER, CLIENT, "RA", ack=1)], refused(1))
    assert not any("reset" in t for t in texts)


def test_program_side_rst_with_unread_data() -> None:
    packets = _session(tcp(4, 100, PEER, CLIENT, "PA", seq=501, ack=1, payload=BANNER),
                       tcp(5, 300, CLIENT, PEER, "RA", seq=1, ack=525))
    texts = _texts([call(1, "connect", 0, 40, remote=PEER), call(2, "close", 290, 310, remote=PEER)], packets)
    assert texts[0] == ("the program's side ended the connection with RST/ACK (#5), not FIN; 24 bytes had come from "
                        "the peer and recorded recv calls read 0 of them: a kernel answers close() with RST when "
                        "received data is left unread")


def test_peer_closing_first_is_end_of_file() -> None:
    getreply = _stack("__init__", "connect", "getreply")
    packets = _session(tcp(4, 100, PEER, CLIENT, "FA", seq=501, ack=1), tcp(5, 300, CLIENT, PEER, "FA", seq=1, ack=502),
                       tcp(6, 310, PEER, CLIENT, "A", seq=502, ack=2))
    calls = [call(1, "connect", 0, 40, remote=PEER), call(2, "recv_into", 50, 120, remote=PEER, result=0,
                                                          stack=getreply),
             call(3, "close", 290, 320, remote=PEER)]
    exc = ExceptionInfo("smtplib.SMTPServerDisconnected", "Connection unexpectedly closed", getreply[:4])
    texts = _texts(calls, packets, exc)
    assert texts == ["the peer closed its side first: FIN/ACK (#4) 80 µs after its SYN/ACK, having sent no data at "
                     "all; recv_into() returned 0 bytes for it: end of file, and smtplib.py getreply() then raised "
                     "smtplib.SMTPServerDisconnected: Connection unexpectedly closed; the program's FIN (#5) followed "
                     "200 µs later"]


def test_program_closing_first_is_not_the_peers_close() -> None:
    packets = _session(tcp(4, 100, CLIENT, PEER, "FA", seq=1, ack=501), tcp(5, 120, PEER, CLIENT, "FA", seq=501, ack=2))
    texts = _texts([call(1, "connect", 0, 40, remote=PEER), call(2, "close", 90, 110, remote=PEER)], packets)
    assert not any("closed its side first" in t for t in texts)


# -- conversations -----------------------------------------------------------------------------------------------


def _smtp_dialogue() -> tuple[list[Call], list[Packet]]:
    lines = [("in", b"220 ready\r\n", "__init__"), ("out", b"ehlo me\r\n", "ehlo"), ("in", b"250 hi\r\n", "ehlo"),
             ("out", b"data\r\n", "data"), ("in", b"354 go ahead\r\n", "data"),
             ("out", b"Subject: x\r\n\r\nhi\r\n.\r\n", "data"), ("in", b"250 OK\r\n", "data"),
             ("out", b"quit\r\n", "quit"), ("in", b"221 Bye\r\n", "quit")]
    calls = [call(1, "connect", 0, 40, remote=PEER)]
    packets = _session()
    seq = {"out": 1, "in": 501}
    t = 100.0
    for i, (side, data, fn) in enumerate(lines):
        pid = len(packets) + 1
        src, dst = (CLIENT, PEER) if side == "out" else (PEER, CLIENT)
        op = "sendall" if side == "out" else "recv_into"
        stack = _stack(fn, "send" if side == "out" else "getreply", program_instance=1)
        calls.append(call(i + 2, op, t - 5, t + 5, remote=PEER, stack=stack, result=None if side == "out"
                          else len(data)))
        packets.append(tcp(pid, t, src, dst, "PA", seq=seq[side], payload=data))
        seq[side] += len(data)
        t += 100
    return calls, packets


def test_a_text_conversation_names_each_segment_and_its_call() -> None:
    calls, packets = _smtp_dialogue()
    texts = _texts(calls, packets)
    assert texts[0] == "#4 ← '220 ready' (11 bytes): read by recv_into() under smtplib.py __init__() → getreply()"
    assert texts[1] == "#5 → 'ehlo me' (9 bytes): sent by sendall() under smtplib.py ehlo() → send()"
    assert texts[-1] == ("commands and replies on the wire: (on connecting) → 220 #4, EHLO #5 → 250 #6, "
                         "DATA #7 → 354 #8, (message) #9 → 250 #10, QUIT #11 → 221 #12")


def test_incoming_data_is_credited_to_the_recv_that_read_it() -> None:
    # the banner arrived while connect() was still returning (seen on a busy machine): it waited in the socket
    # until recv_into() read it, and the lesson says so whatever the packet's pairing was
    calls = [call(1, "connect", 0, 200, remote=PEER),
             call(2, "recv_into", 250, 260, remote=PEER, result=11, stack=_stack("__init__", "getreply")),
             call(3, "sendall", 300, 310, remote=PEER, stack=_stack("quit", "send"))]
    packets = _session(tcp(4, 100, PEER, CLIENT, "PA", seq=501, ack=1, payload=b"220 ready\r\n"),
                       tcp(5, 305, CLIENT, PEER, "PA", seq=1, ack=512, payload=b"quit\r\n"))
    trace = Trace("t", "", tuple(packets), tuple(calls), None, CaptureInfo("lo"))
    flow = socket_flows(trace, align(trace.calls, trace.packets))[0]
    assert readers(calls, flow) == {4: calls[1]}
    texts = _texts(calls, packets)
    assert texts[0] == "#4 ← '220 ready' (11 bytes): read by recv_into() under smtplib.py __init__() → getreply()"


def test_http_status_lines_are_replies() -> None:
    stack = frames(("<t>", 1, "<module>", 1), ("/usr/lib/python3.11/http/client.py", 1294, "request", 7))
    calls = [call(1, "connect", 0, 40, remote=PEER), call(2, "sendall", 90, 110, remote=PEER, stack=stack),
             call(3, "recv_into", 120, 220, remote=PEER, result=17, stack=stack)]
    packets = _session(tcp(4, 100, CLIENT, PEER, "PA", seq=1, ack=501, payload=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                       tcp(5, 200, PEER, CLIENT, "PA", seq=501, ack=28, payload=b"HTTP/1.0 200 OK\r\n"))
    texts = _texts(calls, packets)
    assert texts[0] == "#4 → 'GET / HTTP/1.1' (27 bytes): sent by sendall() under http/client.py request()"
    assert texts[-1] == "commands and replies on the wire: GET / HTTP/1.1 #4 → HTTP/1.0 200 OK #5"


def test_data_no_call_sent_is_reported() -> None:
    packets = _session(tcp(4, 5_000_000, CLIENT, PEER, "PA", seq=1, ack=501, payload=HELLO))
    texts = _texts([call(1, "connect", 0, 40, remote=PEER)], packets)
    assert "1 data segment(s) were paired with no recorded call: #4" in texts


# -- layers ---------------------------------------------------------------------------------------------------------


def test_a_refusal_under_two_library_modules_is_traced_through_them() -> None:
    req, cli = "/usr/lib/python3.11/urllib/request.py", "/usr/lib/python3.11/http/client.py"
    inner_frames = frames((req, 1348, "do_open", 20), (cli, 1294, "request", 21), (cli, 952, "connect", 22),
                          (SOCKETPY, 851, "create_connection", 23), (SOCKETPY, 836, "create_connection", 23))
    outer_frames = frames(("<wirestack http>", 2, "<module>", 10), (req, 216, "urlopen", 11), (req, 1377,
                                                                                            "http_open", 12),
                          (req, 1351, "do_open", 20))
    connect_stack = outer_frames[:3] + inner_frames[:4]
    inner = ExceptionInfo("ConnectionRefusedError", "[Errno 111] Connection refused", inner_frames, 111, 1)
    outer = ExceptionInfo("urllib.error.URLError", "<urlopen error [Errno 111] Connection refused>", outer_frames,
                          context=inner)
    texts = _texts([call(1, "connect", 0, 40, errno=111, stack=connect_stack)],
                   [tcp(1, 10, CLIENT, SERVER, "S", seq=0), tcp(2, 20, SERVER, CLIENT, "RA", ack=1)], outer)
    # create_connection shows twice in the traceback (the raise and the connect line) but is one frame
    assert texts == ["the packets of connect() (#1 #2) lie under 7 traceback frames: <wirestack http> (1) → "
                     "urllib/request.py (3) → http/client.py (2) → socket.py (1) → connect() in the kernel"]


def test_small_helpers() -> None:
    assert preview(b"250-SIZE 100\r\nmore") == "'250-SIZE 100'"
    assert preview(b"\x16\x03\x01") is None and preview(b"") is None
    assert preview(b"x" * 50, 10) == "'xxxxxxxxx…'"
    assert _module("/usr/lib/python3.11/http/client.py") == "http/client.py"
    assert _module("/usr/lib/python3.11/smtplib.py") == "smtplib.py"
    assert _module("/srv/venv/lib/python3.11/site-packages/aiosmtpd/smtp.py") == "aiosmtpd/smtp.py"
    assert _module("<stdin>") == "<stdin>"


def test_a_greeting_alone_is_a_conversation_too() -> None:
    calls = [call(1, "connect", 0, 40, remote=PEER),
             call(2, "recv_into", 50, 120, remote=PEER, result=16, stack=_stack("__init__", "_getresp"))]
    packets = _session(tcp(4, 100, PEER, CLIENT, "PA", seq=501, ack=1, payload=b"+OK POP3 ready\r\n"))
    assert _texts(calls, packets) == [
        "#4 ← '+OK POP3 ready' (16 bytes): read by recv_into() under smtplib.py __init__() → _getresp()",
        "commands and replies on the wire: (on connecting) → +OK #4"]


def test_bytes_decide_which_read_took_which_segment() -> None:
    # two segments arrive before the first read, which takes both; the third is taken by the next read
    stack = _stack("getresponse", "_read_status")
    calls = [call(1, "connect", 0, 40, remote=PEER), call(2, "sendall", 45, 50, remote=PEER, stack=stack),
             call(3, "recv_into", 300, 310, remote=PEER, result=30, stack=stack),
             call(4, "recv_into", 400, 420, remote=PEER, result=5, stack=_stack("read", "_safe_read"))]
    packets = _session(tcp(4, 48, CLIENT, PEER, "PA", seq=1, ack=501, payload=b"GET / HTTP/1.0\r\n\r\n"),
                       tcp(5, 100, PEER, CLIENT, "PA", seq=501, ack=19, payload=b"HTTP/1.0 200 OK\r\n"),
                       tcp(6, 110, PEER, CLIENT, "PA", seq=518, ack=19, payload=b"Server: x\r\n\r\n"),
                       tcp(7, 350, PEER, CLIENT, "PA", seq=531, ack=19, payload=b"body\n"))
    trace = Trace("t", "", tuple(packets), tuple(calls), None, CaptureInfo("lo"))
    flow = socket_flows(trace, align(trace.calls, trace.packets))[0]
    assert {k: v.id for k, v in readers(calls, flow).items()} == {5: 3, 6: 3, 7: 4}
    texts = _texts(calls, packets)
    assert "#5 ← 'HTTP/1.0 200 OK' (17 bytes): read by recv_into() under smtplib.py getresponse() → _read_status()" \
        in texts
    assert "#7 ← 'body' (5 bytes): read by recv_into() under smtplib.py read() → _safe_read()" in texts
