"""Pairing: which packets each socket call produced or observed, and which lie below each Python frame.

Pure functions over model records; no IO. The rules, in the order they are applied:

1. **Flows.** Packets are grouped into flows once (`flows.group`: TCP connections by 4-tuple and SYN, UDP
   conversations, ICMP errors with the flow they quote).
2. **Sockets.** A call that knows its socket's local and remote address defines an endpoint of that socket. A
   flow belongs to a traced socket when its 4-tuple matches an endpoint, seen from either side: when both ends
   are traced, one packet is "out" for the sender's socket and "in" for the receiver's. A TCP connection belongs
   to a socket only if its SYN left inside that socket's connect() (or the socket was accept()ed); packets of a
   4-tuple after the socket's close() (and a short linger) are someone else's. The same 4-tuple can serve
   several sockets one after another: each connection goes to the socket that had that flow when it began.
   An ICMP error belongs to the socket whose datagram it quotes.
3. **The resolver's flows.** glibc's resolver sends DNS queries from sockets of its own, in C, inside
   getaddrinfo(): a DNS flow (port 53 at one end) that begins inside a traced getaddrinfo() call, and the ICMP
   errors quoting it, go to that call (socket 0).
4. **Calls.** Within a socket, a packet goes to the call whose [start, end] window contains it, preferring the
   kind of call that makes such a packet (SYN: connect; data out: send; FIN: close/shutdown). Data leaves when
   the kernel lets it (Nagle): it goes to the latest write-type call. Data (and FIN) that arrives goes to the
   read that takes it. An error packet (RST, ICMP) goes to the call that fails because of it. A bare ACK outside
   every call is the kernel's own.
5. **Companions.** Packets in no flow that a call caused: the ARP / neighbour discovery lookups made for its
   packets and their answers, and a datagram's later fragments (`companions`).
6. **Frames.** A Python frame lines up with every packet paired with any call made while that frame (that
   very frame object, see `probe.py`) was on the stack.

It is long on purpose (as h11 keeps its state machine in one file): the pairing rules are stated at the top and
implemented below in one place.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from itertools import islice

from ..model import Addr, Call, Packet, quick_init
from .companions import companions, lookup
from .flows import Flow, Flows, group

TOLERANCE_NS = 100_000_000  # 100 ms

SENDS = frozenset({"send", "sendall", "sendto", "sendmsg", "write"})  # write, read: ssl.SSLSocket's
RECVS = frozenset({"recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg", "read"})
NAGLE_NS = 1_000_000_000  # data can wait in the kernel (Nagle, cork) for the ACK of what went before
CONNECTS = frozenset({"connect", "connect_ex"})
CLOSES = frozenset({"close", "shutdown"})
DNS_PORT = 53
RESOLVER_SLACK_NS = 5_000_000  # a resolver's query leaves inside its getaddrinfo(); slack for clocks
# errnos an incoming packet can explain: RST -> refused/reset/broken pipe; ICMP -> refused/unreachable
_RST_ERRNOS = frozenset({111, 104, 32})
_ICMP_ERRNOS = frozenset({111, 113, 101, 112, 90, 110})


@quick_init
@dataclass(frozen=True, slots=True)
class Pair:
    packet: int
    socket: int  # 0: the resolver's (C-made) traffic of a getaddrinfo call
    side: str  # "out": the packet left this socket; "in": it arrived at it
    call: int | None  # None: the kernel sent or took it with no call of the program involved
    role: str  # "sent", "received" or "kernel"


@dataclass(frozen=True)
class Alignment:
    pairs: tuple[Pair, ...]
    flows: Flows = field(default_factory=lambda: Flows([], {}))
    call_packets: dict[int, tuple[int, ...]] = field(default_factory=dict)
    frame_packets: dict[int, tuple[int, ...]] = field(default_factory=dict)
    socket_packets: dict[int, tuple[int, ...]] = field(default_factory=dict)
    packet_pairs: dict[int, tuple[Pair, ...]] = field(default_factory=dict)
    ends: dict[int, dict[str, tuple[int, ...]]] = field(default_factory=dict)  # flow id -> side -> sockets
    resolver: dict[int, int] = field(default_factory=dict)  # flow id -> getaddrinfo call id

    def packets_of_call(self, call_id: int) -> tuple[int, ...]:
        return self.call_packets.get(call_id, ())

    def packets_below(self, instance: int) -> tuple[int, ...]:
        return self.frame_packets.get(instance, ())

    def pairs_of(self, packet_id: int) -> tuple[Pair, ...]:
        return self.packet_pairs.get(packet_id, ())

    def sockets_at(self, flow_id: int, side: str) -> tuple[int, ...]:
        """The traced sockets at one side ("a": originator, "b": responder) of a flow."""
        return self.ends.get(flow_id, {}).get(side, ())


@quick_init
@dataclass(frozen=True, slots=True)
class Endpoint:
    socket: int
    proto: str
    local: Addr
    remote: Addr | None
    birth: int  # start of the first call that showed this flow
    opens: tuple[tuple[int, int], ...] = ()  # [start, end] of the socket's connect() calls
    accepted: bool = False  # made by accept(): the far end opened the connection
    until: int | None = None  # end of its close(): later packets of the 4-tuple are someone else's


@lru_cache(maxsize=4096)
def norm_host(host: str) -> str:
    """One spelling per address: '::ffff:127.0.0.1' -> '127.0.0.1', 'fe80::1%lo' -> 'fe80::1'."""
    host = host.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def proto_of(call: Call) -> str:
    return {"SOCK_STREAM": "TCP", "SOCK_DGRAM": "UDP"}.get(call.kind, "")


def endpoints(calls: Iterable[Call]) -> list[Endpoint]:
    """Every (socket, local, remote) flow that the calls reveal, with when it was first seen."""
    seen: dict[tuple[int, Addr, Addr | None], Endpoint] = {}
    opens: dict[int, list[tuple[int, int]]] = defaultdict(list)
    accepted: set[int] = set()
    until: dict[int, int] = {}
    ordered = sorted(calls, key=lambda c: c.start_ns)
    for c in ordered:
        if c.op in CONNECTS:
            opens[c.socket].append((c.start_ns, c.end_ns))
        elif c.op == "accept" and not c.failed:
            accepted.add(c.socket)
        elif c.op == "close":
            until[c.socket] = max(until.get(c.socket, 0), c.end_ns)
    for c in ordered:
        proto = proto_of(c)
        if not c.socket or not proto or c.local is None or not c.local[1]:
            continue
        local = (norm_host(c.local[0]), c.local[1])
        remote = (norm_host(c.remote[0]), c.remote[1]) if c.remote is not None else None
        key = (c.socket, local, remote)
        if key not in seen:
            seen[key] = Endpoint(c.socket, proto, local, remote, c.start_ns, tuple(opens.get(c.socket, ())),
                                 c.socket in accepted, until.get(c.socket))
    return list(seen.values())


SYN_MARGIN_NS = 10_000_000  # a SYN leaves inside its connect() call; 10 ms is for clock and scheduling slack
LINGER_NS = 1_000_000_000  # packets of a closed socket's flow (FIN, last ACKs) for this long after close()


def _opened_by(e: Endpoint, flow: Flow, first: Packet | None, t0: int) -> bool:
    """Could socket `e` have opened (or accepted) the TCP connection whose first packet is `first`? Another
    program may reuse the same 4-tuple moments later: its SYN falls in none of our connect() calls."""
    if e.proto != "TCP" or first is None or not flow.opened:
        return True
    if flow.a[1] == e.local[1] and _hostmatches(e.local[0], norm_host(flow.a[0])):
        return any(start - SYN_MARGIN_NS <= t0 <= end + SYN_MARGIN_NS for start, end in e.opens)
    return e.accepted


_WILDCARD = frozenset({"0.0.0.0", "::", ""})


def _hostmatches(ours: str, theirs: str) -> bool:
    if ours in _WILDCARD or ours == theirs:
        return True
    try:
        ipaddress.ip_address(ours)
    except ValueError:
        return True  # a host name we never resolved ourselves: trust the port
    return False


def matches(ep: Endpoint, proto: str, local: Addr, remote: Addr) -> bool:
    if ep.proto != proto or ep.local[1] != local[1] or not _hostmatches(ep.local[0], local[0]):
        return False
    if ep.remote is None:
        return proto == "UDP"  # an unconnected datagram socket takes any peer
    return ep.remote[1] == remote[1] and _hostmatches(ep.remote[0], remote[0])


def choose(cands: list[Endpoint], t: int) -> Endpoint | None:
    """The socket that had this flow at time t: the latest born by then, else the next one born after."""
    before = [e for e in cands if e.birth <= t]
    if before:
        return max(before, key=lambda e: e.birth)
    return min(cands, key=lambda e: e.birth) if cands else None


def _owner(cands: list[Endpoint], flow: Flow, first: Packet | None, t0: int, t1: int | None,
           t: int) -> Endpoint | None:
    """The socket object that handled a packet at time t of a flow that began at t0 (the next flow on this
    4-tuple begins at t1). One connection can pass from socket object to socket object (ssl's wrap_socket
    detaches the plain socket; fromfd, dup): the latest one to take it over by time t."""
    cands = [e for e in cands if e.until is None or t <= e.until + LINGER_NS]
    first_owner = choose([e for e in cands if _opened_by(e, flow, first, t0)], t0)
    if first_owner is None:
        return None
    nxt = choose(cands, t1) if t1 is not None else None  # the socket that opened the next connection
    limit = nxt.birth if nxt is not None and nxt is not first_owner else None
    heirs = [e for e in cands if first_owner.birth < e.birth <= t and (limit is None or e.birth < limit)]
    return max(heirs, key=lambda e: e.birth) if heirs else first_owner


class Timeline:
    """Calls sorted by start, searchable by time in O(log n) (pairing 100,000 calls must stay near-linear).

    "Which calls were running at t" needs to look back as far as the longest call lasted; one long call (a
    recv that waited ten seconds) would make every query scan ten seconds of short calls. So the calls are also
    kept in classes by duration (each 16 times the one before), and each class is looked back into only as far
    as its own longest call."""

    def __init__(self, calls: Sequence[Call]) -> None:
        self.calls = list(calls)
        self.starts = [c.start_ns for c in self.calls]
        self.longest = max((c.end_ns - c.start_ns for c in self.calls), default=0)
        self._classes: list[tuple[int, list[int], Sequence[int]]]  # (longest in the class, starts, indices)
        if len(self.calls) <= 32:  # a socket's few calls: one class
            self._classes = [(self.longest, self.starts, range(len(self.calls)))]
            return
        by_class: dict[int, list[int]] = defaultdict(list)
        for i, c in enumerate(self.calls):
            by_class[(c.end_ns - c.start_ns).bit_length() // 4].append(i)
        self._classes = [(max(self.calls[i].end_ns - self.calls[i].start_ns for i in ix),
                          [self.starts[i] for i in ix], ix) for _, ix in sorted(by_class.items())]

    def _running(self, t: int, since: int) -> list[int]:
        """Indices of calls that started by t and ended at `since` or later."""
        if len(self._classes) == 1:
            longest, starts, ix = self._classes[0]
            calls = self.calls
            return [j for j in range(bisect_left(starts, since - longest), bisect_right(starts, t))
                    if calls[j].end_ns >= since]
        out: list[int] = []
        for longest, starts, ix in self._classes:
            for k in range(bisect_left(starts, since - longest), bisect_right(starts, t)):
                j = ix[k]
                if self.calls[j].end_ns >= since:
                    out.append(j)
        out.sort()
        return out

    def around(self, t: int, before: int = 0) -> list[Call]:
        """Calls that started by t and ended at t - before or later, in start order."""
        return [self.calls[j] for j in self._running(t, t - before)]

    def latest(self, t: int) -> Call | None:
        """The call that started last by time t."""
        i = bisect_right(self.starts, t)
        return self.calls[i - 1] if i else None

    def first_ending_from(self, t: int) -> Call | None:
        """The first call (in start order) that ended at t or later."""
        best: int | None = None
        for longest, starts, ix in self._classes:
            for k in range(bisect_left(starts, t - longest), len(starts)):
                j = ix[k]
                if best is not None and j > best:
                    break
                if self.calls[j].end_ns >= t:
                    best = j
                    break
        return self.calls[best] if best is not None else None

    def after(self, t: int) -> Iterator[Call]:
        """Calls that started after t, in order (lazily: callers usually want the first)."""
        calls = self.calls
        return (calls[j] for j in range(bisect_right(self.starts, t), len(calls)))


class _SocketCalls:
    """One socket's calls, with the timelines `_call_for` asks for built on first use (most sockets of a large
    run need one or two of them)."""

    def __init__(self, calls: Sequence[Call]) -> None:
        self.calls = calls
        self.all = Timeline(calls)

    @cached_property
    def sends(self) -> Timeline:
        return Timeline([c for c in self.calls if c.op in SENDS])

    @cached_property
    def recvs(self) -> Timeline:
        return Timeline([c for c in self.calls if c.op in RECVS])

    @cached_property
    def failing_rst(self) -> Timeline:
        return Timeline([c for c in self.calls if c.errno in _RST_ERRNOS or c.reported in _RST_ERRNOS])

    @cached_property
    def failing_icmp(self) -> Timeline:
        return Timeline([c for c in self.calls if c.errno in _ICMP_ERRNOS or c.reported in _ICMP_ERRNOS])


def _call_for(p: Packet, side: str, calls: _SocketCalls) -> tuple[int | None, str]:
    """Which of one socket's calls sent or observed packet p."""
    t = p.time_ns
    if side == "in" and ("R" in p.flags or p.quoted is not None):
        # An error packet is observed by the call that fails because of it: the one running when it came,
        # one that just ended (clock outliers), or the next one (a UDP recv learns of ICMP later).
        failing = calls.failing_rst if "R" in p.flags else calls.failing_icmp
        during = failing.around(t)
        last = failing.latest(t)
        just_before = [last] if last is not None and last.end_ns < t <= last.end_ns + TOLERANCE_NS else []
        later = list(islice(failing.after(t), 1))
        for hits in (during, just_before, later):
            if hits:
                return hits[0].id, "received"
    if side == "out" and p.payload:
        # Data leaves when the kernel lets it (Nagle may hold it until an ACK comes): it was written by the
        # latest write-type call, even if another call (a recv) is running by then.
        write = calls.sends.latest(t)
        if write is not None and t <= write.end_ns + NAGLE_NS:
            return write.id, "sent"
    if side == "in" and (p.payload or "F" in p.flags) and p.proto in ("TCP", "UDP"):
        # Data (and the end of the data, FIN) is observed by the read that takes it: the one running, or the
        # next one, whatever else (a connect returning, a send) runs when it arrives.
        read = calls.recvs.first_ending_from(t)
        if read is not None:
            return read.id, "received"
    covering = calls.all.around(t)
    if covering:
        wanted = _ops_for(p, side)
        best = [c for c in covering if c.op in wanted] or covering
        return best[-1].id, "sent" if side == "out" else "received"
    if p.proto == "TCP" and p.flags == "A" and not p.payload:
        return None, "kernel"  # a bare ACK: the kernel's own
    if side == "out":
        last = calls.all.latest(t)
        if last is not None and t <= last.end_ns + TOLERANCE_NS and last.op in _ops_for(p, side):
            return last.id, "sent"
        return None, "kernel"
    observers = RECVS if p.payload and p.proto == "TCP" else None
    for c in calls.all.after(t):
        if observers is None or c.op in observers or c.failed:
            return c.id, "received"
    return None, "kernel"


