"""Packets a call caused that belong to no flow: the neighbour lookups and the later fragments. Pure.

Before the first packet of a connect() or sendto() can leave on a link that is not loopback, the kernel must know
the MAC address of the next hop: it asks with ARP (IPv4: "who has 192.0.2.1? tell 192.0.2.10") or neighbour
solicitation (IPv6, ICMPv6 135) and waits for the answer (ARP reply, ICMPv6 136). When nobody answers, no packet
of the flow ever leaves (connect fails with EHOSTUNREACH after ~3 s): these lookups are then the whole lesson.
The far end asks about us the same way, to answer. And a datagram larger than the link's MTU leaves as IP
fragments, of which only the first carries the UDP header (the others belong to no flow by their ports).

The rules, on keys the packets themselves carry:
- a lookup (request) belongs to the call of the program that was sending when it was made (its window, with
  `SLACK_NS`), whose remote host is the address asked for, or (a gateway asked for) whose local host is the
  asker; a request *for* a call's local host is the far end asking about it (it arrives: side "in");
- an answer belongs to the call its request belongs to, when it answers that request (its sender is the
  address asked for, its target the asker) and comes by the end of the call;
- a later fragment (offset > 0) goes with the first fragment of its datagram (same source, destination,
  protocol and IP identification), which the flows pair.
"""

from __future__ import annotations

import socket
import struct
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..model import Call, Packet
from .dissect import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, LINKTYPE_RAW

SLACK_NS = 5_000_000  # a lookup is made at the moment the call hands the kernel its first packet
WAIT_NS = 4_000_000_000  # how far back a running call may have started (ARP gives up after ~3 s)
SENDING = frozenset({"connect", "connect_ex", "send", "sendall", "sendto", "sendmsg", "write", "getaddrinfo"})
ARP_REQUEST, ARP_REPLY = 1, 2
ND_SOLICIT, ND_ADVERT = 135, 136

Companion = tuple[int, int, str, int | None, str]  # (packet, socket, side, call, role), as pairing.Pair


@dataclass(frozen=True, slots=True)
class Lookup:
    """A neighbour lookup: who asks (its address), for which address, request or answer."""

    asker: str
    target: str
    request: bool


def lookup(p: Packet) -> Lookup | None:
    """The ARP or IPv6 neighbour discovery message a packet is, if it is one."""
    if p.proto == "ARP" and p.icmp is not None and p.icmp[0] in (ARP_REQUEST, ARP_REPLY):
        # dissect: src is the sender's protocol address, dst the target's
        return Lookup(p.src, p.dst, p.icmp[0] == ARP_REQUEST)
    if p.proto == "ICMPv6" and p.icmp is not None and p.icmp[0] in (ND_SOLICIT, ND_ADVERT) and len(p.payload) >= 20:
        target = socket.inet_ntop(socket.AF_INET6, p.payload[4:20])  # after 4 bytes reserved (NS) or flags (NA)
        if p.icmp[0] == ND_SOLICIT:
            return Lookup(p.src, target, True)
        return Lookup(target, p.dst, False)  # the advertiser answers for its own address, to the asker
    return None


def ip_offset(p: Packet) -> int | None:
    raw = p.raw
    if p.link == LINKTYPE_ETHERNET:
        off = 14
        while len(raw) >= off + 4 and raw[off - 2:off] in (b"\x81\x00", b"\x88\xa8"):
            off += 4
        return off if raw[off - 2:off] == b"\x08\x00" else None
    if p.link == LINKTYPE_RAW:
        return 0
    if p.link == LINKTYPE_LINUX_SLL:
        return 16
    if p.link == LINKTYPE_LINUX_SLL2:
        return 20
    return None


@dataclass(frozen=True, slots=True)
class Ipv4:
    """The IPv4 header fields that say how a datagram travels."""

    ident: int
    df: bool
    mf: bool
    offset: int  # in bytes
    total: int  # the IP datagram's length
    proto: int
    start: int  # where its payload starts in the frame


def ipv4(p: Packet) -> Ipv4 | None:
    """The IPv4 header of a packet (read off its raw bytes), None for anything else."""
    off = ip_offset(p)
    raw = p.raw
    if off is None or len(raw) < off + 20 or raw[off] >> 4 != 4:
        return None
    total, ident, frag = struct.unpack_from("!HHH", raw, off + 2)
    return Ipv4(ident, bool(frag & 0x4000), bool(frag & 0x2000), (frag & 0x1FFF) * 8, total, raw[off + 9],
                off + max(20, (raw[off] & 0x0F) * 4))


