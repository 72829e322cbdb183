"""Kernel events joined to calls, flows, sockets and packets. Pure.

The joins, each on keys the kernel itself gives (never "whatever call happened to run"):
- **Syscalls** (enter/exit of connect, accept, close) carry the thread id (`common_pid` is the *thread*): each
  thread's syscalls are matched, in order, to that thread's recorded calls of the same operation whose window
  holds them. A syscall inside a call of another kind is C code working for that call (glibc's resolver
  connects its UDP socket inside getaddrinfo()); any other syscall is the interpreter's own and is left out.
- **Flow events** (state changes, resets, error reports, retransmissions) carry a 4-tuple: they belong to the
  flow of that 4-tuple at that time, and to the traced socket at the end the event names, whichever end that
  is (both may be traced). tcp_send_reset is told by the sender of the RST: its socket when it has one
  (`skaddr` not 0), else (no socket: NO_SOCKET) the event concerns the socket the RST goes to. A state change
  logged before the port is chosen (CLOSE → SYN_SENT, sport 0) joins by the kernel socket's address (`skaddr`)
  to the later events of the same socket, and to the connect() the same thread is in. No-op transitions
  (a state to itself) are dropped.
- **kfree_skb** has no addresses: it joins the reset or ICMP error sent for the same skb (`skbaddr`), within a
  millisecond (skb addresses are reused within milliseconds), and its packet is the segment that came in just
  before on that flow.
- **Packets**: tcp_send_reset to the RST it sent, tcp_receive_reset to the RST that arrived, a retransmission to
  the segment sent again, icmp_send to the ICMP error.
Events that join nothing traced are other programs' and are dropped. Timestamps: tracefs prints microseconds,
so joins allow `SLACK_NS`.

It is long because linking kernel events to packets and sockets needs the skb, flow and time joins side by side.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..model import Addr, Call, KernelEvent, Packet, quick_init
from .flows import Flow
from .pairing import TOLERANCE_NS, Alignment, Timeline, norm_host

SLACK_NS = 20_000  # tracefs prints microseconds and the sync markers carry a few µs of error
SKB_NS = 1_000_000  # a kfree_skb and the reset/ICMP it caused are this close
PACKET_NS = 2_000_000  # an event and the packet it is about
SYSCALL_OPS = {"connect": frozenset({"connect", "connect_ex"}), "accept4": frozenset({"accept"}),
               "accept": frozenset({"accept"}), "close": frozenset({"close"})}
FLOW_EVENTS = frozenset({"inet_sock_set_state", "tcp_send_reset", "tcp_receive_reset", "inet_sk_error_report",
                         "tcp_retransmit_skb", "tcp_retransmit_synack", "icmp_send"})


@quick_init
@dataclass(frozen=True, slots=True)
class KernelLink:
    event: int
    call: int | None
    packets: tuple[int, ...] = ()
    flow: int | None = None
    sockets: tuple[int, ...] = ()


@dataclass(frozen=True)
class KernelView:
    links: dict[int, KernelLink] = field(default_factory=dict)  # by event id
    of_call: dict[int, tuple[int, ...]] = field(default_factory=dict)
    of_packet: dict[int, tuple[int, ...]] = field(default_factory=dict)
    of_flow: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def for_call(self, call_id: int) -> tuple[int, ...]:
        return self.of_call.get(call_id, ())

    def for_packet(self, packet_id: int) -> tuple[int, ...]:
        return self.of_packet.get(packet_id, ())

    def for_flow(self, flow_id: int) -> tuple[int, ...]:
        return self.of_flow.get(flow_id, ())


def addr(fields: dict[str, str], which: str) -> Addr:
    """('127.0.0.1', 464) from saddr/sport (or daddr/dport); IPv6 from saddrv6 when the family says so."""
    host = fields.get(f"{which}addrv6" if fields.get("family") == "AF_INET6" else f"{which}addr", "")
    try:
        port = int(fields.get(f"{which}port", "0") or 0)
    except ValueError:
        port = 0
    return norm_host(host), port


def is_null(pointer: str) -> bool:
    """A kernel pointer as tracefs prints it ("0000000000000000", "(null)", "0x0") is NULL."""
    try:
        return int(pointer, 16) == 0
    except ValueError:
        return pointer in ("", "(null)")


def hostport(text: str) -> Addr:
    host, _, port = text.rpartition(":")
    try:
        return norm_host(host.strip("[]")), int(port or 0)
    except ValueError:
        return norm_host(host.strip("[]")), 0


def ends_of(ev: KernelEvent) -> tuple[str, Addr, Addr] | None:
    """(proto, the end the event is told by, the other end) as the kernel event names them."""
    f = ev.fields
    if ev.event in ("inet_sock_set_state", "tcp_receive_reset", "inet_sk_error_report", "tcp_retransmit_skb",
                    "tcp_retransmit_synack"):
        proto = "UDP" if f.get("protocol") in ("IPPROTO_UDP", "0x11") else "TCP"
        return proto, addr(f, "s"), addr(f, "d")
    if ev.event == "tcp_send_reset":  # told by the RST's sender (src), to dest
        return "TCP", hostport(f.get("src", ":0")), hostport(f.get("dest", ":0"))
    if ev.event == "icmp_send":  # the datagram that found no socket: from src to the closed port (dst)
        try:
            return "UDP", (norm_host(f.get("src", "")), int(f.get("sport", 0))), (norm_host(f.get("dst", "")),
                                                                                  int(f.get("dport", 0)))
        except ValueError:
            return None
    return None


class _FlowIndex:
    """Flows by unordered 4-tuple, with their time span, for "the flow of this 4-tuple at time t"."""

    def __init__(self, flows: Sequence[Flow], packets: dict[int, Packet]) -> None:
        self.by: dict[frozenset[Addr], list[tuple[int, int, Flow]]] = defaultdict(list)
        for f in flows:
            if f.proto not in ("TCP", "UDP") or not f.packets:
                continue
            key = frozenset({(norm_host(f.a[0]), f.a[1]), (norm_host(f.b[0]), f.b[1])})
            self.by[key].append((packets[f.packets[0]].time_ns, packets[f.packets[-1]].time_ns, f))
        for v in self.by.values():
            v.sort(key=lambda x: x[0])

    def at(self, a: Addr, b: Addr, t: int) -> Flow | None:
        spans = self.by.get(frozenset({a, b}))
        if not spans:
            return None
        best = None
        for start, end, f in spans:
            if start - TOLERANCE_NS <= t <= end + 2 * TOLERANCE_NS:
                best = f if best is None or start <= t else best
        return best


class _PacketIndex:
    """Packets by (src, dst) in time order, and ICMP errors by the (src, dst) they quote."""

    def __init__(self, packets: Sequence[Packet]) -> None:
        self.by: dict[tuple[Addr, Addr, str], list[Packet]] = defaultdict(list)
        for p in sorted(packets, key=lambda p: p.time_ns):
            if p.quoted is not None:
                q = p.quoted
                self.by[((norm_host(q.src), q.sport), (norm_host(q.dst), q.dport), "quoted")].append(p)
            elif p.proto in ("TCP", "UDP"):
                self.by[((norm_host(p.src), p.sport), (norm_host(p.dst), p.dport), p.proto)].append(p)
        self.times = {k: [p.time_ns for p in v] for k, v in self.by.items()}

    def first_from(self, key: tuple[Addr, Addr, str], t: int, want: str = "", within: int = PACKET_NS) -> Packet | None:
        ps, ts = self.by.get(key, []), self.times.get(key, [])
        for i in range(bisect_left(ts, t - SLACK_NS), len(ps)):
            if ps[i].time_ns > t + within:
                return None
            if not want or want in ps[i].flags:
                return ps[i]
        return None

    def nearest(self, key: tuple[Addr, Addr, str], t: int, want: str, within: int = PACKET_NS) -> Packet | None:
        """The packet of `key` with `want` among its flags closest in time to `t`, on either side: the reset
        tracepoints fire before or after the RST is delivered depending on the path (an active reset from close()
        is stamped after loopback has delivered it), and the sync markers carry their own error."""
        ps, ts = self.by.get(key, []), self.times.get(key, [])
        best: Packet | None = None
        for i in range(bisect_left(ts, t - within), bisect_right(ts, t + within)):
            if want in ps[i].flags and (best is None or abs(ps[i].time_ns - t) < abs(best.time_ns - t)):
                best = ps[i]
        return best

    def last_until(self, key: tuple[Addr, Addr, str], t: int, want: str = "", within: int = PACKET_NS) -> Packet | None:
        ps, ts = self.by.get(key, []), self.times.get(key, [])
        for i in range(bisect_right(ts, t + SLACK_NS) - 1, -1, -1):
            if ps[i].time_ns < t - within:
                return None
            if not want or want in ps[i].flags:
                return ps[i]
        return None


def _running(calls: Timeline | None, t: int) -> Call | None:
    """The innermost call running at t (the latest started of those covering t, give or take SLACK_NS)."""
    if calls is None:
        return None
    covering = calls.around(t + SLACK_NS, before=2 * SLACK_NS)
    return covering[-1] if covering else None


def _nearest(calls: Timeline | None, t: int) -> Call | None:
    if calls is None:
        return None
    last, nxt = calls.latest(t), next(calls.after(t), None)
    near = [c for c in (last, nxt) if c is not None and c.start_ns - TOLERANCE_NS <= t <= c.end_ns + TOLERANCE_NS]
    return min(near, key=lambda c: min(abs(t - c.start_ns), abs(t - c.end_ns))) if near else None


def _syscalls(events: Sequence[KernelEvent], by_tid: dict[int, list[Call]]) -> dict[int, int]:
    """Event id -> call id for syscall enter/exit events, matched per thread, in order."""
    out: dict[int, int] = {}
    per_tid: dict[int, list[KernelEvent]] = defaultdict(list)
    for ev in events:
        if ev.event.startswith("sys_") and ev.tid in by_tid:
            per_tid[ev.tid].append(ev)
    for tid, evs in per_tid.items():
        calls = by_tid[tid]
        timeline = Timeline(calls)
        open_enter: dict[str, KernelEvent] = {}
        for ev in evs:
            name = ev.event.split("_", 2)[2]
            if ev.event.startswith("sys_enter_"):
                open_enter[name] = ev
                continue
            enter = open_enter.pop(name, None)
            t0 = enter.time_ns if enter is not None else ev.time_ns
            mid = (t0 + ev.time_ns) // 2
            covering = timeline.around(mid + SLACK_NS, before=2 * SLACK_NS)
            ops = SYSCALL_OPS.get(name, frozenset())
            same = [c for c in covering if c.op in ops]
            # the innermost call of the same operation; else C code working inside another call (the resolver's
            # connect inside getaddrinfo), but not a close() inside anything (the interpreter's own files)
            call = same[-1] if same else (covering[-1] if covering and name != "close" else None)
            if call is None:
                continue
            out[ev.id] = call.id
            if enter is not None:
                out[enter.id] = call.id
    return out


def link(events: Sequence[KernelEvent], calls: Sequence[Call], packets: Sequence[Packet],
         alignment: Alignment) -> KernelView:
    """Join every event that concerns the traced program (see the module docstring); drop the rest."""
    by_id = {p.id: p for p in packets}
    by_tid: dict[int, list[Call]] = defaultdict(list)
    by_socket: dict[int, list[Call]] = defaultdict(list)
    for c in sorted(calls, key=lambda c: (c.start_ns, c.id)):
        by_tid[c.tid].append(c)
        if c.socket:
            by_socket[c.socket].append(c)
    tids = set(by_tid)
    tid_lines = {k: Timeline(v) for k, v in by_tid.items()}
    socket_lines = {k: Timeline(v) for k, v in by_socket.items()}
    flows = _FlowIndex(alignment.flows.flows, by_id)
    pindex = _PacketIndex(packets)
    out: dict[int, KernelLink] = {}
    for eid, cid in _syscalls(events, by_tid).items():
        out[eid] = KernelLink(eid, cid)
    skaddr_socket: dict[str, int] = {}  # kernel socket address -> traced socket (until it closes)
    skb_events: dict[str, list[tuple[int, KernelEvent, KernelLink]]] = defaultdict(list)
    for ev in sorted(events, key=lambda e: (e.time_ns, e.id)):
        if ev.event.startswith("sys_"):
            continue
        f = ev.fields
        if ev.event == "kfree_skb":
            continue  # after the resets and ICMP errors it may join
        if ev.event == "inet_sock_set_state" and f.get("oldstate") == f.get("newstate"):
            continue
        if ev.event == "inet_sk_error_report" and f.get("error") == "0":
            continue  # the kernel clearing the error once it was read: nothing to tell
        ends = ends_of(ev)
        if ends is None:
            continue
        proto, here, there = ends
        skaddr = f.get("skaddr", "")
        sockets: tuple[int, ...] = ()
        flow: Flow | None = None
        call: Call | None = None
        if here[1] == 0:  # SYN_SENT logged before the port is chosen: the thread's connect() it is in
            running = _running(tid_lines.get(ev.tid), ev.time_ns) if ev.tid in tids else None
            if running is not None and running.op in SYSCALL_OPS["connect"] and running.remote is not None \
                    and running.remote[1] == there[1]:
                call, sockets = running, (running.socket,)
                if skaddr and running.socket:
                    skaddr_socket[skaddr] = running.socket
        else:
            flow = flows.at(here, there, ev.time_ns)
            if flow is not None:
                # a reset sent with no socket (NO_SOCKET) concerns the socket it goes to
                told_by = there if ev.event == "tcp_send_reset" and is_null(skaddr) else here
                side = "a" if (norm_host(flow.a[0]), flow.a[1]) == told_by else "b"
                sockets = alignment.sockets_at(flow.id, side)
            if not sockets and skaddr in skaddr_socket:
                sockets = (skaddr_socket[skaddr],)
            if sockets and skaddr and ev.event == "inet_sock_set_state":
                skaddr_socket[skaddr] = sockets[0]
                if f.get("newstate") == "TCP_CLOSE":
                    skaddr_socket.pop(skaddr, None)
            for s in sockets:
                line = socket_lines.get(s)
                call = _running(line, ev.time_ns) or (
                    _nearest(line, ev.time_ns) if ev.tid in tids or ev.tid == 0 else None)
                if call is not None:
                    break
        if flow is None and call is None:
            continue  # nothing traced: another program's
        pkts = _packets_of(ev, here, there, pindex)
        lk = KernelLink(ev.id, call.id if call is not None else None, pkts, flow.id if flow is not None else None,
                        sockets)
        out[ev.id] = lk
        if "skbaddr" in f:
            skb_events[f["skbaddr"]].append((ev.time_ns, ev, lk))
    # kfree_skb: the segment that found no socket, joined by skb address and time. Each address's events are in
    # time order (the loop above ran in time order), so the nearest is found by bisection: slab memory reuses
    # skb addresses, and one address may carry thousands of events in a long run.
    skb_times = {k: [t for t, _, _ in v] for k, v in skb_events.items()}
    for ev in events:
        if ev.event != "kfree_skb":
            continue
        addr_events = skb_events.get(ev.fields.get("skbaddr", ""))
        if not addr_events:
            continue
        times = skb_times[ev.fields["skbaddr"]]
        i = bisect_left(times, ev.time_ns)
        near = [j for j in (i - 1, i) if 0 <= j < len(times) and abs(times[j] - ev.time_ns) <= SKB_NS]
        if not near:
            continue
        _, source, lk = addr_events[min(near, key=lambda j: abs(times[j] - ev.time_ns))]
        told = source.fields.get("reason", "")
        if source.event == "tcp_send_reset" and told and told != ev.fields.get("reason", told):
            continue  # a reused skb address: the reset names another reason than the drop
        ends = ends_of(source)
        dropped: tuple[int, ...] = ()
        if ends is not None:
            proto, here, there = ends
            # the dropped segment came from the RST's receiver (or the datagram's sender) to the other end
            key = (there, here, proto) if source.event == "tcp_send_reset" else (here, there, proto)
            hit = pindex.last_until(key, ev.time_ns)
            dropped = (hit.id,) if hit is not None else ()
        out[ev.id] = KernelLink(ev.id, lk.call, dropped, lk.flow, lk.sockets)
    return _view(out)


def _packets_of(ev: KernelEvent, here: Addr, there: Addr, index: _PacketIndex) -> tuple[int, ...]:
    """The one packet this event is about, when there is one."""
    hit: Packet | None = None
    t = ev.time_ns
    if ev.event == "tcp_send_reset":
        hit = index.nearest((here, there, "TCP"), t, "R")
    elif ev.event == "tcp_receive_reset":
        hit = index.nearest((there, here, "TCP"), t, "R")
    elif ev.event in ("tcp_retransmit_skb", "tcp_retransmit_synack"):
        hit = index.first_from((here, there, "TCP"), t)
    elif ev.event == "icmp_send":
        hit = index.first_from((here, there, "quoted"), t)
    return (hit.id,) if hit else ()


def _view(links: dict[int, KernelLink]) -> KernelView:
    of_call: dict[int, list[int]] = defaultdict(list)
    of_packet: dict[int, list[int]] = defaultdict(list)
    of_flow: dict[int, list[int]] = defaultdict(list)
    for eid in sorted(links):
        lk = links[eid]
        if lk.call is not None:
            of_call[lk.call].append(eid)
        for p in lk.packets:
            of_packet[p].append(eid)
        if lk.flow is not None:
            of_flow[lk.flow].append(eid)
    return KernelView(links, {k: tuple(v) for k, v in of_call.items()}, {k: tuple(v) for k, v in of_packet.items()},
                      {k: tuple(v) for k, v in of_flow.items()})


def select(events: Iterable[KernelEvent], calls: Sequence[Call], packets: Sequence[Packet]) -> list[KernelEvent]:
    """A cheap first cut, before the trace is saved: the events of traced threads, of the traced flows'
    4-tuples, and the drops and ICMP sends that may join them; renumbered 1..N in time order."""
    windows: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for c in calls:
        windows[c.tid].append((c.start_ns - SLACK_NS, c.end_ns + SLACK_NS))
    starts: dict[int, list[int]] = {}
    for tid, spans in windows.items():
        spans.sort()
        starts[tid] = [s for s, _ in spans]

    def inside_a_call(ev: KernelEvent) -> bool:
        spans = windows.get(ev.tid)
        if not spans:
            return False
        i = bisect_right(starts[ev.tid], ev.time_ns) - 1
        # calls nest only briefly (a close inside a connect's error path): look at a few before
        return any(spans[j][0] <= ev.time_ns <= spans[j][1] for j in range(max(0, i - 8), i + 1))

    tids = set(windows)
    tuples = {frozenset({(norm_host(p.src), p.sport), (norm_host(p.dst), p.dport)}) for p in packets
              if p.proto in ("TCP", "UDP")}
    tuples |= {frozenset({(norm_host(p.quoted.src), p.quoted.sport), (norm_host(p.quoted.dst), p.quoted.dport)})
               for p in packets if p.quoted is not None}
    kept: list[KernelEvent] = []
    skbs: set[str] = set()
    later: list[KernelEvent] = []
    for ev in events:
        if ev.event == "kfree_skb":
            later.append(ev)
            continue
        ends = ends_of(ev)
        if ev.event.startswith("sys_"):
            mine = ev.tid in tids and inside_a_call(ev)
        elif ends is None or (ev.event == "inet_sk_error_report" and ev.fields.get("error") == "0"):
            mine = False
        else:  # a flow event of a traced flow, or a state change logged before the port (a traced connect)
            mine = frozenset({ends[1], ends[2]}) in tuples or (ends[1][1] == 0 and ev.tid in tids
                                                                 and inside_a_call(ev))
        if mine:
            kept.append(ev)
            if "skbaddr" in ev.fields:
                skbs.add(ev.fields["skbaddr"])
    kept += [ev for ev in later if ev.fields.get("skbaddr") in skbs]
    kept.sort(key=lambda e: (e.time_ns, e.id))
    return [KernelEvent(i, e.time_ns, e.event, e.tid, e.fields, e.pid) for i, e in enumerate(kept, 1)]