def _ops_for(p: Packet, side: str) -> frozenset[str]:
    if p.proto == "TCP" and "S" in p.flags:
        return CONNECTS | {"accept"}
    if side == "out":
        if p.payload:
            return SENDS
        if p.proto == "TCP" and ("F" in p.flags or "R" in p.flags):
            return CLOSES
        return SENDS | CLOSES
    return RECVS | CONNECTS | {"getsockopt", "accept"} | SENDS


Index = dict[tuple[str, int], list[Endpoint]]


def index_endpoints(eps: list[Endpoint]) -> Index:
    """Endpoints by (protocol, local port): a packet only looks at the sockets of its own ports."""
    out: Index = defaultdict(list)
    for e in eps:
        out[(e.proto, e.local[1])].append(e)
    return out


def candidates(index: Index, proto: str, local: Addr, remote: Addr) -> list[Endpoint]:
    """The traced sockets that had this flow (at some time)."""
    return [e for e in index.get((proto, local[1]), ()) if matches(e, proto, local, remote)]


def _sides(flow: Flow, p: Packet, index: Index) -> list[tuple[str, list[Endpoint]]]:
    """For packet p of `flow`: ("out", sockets it may have left) and ("in", sockets it may have reached)."""
    if p.quoted is not None:  # an ICMP error comes back to the sender of the datagram it quotes
        q = p.quoted
        local, remote = (norm_host(q.src), q.sport), (norm_host(q.dst), q.dport)
        cands = candidates(index, q.proto, local, remote)
        return [("in", cands)] if cands else []
    if p.proto not in ("TCP", "UDP"):
        return []
    out = []
    for side, (lh, lp), (rh, rp) in (("out", (p.src, p.sport), (p.dst, p.dport)),
                                      ("in", (p.dst, p.dport), (p.src, p.sport))):
        if (p.proto, lp) not in index:
            continue
        cands = candidates(index, p.proto, (norm_host(lh), lp), (norm_host(rh), rp))
        if cands:
            out.append((side, cands))
    return out