def datagram_size(p: Packet) -> int:
    """The bytes of UDP data a datagram carries: its UDP header's length field for the first fragment of a
    fragmented one (its captured payload is only the first fragment's), else its captured payload."""
    ip = ipv4(p)
    if ip is not None and p.proto == "UDP" and ip.mf and ip.offset == 0 and len(p.raw) >= ip.start + 8:
        return max(0, int(struct.unpack_from("!H", p.raw, ip.start + 4)[0]) - 8)
    return len(p.payload)


def _by_start(calls: Iterable[Call]) -> tuple[list[Call], list[int]]:
    sending = sorted((c for c in calls if c.op in SENDING), key=lambda c: (c.start_ns, c.id))
    return sending, [c.start_ns for c in sending]


def _host(addr: object) -> str:
    if isinstance(addr, (tuple, list)) and addr and isinstance(addr[0], str):
        return addr[0].split("%", 1)[0].removeprefix("::ffff:")
    return ""


def _target(c: Call) -> str:
    remote = _host(c.remote)
    if remote:
        return remote
    a = c.args.get("address")
    return _host(a) if isinstance(a, list) else ""


def companions(calls: Sequence[Call], packets: Sequence[Packet],
               paired: Mapping[int, Sequence[tuple[int, str, int | None, str]]]) -> list[Companion]:
    """The companions of the calls among PACKETS (see the module docstring). `paired`: packet id -> (socket, side,
    call, role) of the pairs the flows gave (a first fragment's are its later fragments')."""
    sending, starts = _by_start(calls)
    by_id = {p.id: p for p in packets}
    mine: dict[int, set[str]] = {}  # call -> its host's addresses: its local address, and its packets' sources
    for c in sending:
        if _host(c.local):
            mine.setdefault(c.id, set()).add(_host(c.local))
    for pid, pairs in paired.items():
        for _sock, side, call, _role in pairs:
            if side == "out" and call is not None and pid in by_id and by_id[pid].src:
                mine.setdefault(call, set()).add(by_id[pid].src)
    out: list[Companion] = []
    asked: dict[tuple[str, str], list[tuple[int, Call]]] = {}  # (asker, target) -> (time, call) of requests
    firsts: dict[tuple[str, str, int, int], int] = {}  # a datagram's first fragment: (src, dst, proto, id) -> pid
    for p in sorted(packets, key=lambda p: (p.time_ns, p.id)):
        found = lookup(p)
        if found is not None:
            if found.request:
                hit = _caller(sending, starts, p.time_ns, found, mine)
                if hit is not None:
                    asker_call, side = hit
                    out.append((p.id, asker_call.socket, side, asker_call.id,
                                "sent" if side == "out" else "received"))
                    asked.setdefault((found.asker, found.target), []).append((p.time_ns, asker_call))
            else:
                for t, asker_call in reversed(asked.get((found.target, found.asker), [])):
                    if t <= p.time_ns <= asker_call.end_ns + SLACK_NS:
                        side = "out" if found.asker in mine.get(asker_call.id, ()) else "in"
                        out.append((p.id, asker_call.socket, side, asker_call.id,
                                    "received" if side == "in" else "sent"))
                        break
            continue
        if p.proto in ("UDP", "ICMP", "other") and p.src and (p.proto != "other" or p.id not in paired):
            ip = ipv4(p)
            if ip is None or not (ip.mf or ip.offset):
                continue
            key = (p.src, p.dst, ip.proto, ip.ident)
            if ip.offset == 0:
                firsts[key] = p.id
                continue
            first = firsts.get(key)
            for sock, side, call, role in paired.get(first, ()) if first is not None else ():
                out.append((p.id, sock, side, call, role))
    return out


def _caller(sending: list[Call], starts: list[int], t: int, found: Lookup,
            mine: dict[int, set[str]]) -> tuple[Call, str] | None:
    """The sending call running at T that a neighbour request is about, and the side it is on."""
    hi = bisect_right(starts, t + SLACK_NS)
    running = [c for c in sending[:hi][::-1] if c.start_ns >= t - WAIT_NS and c.end_ns + SLACK_NS >= t]
    # the calls running at T first (the latest started first), then those the clocks' slack admits: a call
    # that began just after T did not make the request
    running.sort(key=lambda c: not c.start_ns <= t <= c.end_ns)
    for c in running:
        if _target(c) == found.target and found.asker in mine.get(c.id, {found.asker}):
            return c, "out"
    for c in running:
        if found.asker in mine.get(c.id, ()):
            return c, "out"  # a gateway's address, asked for a remote host behind it
    for c in running:
        if found.target in mine.get(c.id, ()):
            return c, "in"  # the far end asks for the call's host, to answer it
    lone = [c for c in running if c.id not in mine and c.op != "getaddrinfo"]
    if len(lone) == 1 and not found.target.startswith(("127.", "::1")):
        return lone[0], "out"  # a failed connect whose local address was never known: the only sender then
    return None
