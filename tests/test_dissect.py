"""The struct decoder against frames built by scapy (an independent implementation)."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from wirestack.core.dissect import LINKTYPE_RAW, dissect, tcp_flags


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
