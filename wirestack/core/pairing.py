"""Pairing: which packets each socket call produced or observed, and which lie below each Python frame.

Pure functions over model records; no IO. The rules, in the order they are applied:

1. **Flows.** A call that knows its socket's local and remote address defines an endpoint of that socket. A
   packet belongs to a traced socket when its 4-tuple matches an endpoint, seen from either side (when both
   ends are traced, one packet is "out" for the sender and "in" for the receiver). An ICMP error belongs to
   the socket whose datagram it quotes.
2. **Port reuse.** The same 4-tuple can serve several sockets one after another. TCP packets are first grouped
   into connections by sequence numbers (a SYN opens one; retransmitted SYNs carry the same ISN; the peer's
   ACKs acknowledge it), so a late RST stays with the SYN it answers. A connection, or a UDP datagram, goes to
   the socket that had that flow most recently when it started (or, failing that, the next one to have it).
3. **Calls.** Within a socket, a packet goes to the call whose [start, end] window contains it, preferring
   the kind of call that makes such a packet (SYN: connect; data out: send; FIN: close/shutdown). Otherwise an
   outgoing packet goes to the call that ended just before it (within `TOLERANCE_NS`) unless it is a bare ACK,
   which the kernel sends on its own. An incoming packet goes to a call that just failed with the error that
   packet explains (clock outliers: one RST in 1,600 was stamped 63 ms late), or to the next call on the socket
   that observes it (the recv that reads the data, the call that meets the RST or FIN).
4. **Frames.** A Python frame lines up with every packet paired with any call made while that frame (that
   very frame object, see `probe.py`) was on the stack.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from itertools import islice

from ..model import Addr, Call, ExceptionInfo, Packet

TOLERANCE_NS = 100_000_000  # 100 ms

SENDS = {"send", "sendall", "sendto", "sendmsg", "write"}  # write, read: ssl.SSLSocket's
RECVS = {"recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg", "read"}
NAGLE_NS = 1_000_000_000  # data can wait in the kernel (Nagle, cork) for the ACK of what went before
CONNECTS = {"connect", "connect_ex"}
CLOSES = {"close", "shutdown"}
# errnos an incoming packet can explain: RST -> refused/reset/broken pipe; ICMP -> refused/unreachable
_RST_ERRNOS = frozenset({111, 104, 32})
_ICMP_ERRNOS = frozenset({111, 113, 101, 112, 90})


@dataclass(frozen=True)
class Pair:
    packet: int
    socket: int
    side: str  # "out": the packet left this socket; "in": it arrived at it
    call: int | None  # None: the kernel sent or took it with no call of the program involved
    role: str  # "sent", "received" or "kernel"


@dataclass(frozen=True)
class KernelPairing:
    event: int  # KernelEvent id
    call: int | None
    packets: tuple[int, ...]


@dataclass(frozen=True)
class Alignment:
    pairs: tuple[Pair, ...]
    call_packets: dict[int, tuple[int, ...]] = field(default_factory=dict)
    frame_packets: dict[int, tuple[int, ...]] = field(default_factory=dict)
    socket_packets: dict[int, tuple[int, ...]] = field(default_factory=dict)
    packet_pairs: dict[int, tuple[Pair, ...]] = field(default_factory=dict)
    kernel: dict[int, KernelPairing] = field(default_factory=dict)  # by event id (see kevents.py)

    def kernel_of_call(self, call_id: int) -> list[int]:
        return self._kernel_by_call.get(call_id, [])

    def kernel_of_packet(self, packet_id: int) -> list[int]:
        return self._kernel_by_packet.get(packet_id, [])

    @cached_property
    def _kernel_by_call(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for k, p in sorted(self.kernel.items()):
            if p.call is not None:
                out[p.call].append(k)
        return out

    @cached_property
    def _kernel_by_packet(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for k, p in sorted(self.kernel.items()):
            for pid in p.packets:
                out[pid].append(k)
        return out

    def packets_of_call(self, call_id: int) -> tuple[int, ...]:
        return self.call_packets.get(call_id, ())

    def packets_below(self, instance: int) -> tuple[int, ...]:
        return self.frame_packets.get(instance, ())

    def pairs_of(self, packet_id: int) -> tuple[Pair, ...]:
        return self.packet_pairs.get(packet_id, ())


@dataclass(frozen=True)
class _Endpoint:
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


def _proto_of(call: Call) -> str:
    return {"SOCK_STREAM": "TCP", "SOCK_DGRAM": "UDP"}.get(call.kind, "")


def endpoints(calls: Iterable[Call]) -> list[_Endpoint]:
    """Every (socket, local, remote) flow that the calls reveal, with when it was first seen."""
    seen: dict[tuple[int, Addr, Addr | None], _Endpoint] = {}
    opens: dict[int, list[tuple[int, int]]] = defaultdict(list)
    accepted: set[int] = set()
    until: dict[int, int] = {}
    for c in calls:
        if c.op in CONNECTS:
            opens[c.socket].append((c.start_ns, c.end_ns))
        elif c.op == "accept":
            accepted.add(c.socket)
        elif c.op == "close":
            until[c.socket] = max(until.get(c.socket, 0), c.end_ns)
    for c in sorted(calls, key=lambda c: c.start_ns):
        proto = _proto_of(c)
        if not c.socket or not proto or not isinstance(c.local, tuple) or not c.local[1]:
            continue
        local = (norm_host(c.local[0]), c.local[1])
        remote = (norm_host(c.remote[0]), c.remote[1]) if isinstance(c.remote, tuple) else None
        key = (c.socket, local, remote)
        if key not in seen:
            seen[key] = _Endpoint(c.socket, proto, local, remote, c.start_ns, tuple(opens.get(c.socket, ())),
                                  c.socket in accepted, until.get(c.socket))
    return list(seen.values())


SYN_MARGIN_NS = 10_000_000  # a SYN leaves inside its connect() call; 10 ms is for clock and scheduling slack
LINGER_NS = 1_000_000_000  # packets of a closed socket's flow (FIN, last ACKs) for this long after close()


def _opened_by(e: _Endpoint, first: Packet | None, t0: int) -> bool:
    """Could socket `e` have opened (or accepted) the TCP connection whose first packet is `first`? Another
    program may reuse the same 4-tuple moments later: its SYN falls in none of our connect() calls."""
    if e.proto != "TCP" or first is None or "S" not in first.flags or "A" in first.flags:
        return True
    if first.sport == e.local[1]:
        return any(start - SYN_MARGIN_NS <= t0 <= end + SYN_MARGIN_NS for start, end in e.opens)
    return e.accepted


_WILDCARD = {"0.0.0.0", "::", ""}


def _hostmatches(ours: str, theirs: str) -> bool:
    if ours in _WILDCARD or ours == theirs:
        return True
    try:
        ipaddress.ip_address(ours)
    except ValueError:
        return True  # a host name we never resolved ourselves: trust the port
    return False


def matches(ep: _Endpoint, proto: str, local: Addr, remote: Addr) -> bool:
    if ep.proto != proto or ep.local[1] != local[1] or not _hostmatches(ep.local[0], local[0]):
        return False
    if ep.remote is None:
        return proto == "UDP"  # an unconnected datagram socket takes any peer
    return ep.remote[1] == remote[1] and _hostmatches(ep.remote[0], remote[0])


def choose(cands: list[_Endpoint], t: int) -> _Endpoint | None:
    """The socket that had this flow at time t: the latest born by then, else the next one born after."""
    before = [e for e in cands if e.birth <= t]
    if before:
        return max(before, key=lambda e: e.birth)
    return min(cands, key=lambda e: e.birth) if cands else None


def _owner(cands: list[_Endpoint], t0: int, t1: int | None, t: int,
           first_packet: Packet | None = None) -> _Endpoint | None:
    """The socket object that handled a packet at time t of a connection that began at t0 (the next one on this
    4-tuple begins at t1). One connection can pass from socket object to socket object (ssl's wrap_socket
    detaches the plain socket; fromfd, dup): the latest one to take it over by time t."""
    cands = [e for e in cands if e.until is None or t <= e.until + LINGER_NS]
    first = choose([e for e in cands if _opened_by(e, first_packet, t0)], t0)
    if first is None:
        return None
    nxt = choose(cands, t1) if t1 is not None else None  # the socket that opened the next connection
    limit = nxt.birth if nxt is not None and nxt is not first else None
    heirs = [e for e in cands if first.birth < e.birth <= t and (limit is None or e.birth < limit)]
    return max(heirs, key=lambda e: e.birth) if heirs else first


def _tcp_connections(packets: Sequence[Packet]) -> dict[int, int]:
    """Packet id -> connection number, grouping each TCP 4-tuple's packets by the SYN they belong to."""
    out: dict[int, int] = {}
    # per unordered 4-tuple: list of [conn number, initiator (host, port), isn, peer isn or None]
    conns: dict[frozenset[Addr], list[list[object]]] = defaultdict(list)
    counter = 0
    half = 1 << 31

    def after(x: int, base: int) -> bool:
        return (x - base) % (1 << 32) < half

    for p in packets:
        if p.proto != "TCP":
            continue
        key = frozenset({(p.src, p.sport), (p.dst, p.dport)})
        mine = conns[key]
        src = (p.src, p.sport)
        chosen: list[object] | None = None
        if "S" in p.flags and "A" not in p.flags:
            chosen = next((c for c in reversed(mine) if c[1] == src and c[2] == p.seq), None)
            if chosen is None:
                counter += 1
                chosen = [counter, src, p.seq, None]
                mine.append(chosen)
        else:
            for c in reversed(mine):
                isn, peer_isn = c[2], c[3]
                assert isinstance(isn, int)
                if c[1] == src:
                    ok = after(p.seq, isn)
                elif "A" in p.flags:
                    ok = after(p.ack, isn + 1)
                else:
                    ok = peer_isn is None or (isinstance(peer_isn, int) and after(p.seq, peer_isn))
                if ok:
                    chosen = c
                    break
            if chosen is None:
                chosen = mine[-1] if mine else None
            if chosen is None:  # the capture began mid-connection
                counter += 1
                chosen = [counter, (p.dst, p.dport), p.ack - 1 if "A" in p.flags else 0, None]
                mine.append(chosen)
            if "S" in p.flags and chosen[1] != src:
                chosen[3] = p.seq
        assert isinstance(chosen[0], int)
        out[p.id] = chosen[0]
    return out


