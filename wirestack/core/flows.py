"""Flows: packets grouped into TCP connections and UDP conversations, once, for pairing and explaining. Pure.

- **TCP**: packets of one 4-tuple are split into connections by the SYN they belong to. A SYN opens a connection;
  a SYN again with the same ISN from the same side is a retransmission of it; other segments go to the latest
  connection whose sequence space they fit (the originator's segments carry sequence numbers after its ISN, the
  responder's acknowledge it). A connection whose SYN the capture did not see (it began before the capture) has
  no known originator: `opened` is False and its sides are named by its first packet.
- **UDP**: the datagrams between two endpoints, whichever way, are one conversation; the side that sent first is
  the originator.
- **ICMP errors** belong to the flow of the datagram (or segment) they quote; an ICMP error that quotes no flow
  of the capture is a flow of its own kind, "ICMP", kept so that it is told, not lost.
- ARP and other packets belong to no flow.

Everything is one pass in time order, with dictionaries keyed by the 4-tuple: O(n) in packets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..model import Addr, Packet

_HALF = 1 << 31
_MOD = 1 << 32


def after(x: int, base: int) -> bool:
    """Sequence number x is at or after base (modulo 2^32)."""
    return (x - base) % _MOD < _HALF


def is_syn(p: Packet) -> bool:
    return p.proto == "TCP" and "S" in p.flags and "A" not in p.flags


def is_synack(p: Packet) -> bool:
    return p.proto == "TCP" and "S" in p.flags and "A" in p.flags


@dataclass
class Flow:
    """One connection (TCP), conversation (UDP) or lone ICMP error. `a` is the originator (the SYN's sender,
    the first datagram's sender), `b` the responder; `packets` in time order, each with the side that sent it
    ("a" or "b"; an ICMP error is "icmp")."""

    id: int
    proto: str
    a: Addr
    b: Addr
    opened: bool = True  # TCP: its first SYN was captured (so `a` is truly the originator)
    isn: int | None = None
    peer_isn: int | None = None
    packets: list[int] = field(default_factory=list)
    sides: list[str] = field(default_factory=list)

    @property
    def key(self) -> frozenset[Addr]:
        return frozenset({self.a, self.b})

    def side_of(self, src: Addr) -> str:
        return "a" if src == self.a else "b"


@dataclass
class Flows:
    flows: list[Flow]
    of_packet: dict[int, int]  # packet id -> flow id (packets of no flow are absent)

    def get(self, packet_id: int) -> Flow | None:
        fid = self.of_packet.get(packet_id)
        return self.flows[fid - 1] if fid is not None else None


def group(packets: Sequence[Packet]) -> Flows:
    """Group `packets` (in capture order) into flows."""
    flows: list[Flow] = []
    of_packet: dict[int, int] = {}
    tcp: dict[frozenset[Addr], list[Flow]] = {}
    udp: dict[frozenset[Addr], Flow] = {}
    lone: dict[tuple[str, frozenset[Addr]], Flow] = {}  # ICMP errors quoting nothing captured

    def new(proto: str, a: Addr, b: Addr, opened: bool = True) -> Flow:
        f = Flow(len(flows) + 1, proto, a, b, opened)
        flows.append(f)
        return f

    def add(f: Flow, p: Packet, side: str) -> None:
        f.packets.append(p.id)
        f.sides.append(side)
        of_packet[p.id] = f.id

    for p in sorted(packets, key=lambda p: (p.time_ns, p.id)):
        if p.proto == "TCP":
            src, dst = (p.src, p.sport), (p.dst, p.dport)
            key = frozenset({src, dst})
            mine = tcp.setdefault(key, [])
            chosen: Flow | None = None
            if "S" in p.flags and "A" not in p.flags:
                chosen = next((f for f in reversed(mine) if f.a == src and f.isn == p.seq), None)
                if chosen is None:
                    chosen = new("TCP", src, dst)
                    chosen.isn = p.seq
                    mine.append(chosen)
            else:
                for f in reversed(mine):
                    if f.isn is None:
                        chosen = f
                        break
                    if f.a == src:
                        ok = after(p.seq, f.isn)
                    elif "A" in p.flags:
                        ok = after(p.ack, (f.isn + 1) % _MOD)
                    else:
                        ok = f.peer_isn is None or after(p.seq, f.peer_isn)
                    if ok:
                        chosen = f
                        break
                if chosen is None:
                    chosen = mine[-1] if mine else None
                if chosen is None:  # the capture began mid-connection: who opened it is unknown
                    opener = dst if "S" in p.flags else src
                    chosen = new("TCP", opener, dst if opener == src else src, opened=False)
                    mine.append(chosen)
                if "S" in p.flags and chosen.b == src:
                    chosen.peer_isn = p.seq
            add(chosen, p, chosen.side_of(src))
        elif p.proto == "UDP":
            src, dst = (p.src, p.sport), (p.dst, p.dport)
            key = frozenset({src, dst})
            conv = udp.get(key)
            if conv is None:
                conv = udp[key] = new("UDP", src, dst)
            add(conv, p, conv.side_of(src))
        elif p.quoted is not None:
            q = p.quoted
            key = frozenset({(q.src, q.sport), (q.dst, q.dport)})
            target: Flow | None = None
            if q.proto == "UDP":
                target = udp.get(key)
            elif q.proto == "TCP" and tcp.get(key):
                target = tcp[key][-1]
            if target is None:
                target = lone.get((q.proto, key))
                if target is None:
                    target = lone[(q.proto, key)] = new("ICMP", (q.src, q.sport), (q.dst, q.dport), opened=False)
            add(target, p, "icmp")
    return Flows(flows, of_packet)
