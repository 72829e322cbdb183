"""Capture files built by hand for the reader and wire-only tests: frames from scapy, files from struct."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

T0 = 1_700_000_000_000_000_000
A, B = ("127.0.0.1", 40000), ("127.0.0.1", 464)

Frame = tuple[int, bytes]  # (time_ns, bytes)


def tcp(t_us: float, src: tuple[str, int], dst: tuple[str, int], flags: str, seq: int = 0, ack: int = 0,
        payload: bytes = b"") -> Frame:
    ip = IPv6 if ":" in src[0] else IP
    pkt = Ether() / ip(src=src[0], dst=dst[0]) / TCP(sport=src[1], dport=dst[1], flags=flags, seq=seq, ack=ack)
    return T0 + int(t_us * 1000), bytes(pkt / payload if payload else pkt)


def udp(t_us: float, src: tuple[str, int], dst: tuple[str, int], payload: bytes = b"x") -> Frame:
    return T0 + int(t_us * 1000), bytes(Ether() / IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1])
                                        / payload)


def port_unreachable(t_us: float, datagram: Frame) -> Frame:
    quoted = bytes(datagram[1][14:])
    return T0 + int(t_us * 1000), bytes(Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / ICMP(type=3, code=3)
                                        / quoted)


def pcap(frames: Sequence[Frame], nano: bool = False, big: bool = False, link: int = 1) -> bytes:
    o = ">" if big else "<"
    out = [struct.pack(o + "IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, 262144, link)]
    for t, data in frames:
        frac = t % 1_000_000_000 if nano else (t % 1_000_000_000) // 1000
        out.append(struct.pack(o + "IIII", t // 1_000_000_000, frac, len(data), len(data)) + data)
    return b"".join(out)


def _block(o: str, kind: int, body: bytes) -> bytes:
    return struct.pack(o + "II", kind, 12 + len(body)) + body + struct.pack(o + "I", 12 + len(body))


def _opt(o: str, code: int, value: bytes) -> bytes:
    return struct.pack(o + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def pcapng(frames: Sequence[Frame], tsresol: int | None = None, big: bool = False, comments: bool = False) -> bytes:
    """One section, one Ethernet interface (if_tsresol as given: None = the default µs)."""
    o = ">" if big else "<"
    shb = _block(o, 0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1) + _opt(o, 4, b"handmade")
                 + struct.pack(o + "HH", 0, 0))
    opts = _opt(o, 9, bytes([tsresol])) + struct.pack(o + "HH", 0, 0) if tsresol is not None else b""
    idb = _block(o, 1, struct.pack(o + "HHI", 1, 0, 262144) + opts)
    out = [shb, idb]
    for i, (t, data) in enumerate(frames):
        if tsresol is None:
            ts = t // 1000
        elif tsresol & 0x80:
            ts = (t << (tsresol & 0x7F)) // 1_000_000_000
        else:
            ts = t // 10 ** (9 - tsresol)
        body = struct.pack(o + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data
        body += b"\0" * (-len(data) % 4)
        if comments:
            body += _opt(o, 1, f"note {i}".encode()) + struct.pack(o + "HH", 0, 0)
        out.append(_block(o, 6, body))
    return b"".join(out)


def refused(t_us: float = 0, client: tuple[str, int] = A, server: tuple[str, int] = B, isn: int = 1000,
            after_us: float = 20) -> list[Frame]:
    return [tcp(t_us, client, server, "S", seq=isn), tcp(t_us + after_us, server, client, "RA", ack=isn + 1)]