class Timeline:
    """Calls sorted by start, searchable by time in O(log n) (pairing 100,000 calls must stay near-linear)."""

    def __init__(self, calls: Sequence[Call]) -> None:
        self.calls = list(calls)
        self.starts = [c.start_ns for c in self.calls]
        self.longest = max((c.end_ns - c.start_ns for c in self.calls), default=0)

    def around(self, t: int, before: int = 0) -> list[Call]:
        """Calls that started by t and ended at t - before or later, in start order."""
        hi = bisect_right(self.starts, t)
        lo = bisect_left(self.starts, t - before - self.longest)
        return [c for c in self.calls[lo:hi] if c.end_ns >= t - before]

    def latest(self, t: int) -> Call | None:
        """The call that started last by time t."""
        i = bisect_right(self.starts, t)
        return self.calls[i - 1] if i else None

    def first_ending_from(self, t: int) -> Call | None:
        calls = self.calls
        for j in range(bisect_left(self.starts, t - self.longest), len(calls)):
            if calls[j].end_ns >= t:
                return calls[j]
        return None

    def after(self, t: int) -> Iterator[Call]:
        """Calls that started after t, in order (lazily: callers usually want the first)."""
        calls = self.calls
        return (calls[j] for j in range(bisect_right(self.starts, t), len(calls)))


