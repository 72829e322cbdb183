"""Explanations come from the data: when the data departs from the usual lesson, so does the text."""

from __future__ import annotations

from builders import CLIENT, SERVER, call, refused, tcp

from wirestack.core.errnos import header_defines, name, parse_defines
from wirestack.core.layers import MODULE, PROGRAM, TRANSPORT, layer_of
from wirestack.core.pairing import align
from wirestack.explain.explanation import duration, explain, flag_name
from wirestack.model import CaptureInfo, ExceptionInfo, Trace


def _texts(calls: list, packets: list, exc: ExceptionInfo | None = None, dropped: int = 0) -> list[str]:
    trace = Trace("t", "", tuple(packets), tuple(calls), exc, CaptureInfo("lo", None, len(packets), 0, dropped))
    return [f.text for f in explain(trace, align(trace.calls, trace.packets))]


GAI = call(1, "getaddrinfo", 0, 5, socket=0, local=None, remote=None, args={"host": "127.0.0.1", "port": 66000},
           result=[["AF_INET", "SOCK_STREAM", ["127.0.0.1", 464]]])


def test_seed_lesson() -> None:
    texts = _texts([GAI, call(2, "connect", 10, 60, errno=111)],
                   [tcp(1, 20, CLIENT, SERVER, "S", seq=1), tcp(2, 34, SERVER, CLIENT, "RA", ack=2)], refused(2))
    assert texts[0] == ("port 66000 does not fit in 16 bits: getaddrinfo turned it into 464 (66000 mod 65536), "
                        "and the SYN went to 127.0.0.1:464; no packet carried port 66000")
    assert texts[1] == "the peer's kernel answered the SYN with RST/ACK after 14 µs: nothing listened on 127.0.0.1:464"
    assert texts[2] == ("connect() failed with ECONNREFUSED (111); socket.py raised it as ConnectionRefusedError; "
                        "smtplib.py let it through")


def test_something_listening_is_not_called_a_refusal() -> None:
    texts = _texts([call(2, "connect", 10, 60)],
                   [tcp(1, 20, CLIENT, SERVER, "S", seq=1), tcp(2, 30, SERVER, CLIENT, "SA", seq=9, ack=2),
                    tcp(3, 31, CLIENT, SERVER, "A", seq=2, ack=10)])
    assert texts == ["127.0.0.1:464 accepted the connection: SYN/ACK came back after 10 µs"]


def test_silence_is_reported_as_silence_with_measured_retransmits() -> None:
    syns = [tcp(1, 20, CLIENT, SERVER, "S", seq=5), tcp(2, 1_040_020, CLIENT, SERVER, "S", seq=5),
            tcp(3, 3_100_020, CLIENT, SERVER, "S", seq=5)]
    texts = _texts([call(2, "connect", 10, 3_000_100, errno=110)], syns)
    assert texts[0] == "the SYN to 127.0.0.1:464 was sent 3 times: retransmitted at +1.04 s, +3.10 s"
    assert texts[1].startswith("no reply to the SYN to 127.0.0.1:464 was captured; connect() gave up after 3.00 s")
    assert not any("nothing listened" in t for t in texts)


def test_no_packets_means_no_wire_claims() -> None:
    texts = _texts([call(2, "connect", 10, 60, errno=111)], [], refused(2))
    assert "no SYN of it was captured" in texts[0]
    assert not any("RST" in t for t in texts)
    assert "no packet of the program's flows was captured on lo" in texts


def test_a_wrapped_exception_names_its_wrapper() -> None:
    inner = refused(2)
    outer = ExceptionInfo("urllib.error.URLError", "<urlopen error [Errno 111] Connection refused>",
                          inner.frames[:2], None, None, cause=inner)
    texts = _texts([call(2, "connect", 10, 60, errno=111)], [], outer)
    assert "smtplib.py turned it into urllib.error.URLError (raised from it)" in texts[1]


def test_drops_are_never_silent() -> None:
    assert any("dropped 3 packets" in t for t in _texts([], [], dropped=3))


def test_small_helpers() -> None:
    assert duration(14_000) == "14 µs" and duration(3_200_000) == "3200 µs"
    assert duration(25_000_000) == "25.0 ms" and duration(1_020_000_000) == "1.02 s"
    assert flag_name("RA") == "RST/ACK" and flag_name("SA") == "SYN/ACK" and flag_name("FA") == "FIN/ACK"
    assert name(111) == "ECONNREFUSED"
    assert parse_defines("#define\tECONNREFUSED\t111\t/* Connection refused */\n") == {
        111: "#define ECONNREFUSED 111 /* Connection refused */"}
    assert header_defines([111], ["/nonexistent.h"]) == {}
    assert layer_of("/usr/lib/python3.11/socket.py") == TRANSPORT
    assert layer_of("/usr/lib/python3.11/smtplib.py") == MODULE
    assert layer_of("/home/me/client.py") == PROGRAM and layer_of("<stdin>") == PROGRAM
