"""The struct decoder against frames built by scapy (an independent implementation)."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from wirestack.core.dissect import LINKTYPE_RAW, dissect, tcp_flags, tcp_options, tcp_options_text


def test_tcp_ipv4_fields() -> None:
    frame = bytes(Ether() / IP(src="127.0.0.1", dst="127.0.0.2") / TCP(sport=40000, dport=464, flags="RA", seq=7,
                                                                       ack=1001) / b"abc")
    p = dissect(3, 99, frame)
    assert (p.id, p.time_ns, p.proto, p.src, p.dst, p.sport, p.dport) == (3, 99, "TCP", "127.0.0.1", "127.0.0.2",
                                                                           40000, 464)
    assert (p.flags, p.seq, p.ack, p.payload, p.length) == ("RA", 7, 1001, b"abc", len(frame))


def test_flags_use_scapy_letters() -> None:
    for flags in ("S", "SA", "A", "PA", "FA", "R", "RA"):
        frame = bytes(Ether() / IP() / TCP(flags=flags))
        assert dissect(1, 0, frame).flags == str(TCP(flags=flags).flags)
    assert tcp_flags(0x12) == "SA"


def test_ipv6_udp_and_raw_ip_link() -> None:
    frame = bytes(IPv6(src="::1", dst="::1") / UDP(sport=5000, dport=53) / b"q")
    p = dissect(1, 0, frame, LINKTYPE_RAW)
    assert (p.proto, p.src, p.dst, p.sport, p.dport, p.payload) == ("UDP", "::1", "::1", 5000, 53, b"q")


def test_icmp_port_unreachable_quotes_the_datagram() -> None:
    frame = bytes(Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / ICMP(type=3, code=3)
                  / IPerror(src="127.0.0.1", dst="127.0.0.1") / UDPerror(sport=40000, dport=9) / b"ping")
    p = dissect(1, 0, frame)
    assert p.proto == "ICMP" and p.icmp == (3, 3)
    assert p.quoted is not None
    assert (p.quoted.proto, p.quoted.sport, p.quoted.dport) == ("UDP", 40000, 9)


def test_garbage_is_other_not_an_error() -> None:
    assert dissect(1, 0, b"\x00" * 5).proto == "other"
    assert dissect(1, 0, bytes(Ether(type=0x88B5) / b"hello")).proto == "other"


# -- TCP options: against scapy's parse of the same header ----------------------------------------------------

_OPTIONS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (123, 456)), ("NOP", None), ("WScale", 7),
            ("SAck", (1000, 2000, 3000, 4000)), ("EOL", None)]


def test_tcp_options_of_a_syn() -> None:
    frame = bytes(Ether() / IP() / TCP(flags="S", options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (9, 0)),
                                                            ("NOP", None), ("WScale", 7)]))
    o = tcp_options(dissect(1, 0, frame))
    assert o is not None and bool(o)
    assert (o.mss, o.sack_permitted, o.timestamps, o.wscale, o.sack, o.malformed) == (1460, True, (9, 0), 7, (),
                                                                                       False)
    assert tcp_options_text(o) == "mss=1460 sack_perm ts wscale=7"


def test_tcp_options_sack_blocks_over_ipv6_and_none() -> None:
    frame = bytes(IPv6(src="::1", dst="::1") / TCP(flags="A", options=[("NOP", None), ("NOP", None),
                                                                        ("SAck", (1000, 2000, 3000, 4000))]))
    o = tcp_options(dissect(1, 0, frame, LINKTYPE_RAW))
    assert o is not None and o.sack == ((1000, 2000), (3000, 4000)) and o.mss is None
    plain = tcp_options(dissect(1, 0, bytes(Ether() / IP() / TCP(flags="A"))))
    assert plain is not None and not plain
    assert tcp_options(dissect(1, 0, bytes(Ether() / IP() / UDP()))) is None


def test_tcp_options_that_run_past_the_header_keep_what_precedes() -> None:
    header = bytearray(bytes(IP() / TCP(flags="S", options=[("MSS", 1400), ("NOP", None), ("NOP", None),
                                                            ("NOP", None), ("NOP", None)])))
    header[20 + 20 + 4] = 8  # a timestamp option of 10 bytes, in a header with 4 bytes left
    header[20 + 20 + 5] = 10
    o = tcp_options(dissect(1, 0, bytes(header), LINKTYPE_RAW))
    assert o is not None and o.mss == 1400 and o.malformed and o.timestamps is None


@given(st.lists(st.sampled_from(_OPTIONS), max_size=6))
@settings(max_examples=300, deadline=None)
def test_tcp_options_agree_with_scapy(options: list[tuple[str, object]]) -> None:
    """Random option lists: what scapy parses back from the bytes, before the end of the list, is read the same
    (the last of a repeated option, as Linux's tcp_parse_options keeps it)."""
    raw = bytes(IP() / TCP(flags="S", options=options))
    assume(len(raw) <= 20 + 60)  # a TCP header holds at most 40 bytes of options
    o = tcp_options(dissect(1, 0, raw, LINKTYPE_RAW))
    assert o is not None
    parsed = IP(raw)[TCP].options
    names = [name for name, _ in parsed]
    last = dict(parsed[: names.index("EOL") if "EOL" in names else len(names)])
    assert o.mss == last.get("MSS") and o.wscale == last.get("WScale")
    assert o.timestamps == last.get("Timestamp") and o.sack_permitted == ("SAckOK" in last)
    sack = last.get("SAck", ())
    assert o.sack == tuple(zip(sack[::2], sack[1::2], strict=True))


@given(st.binary(min_size=1, max_size=40))
@settings(max_examples=300, deadline=None)
def test_tcp_options_of_any_bytes(options: bytes) -> None:
    """Any bytes in the options space (the header length set to hold them): never an error."""
    options += bytes(-len(options) % 4)
    tcp = bytearray(bytes(TCP(flags="S")))
    tcp[12] = ((20 + len(options)) // 4) << 4
    raw = bytes(IP(proto=6) / (bytes(tcp) + options))
    o = tcp_options(dissect(1, 0, raw, LINKTYPE_RAW))
    assert o is not None
    tcp_options_text(o)