class _SocketCalls:
    def __init__(self, calls: Sequence[Call]) -> None:
        self.all = Timeline(calls)
        self.sends = Timeline([c for c in calls if c.op in SENDS])
        self.recvs = Timeline([c for c in calls if c.op in RECVS])
        self.failing_rst = Timeline([c for c in calls if c.errno in _RST_ERRNOS])
        self.failing_icmp = Timeline([c for c in calls if c.errno in _ICMP_ERRNOS])


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
    if side == "in" and p.proto == "TCP" and (p.payload or "F" in p.flags):
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
    bare_ack = p.proto == "TCP" and p.flags == "A" and not p.payload
    if bare_ack:
        return None, "kernel"
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


def _ops_for(p: Packet, side: str) -> set[str]:
    if p.proto == "TCP" and "S" in p.flags:
        return CONNECTS | {"accept"}
    if side == "out":
        if p.payload:
            return SENDS
        if p.proto == "TCP" and ("F" in p.flags or "R" in p.flags):
            return CLOSES
        return SENDS | CLOSES
    return RECVS | CONNECTS | {"getsockopt", "accept"} | SENDS


def traced_packets(calls: Sequence[Call], packets: Sequence[Packet]) -> list[Packet]:
    """Only the packets of the traced program's flows (other traffic on the interface stays out): those that
    pair with a traced socket (by 4-tuple, time, and for TCP the connect() that opened the connection)."""
    index = index_endpoints(endpoints(calls))
    near = [p for p in packets if _sides(p, index)]  # cheap first cut: the 4-tuple alone
    paired = align(calls, near).packet_pairs
    return [p for p in near if p.id in paired]