def resolver_flows(calls: Sequence[Call], flows: Flows, packets: dict[int, Packet]) -> dict[int, int]:
    """Flow id -> the getaddrinfo call it began inside: the resolver's own DNS traffic (rule 3)."""
    lookups = Timeline(sorted((c for c in calls if c.op == "getaddrinfo"), key=lambda c: c.start_ns))
    if not lookups.calls:
        return {}
    out = {}
    for f in flows.flows:
        if f.proto not in ("UDP", "TCP") or DNS_PORT not in (f.a[1], f.b[1]) or not f.packets:
            continue
        t = packets[f.packets[0]].time_ns
        hits = lookups.around(t + RESOLVER_SLACK_NS, before=2 * RESOLVER_SLACK_NS)
        if hits:  # the call the query left inside, else the nearest (a lookup that began or ended just then)
            out[f.id] = min(hits, key=lambda c: (max(c.start_ns - t, t - c.end_ns, 0), -c.start_ns)).id
    return out


def align(calls: Sequence[Call], packets: Sequence[Packet], flows: Flows | None = None,
          index: Index | None = None) -> Alignment:
    """Pair packets with calls, and calls' packets with the frames they were made from. `index`: the calls'
    endpoints (`index_endpoints(endpoints(calls))`), when the caller has them."""
    flows = flows if flows is not None else group(packets)
    by_id = {p.id: p for p in packets}
    index = index if index is not None else index_endpoints(endpoints(calls))
    grouped: dict[int, list[Call]] = defaultdict(list)
    for c in sorted(calls, key=lambda c: (c.start_ns, c.id)):
        if c.socket:
            grouped[c.socket].append(c)
    by_socket = {k: _SocketCalls(v) for k, v in grouped.items()}
    # each flow's start, and the start of the next flow on the same 4-tuple (port reuse)
    starts: dict[int, int] = {}
    next_start: dict[int, int | None] = {}
    last_on: dict[frozenset[Addr], Flow] = {}
    for f in sorted((f for f in flows.flows if f.packets), key=lambda f: by_id[f.packets[0]].time_ns):
        starts[f.id] = by_id[f.packets[0]].time_ns
        prev = last_on.get(f.key)
        if prev is not None:
            next_start[prev.id] = starts[f.id]
        last_on[f.key] = f
    resolver = resolver_flows(calls, flows, by_id)

    pairs: list[Pair] = []
    ends: dict[int, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for f in flows.flows:
        if not f.packets:
            continue
        t0, t1 = starts[f.id], next_start.get(f.id)
        first = by_id[f.packets[0]]
        call_of_lookup = resolver.get(f.id)
        for pid, side_in_flow in zip(f.packets, f.sides, strict=True):
            p = by_id[pid]
            if call_of_lookup is not None:
                origin = f.a if f.a[1] != DNS_PORT else f.b  # the resolver's end of the flow
                mine = p.quoted is not None or (p.dst, p.dport) == origin
                pairs.append(Pair(pid, 0, "in" if mine else "out", call_of_lookup, "received" if mine else "sent"))
                continue
            for side, cands in _sides(f, p, index):
                ep = _owner(cands, f, first, t0, t1, p.time_ns)
                if ep is None:
                    continue
                call, role = _call_for(p, side, by_socket[ep.socket])
                pairs.append(Pair(pid, ep.socket, side, call, role))
                # which end of the flow the socket is at
                if side_in_flow == "icmp":
                    q = p.quoted
                    ends[f.id][f.side_of((q.src, q.sport)) if q is not None else "a"].add(ep.socket)
                else:
                    sender = side_in_flow
                    ends[f.id][sender if side == "out" else ("b" if sender == "a" else "a")].add(ep.socket)

    # rule 5: what the calls caused outside every flow (neighbour lookups, later fragments; see core.companions)
    if calls and any(p.id not in flows.of_packet for p in packets):
        flow_pairs: dict[int, list[tuple[int, str, int | None, str]]] = defaultdict(list)
        for x in pairs:
            flow_pairs[x.packet].append((x.socket, x.side, x.call, x.role))
        pairs += [Pair(*c) for c in companions(calls, packets, flow_pairs)]

    call_packets: dict[int, list[int]] = defaultdict(list)
    socket_packets: dict[int, list[int]] = defaultdict(list)
    packet_pairs: dict[int, list[Pair]] = defaultdict(list)
    when = {p.id: p.time_ns for p in packets}
    pairs.sort(key=lambda x: (when[x.packet], x.packet))
    for pair in pairs:
        if pair.socket:
            socket_packets[pair.socket].append(pair.packet)
        packet_pairs[pair.packet].append(pair)
        if pair.call is not None:
            call_packets[pair.call].append(pair.packet)
    frame_packets: dict[int, set[int]] = defaultdict(set)
    for c in calls:
        of_call = call_packets.get(c.id)
        if of_call:
            for fr in c.frames:
                frame_packets[fr.instance].update(of_call)
    return Alignment(
        tuple(pairs), flows,
        {k: tuple(dict.fromkeys(v)) for k, v in call_packets.items()},
        {k: tuple(sorted(v)) for k, v in frame_packets.items() if v},
        {k: tuple(dict.fromkeys(v)) for k, v in socket_packets.items()},
        {k: tuple(v) for k, v in packet_pairs.items()},
        {fid: {side: tuple(sorted(s)) for side, s in sides.items()} for fid, sides in ends.items()},
        resolver,
    )


def traced_packets(calls: Sequence[Call], packets: Sequence[Packet]) -> list[Packet]:
    """Only the packets of the traced program's flows (other traffic on the interface stays out): those of a flow
    that pairs with a traced socket (by 4-tuple, time, and for TCP the connect() that opened the connection), and
    the resolver's flows of its getaddrinfo() calls. A cheap first cut on ports comes first."""
    index = index_endpoints(endpoints(calls))
    near = nearby(calls, packets, index)
    paired = align(calls, near, index=index).packet_pairs
    return [p for p in near if p.id in paired]


def nearby(calls: Sequence[Call], packets: Sequence[Packet], index: Index) -> list[Packet]:
    """The cheap first cut of `traced_packets`: packets on a port of a traced socket (`index`), or DNS when
    the program resolved names."""
    lookups = any(c.op == "getaddrinfo" for c in calls)
    return [p for p in packets if _near(p, index, lookups)]


def _near(p: Packet, index: Index, lookups: bool) -> bool:
    if p.proto == "ARP" or p.proto == "other" and p.src or p.proto == "ICMPv6" and lookup(p) is not None:
        return bool(index) or lookups  # a neighbour lookup or a later fragment: rule 5 says whose
    if p.quoted is not None:
        q = p.quoted
        return (q.proto, q.sport) in index or (lookups and DNS_PORT in (q.sport, q.dport))
    if p.proto not in ("TCP", "UDP"):
        return False
    if lookups and DNS_PORT in (p.sport, p.dport):
        return True
    return (p.proto, p.sport) in index or (p.proto, p.dport) in index
