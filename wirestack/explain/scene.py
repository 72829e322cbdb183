"""What happened, reconstructed from the packets in both directions, before anything is said about it. Pure.

For every TCP connection: who opened it (the client, `a`) and who answered (the server, `b`), the handshake's
outcome, the bytes each side sent (by sequence coverage, so retransmissions are not counted twice), each side's
first FIN and RST, zero windows, retransmitted segments, and data a side sent after the other side's FIN had
reached it. For every UDP conversation: the datagrams each way and the ICMP errors that quote them. Each end is
an `End`: its address and the traced sockets there (none, one, or on both ends at once: either end may be the
program's). Nothing here depends on which end is traced; rules (`explain.rules`) say what it means.

One pass over each flow's packets: O(n) in packets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..core.flows import Flow, after, is_syn, is_synack
from ..core.pairing import Alignment
from ..model import Addr, Call, Packet, quick_init

_MOD = 1 << 32


@quick_init
@dataclass(frozen=True, slots=True)
class End:
    """One end of a flow: its address, and the traced sockets there (with their processes)."""

    addr: Addr
    sockets: tuple[int, ...] = ()
    pids: tuple[int, ...] = ()

    @property
    def traced(self) -> bool:
        return bool(self.sockets)


@dataclass
class Side:
    """What one side of a TCP connection did."""

    data: list[Packet] = field(default_factory=list)  # segments with payload, as sent
    bytes: int = 0  # distinct payload bytes (highest sequence offset reached)
    retransmitted: list[Packet] = field(default_factory=list)
    fin: Packet | None = None
    rst: Packet | None = None
    zero_window: list[Packet] = field(default_factory=list)
    after_peer_fin: Packet | None = None  # the first data it sent once the other side's FIN had come
    last_ack: Packet | None = None
    base: int | None = None  # sequence number of its first byte
    hi: int = 0  # offset past its highest byte sent

    def offset(self, p: Packet) -> int:
        return (p.seq - (self.base or 0)) % _MOD


@dataclass
class Connection:
    flow: Flow
    client: End  # the side that sent the SYN (a)
    server: End  # the side that answered (b)
    packets: list[tuple[Packet, str]]  # (packet, "a" | "b" | "icmp") in time order
    syns: list[Packet] = field(default_factory=list)
    synacks: list[Packet] = field(default_factory=list)
    outcome: str = "unknown"  # "established", "refused", "unanswered", "icmp", "unknown" (began before capture)
    refusal: Packet | None = None  # the RST that answered the SYN
    icmp: list[Packet] = field(default_factory=list)
    a: Side = field(default_factory=Side)
    b: Side = field(default_factory=Side)

    @property
    def id(self) -> int:
        return self.flow.id

    def side(self, s: str) -> Side:
        return self.a if s == "a" else self.b

    def end(self, s: str) -> End:
        return self.client if s == "a" else self.server

    def other(self, s: str) -> str:
        return "b" if s == "a" else "a"

    def side_of(self, p: Packet) -> str:
        return "a" if (p.src, p.sport) == self.flow.a else "b"

    @property
    def first_packet(self) -> Packet:
        return self.packets[0][0]

    @property
    def last_packet(self) -> Packet:
        return self.packets[-1][0]


@dataclass
class Conversation:
    """A UDP conversation: datagrams between two endpoints, both ways, and the ICMP errors that quote them."""

    flow: Flow
    first: End  # the side that sent first (a)
    second: End
    datagrams: list[tuple[Packet, str]] = field(default_factory=list)
    icmp: list[Packet] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.flow.id

    def sent_by(self, s: str) -> list[Packet]:
        return [p for p, side in self.datagrams if side == s]

    def end(self, s: str) -> End:
        return self.first if s == "a" else self.second


@dataclass
class Scene:
    connections: list[Connection]
    conversations: list[Conversation]
    lone_icmp: list[Packet]  # ICMP errors quoting nothing the capture saw
    other: list[Packet]  # ARP and anything else in no flow


def _end(addr: Addr, sockets: tuple[int, ...], pids_of: dict[int, int]) -> End:
    return End(addr, sockets, tuple(sorted({pids_of[s] for s in sockets if s in pids_of})))


def build(packets: Sequence[Packet], alignment: Alignment, calls: Sequence[Call] = ()) -> Scene:
    by_id = {p.id: p for p in packets}
    pids_of: dict[int, int] = {}
    for c in calls:
        if c.socket and c.socket not in pids_of:
            pids_of[c.socket] = c.pid
    connections: list[Connection] = []
    conversations: list[Conversation] = []
    lone: list[Packet] = []
    for f in alignment.flows.flows:
        if not f.packets:
            continue
        rows = [(by_id[pid], side) for pid, side in zip(f.packets, f.sides, strict=True)]
        a = _end(f.a, alignment.sockets_at(f.id, "a"), pids_of)
        b = _end(f.b, alignment.sockets_at(f.id, "b"), pids_of)
        if f.proto == "TCP":
            connections.append(_connection(f, a, b, rows))
        elif f.proto == "UDP":
            conv = Conversation(f, a, b)
            for p, side in rows:
                (conv.icmp.append(p) if side == "icmp" else conv.datagrams.append((p, side)))
            conversations.append(conv)
        else:
            lone.extend(p for p, _ in rows)
    in_flow = alignment.flows.of_packet
    other = [p for p in packets if p.id not in in_flow]
    return Scene(connections, conversations, lone, other)


def _connection(f: Flow, a: End, b: End, rows: list[tuple[Packet, str]]) -> Connection:
    c = Connection(f, a, b, rows)
    fin_arrived: dict[str, bool] = {"a": False, "b": False}  # the other side's FIN has reached this side
    for p, s in rows:
        if s == "icmp":
            c.icmp.append(p)
            continue
        me = c.side(s)
        if is_syn(p) and s == "a":
            c.syns.append(p)
            me.base = (p.seq + 1) % _MOD
            continue
        if is_synack(p) and s == "b":
            c.synacks.append(p)
            me.base = (p.seq + 1) % _MOD
            if c.outcome in ("unknown", "unanswered") and c.syns:
                c.outcome = "established"
            continue
        if "R" in p.flags:
            if c.syns and not c.synacks and s == "b" and c.refusal is None and c.outcome != "established":
                c.refusal = p
                c.outcome = "refused"
            elif me.rst is None:
                me.rst = p
            continue
        if me.base is None:  # the capture began mid-connection: count from what it saw
            me.base = p.seq
        if "A" in p.flags:
            me.last_ack = p
        if p.window == 0 and "A" in p.flags and not p.payload:
            me.zero_window.append(p)
        if p.payload:
            off = me.offset(p)
            end = off + len(p.payload)
            if off < me.hi and end <= me.hi:
                me.retransmitted.append(p)
            else:
                me.data.append(p)
                me.hi = max(me.hi, end)
            if fin_arrived[s] and me.after_peer_fin is None:
                me.after_peer_fin = p
        if "F" in p.flags and me.fin is None:
            me.fin = p
            fin_arrived[c.other(s)] = True
    c.a.bytes, c.b.bytes = c.a.hi, c.b.hi
    if c.outcome == "unknown" and c.syns:
        c.outcome = "icmp" if c.icmp else "unanswered"
    return c


def first_ack(c: Connection, s: str, p: Packet) -> Packet | None:
    """The first packet from the other side of `s` acknowledging all of `p` (sent by `s`)."""
    end = (p.seq + len(p.payload) + (1 if "F" in p.flags else 0)) % _MOD
    other = c.other(s)
    for q, side in c.packets:
        if side == other and q.time_ns >= p.time_ns and "A" in q.flags and after(q.ack, end):
            return q
    return None