_Index = dict[tuple[str, int], list[_Endpoint]]


def index_endpoints(eps: list[_Endpoint]) -> _Index:
    """Endpoints by (protocol, local port): a packet only looks at the sockets of its own ports."""
    out: _Index = defaultdict(list)
    for e in eps:
        out[(e.proto, e.local[1])].append(e)
    return out


def candidates(index: _Index, proto: str, local: Addr, remote: Addr) -> list[_Endpoint]:
    """The traced sockets that had this flow (at some time)."""
    return [e for e in index.get((proto, local[1]), ()) if matches(e, proto, local, remote)]


def _sides(p: Packet, index: _Index) -> list[tuple[str, list[_Endpoint]]]:
    """For packet p: ("out", sockets it may have left) and ("in", sockets it may have reached)."""
    if p.quoted is not None:  # an ICMP error comes back to the sender of the datagram it quotes
        q = p.quoted
        local, remote = (norm_host(q.src), q.sport), (norm_host(q.dst), q.dport)
        cands = [e for e in index.get((q.proto, q.sport), ()) if matches(e, q.proto, local, remote)]
        return [("in", cands)] if cands else []
    if p.proto not in ("TCP", "UDP"):
        return []
    out = []
    for side, (lh, lp), (rh, rp) in (("out", (p.src, p.sport), (p.dst, p.dport)),
                                      ("in", (p.dst, p.dport), (p.src, p.sport))):
        near = index.get((p.proto, lp))
        if not near:
            continue
        local, remote = (norm_host(lh), lp), (norm_host(rh), rp)
        cands = [e for e in near if matches(e, p.proto, local, remote)]
        if cands:
            out.append((side, cands))
    return out


def align(calls: Sequence[Call], packets: Sequence[Packet]) -> Alignment:
    """Pair packets with calls, and calls' packets with the frames they were made from."""
    index = index_endpoints(endpoints(calls))
    grouped: dict[int, list[Call]] = defaultdict(list)
    for c in sorted(calls, key=lambda c: (c.start_ns, c.id)):
        if c.socket:
            grouped[c.socket].append(c)
    by_socket = {k: _SocketCalls(v) for k, v in grouped.items()}
    ordered = sorted(packets, key=lambda p: (p.time_ns, p.id))
    conn_of = _tcp_connections(ordered)
    conn_start: dict[int, int] = {}
    conn_first: dict[int, Packet] = {}
    starts_by_tuple: dict[frozenset[Addr], list[int]] = defaultdict(list)
    for p in ordered:
        conn = conn_of.get(p.id, -p.id)
        if conn not in conn_start:
            conn_start[conn] = p.time_ns
            conn_first[conn] = p
            if conn > 0:
                starts_by_tuple[frozenset({(p.src, p.sport), (p.dst, p.dport)})].append(p.time_ns)

    pairs: list[Pair] = []
    for p in ordered:
        conn = conn_of.get(p.id, -p.id)
        t0 = conn_start[conn]  # TCP: when its connection began; else the packet itself
        first = conn_first[conn] if conn > 0 else None
        later = [t for t in starts_by_tuple.get(frozenset({(p.src, p.sport), (p.dst, p.dport)}), ()) if t > t0]
        t1 = later[0] if later else None
        for side, cands in _sides(p, index):
            ep = _owner(cands, t0, t1, p.time_ns, first)
            if ep is None:
                continue
            call, role = _call_for(p, side, by_socket[ep.socket])
            pairs.append(Pair(p.id, ep.socket, side, call, role))

    call_packets: dict[int, list[int]] = defaultdict(list)
    socket_packets: dict[int, list[int]] = defaultdict(list)
    packet_pairs: dict[int, list[Pair]] = defaultdict(list)
    for pair in pairs:
        socket_packets[pair.socket].append(pair.packet)
        packet_pairs[pair.packet].append(pair)
        if pair.call is not None:
            call_packets[pair.call].append(pair.packet)
    frame_packets: dict[int, set[int]] = defaultdict(set)
    for c in calls:
        for f in c.frames:
            frame_packets[f.instance].update(call_packets.get(c.id, ()))
    return Alignment(
        tuple(pairs),
        {k: tuple(dict.fromkeys(v)) for k, v in call_packets.items()},
        {k: tuple(sorted(v)) for k, v in frame_packets.items() if v},
        {k: tuple(dict.fromkeys(v)) for k, v in socket_packets.items()},
        {k: tuple(v) for k, v in packet_pairs.items()},
    )


def exception_packets(exc: ExceptionInfo, alignment: Alignment) -> list[tuple[int, ...]]:
    """For each traceback entry of `exc` (outermost first): the packets produced below it."""
    return [alignment.packets_below(f.instance) for f in exc.frames]


def linked(exc: ExceptionInfo) -> list[ExceptionInfo]:
    """The exception, then everything chained to it (causes and contexts), each once."""
    out: list[ExceptionInfo] = []
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if all(e is not x for x in out):
            out.append(e)
            todo += [x for x in (e.cause, e.context) if x is not None]
    return out


def find_origin(exc: ExceptionInfo | None, calls: Sequence[Call]) -> tuple[Call | None, str]:
    """The socket call an exception came from, and how we know: "raised" (that call raised this very exception
    object, or one chained to it), "errno" (nobody's call raised it, e.g. asyncio builds its own OSError from
    getsockopt(SO_ERROR): the latest call that reported the same errno, preferring calls made below the
    exception's frames), or "" when there is none."""
    if exc is None:
        return None, ""
    by_id = {c.id: c for c in calls}
    family = linked(exc)
    for e in family:
        if e.call is not None and e.call in by_id:
            return by_id[e.call], "raised"
    for e in family:
        if e.errno:
            same = [c for c in calls if c.errno == e.errno and c.op != "getaddrinfo"]
            mine = {f.instance for f in e.frames}
            below = [c for c in same if any(f.instance in mine for f in c.frames)]
            if below or same:
                return (below or same)[-1], "errno"
    return None, ""


def origin_call(exc: ExceptionInfo | None, calls: Sequence[Call]) -> Call | None:
    return find_origin(exc, calls)[0]


def chain(exc: ExceptionInfo | None) -> list[ExceptionInfo]:
    """The exceptions in the order Python prints them: the innermost cause or context first."""
    out: list[ExceptionInfo] = []
    while exc is not None and all(e is not exc for e in out):
        out.insert(0, exc)
        exc = exc.cause if exc.cause is not None else (None if exc.suppress_context else exc.context)
    return out
