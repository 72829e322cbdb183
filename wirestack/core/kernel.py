"""Kernel events: tracefs text to `KernelEvent` records, and their pairing with calls and packets. Pure.

Pairing rules (the packet rules of `pairing.py`, applied to what the kernel tells):
- syscall enter/exit events pair with the probe's call that was running in the same process at that time;
  syscalls outside every probed call (the interpreter reading files, ...) are left out;
- flow events (state changes, resets, error reports, retransmissions, ICMP sends) go to the traced socket of
  their flow and to the call on it running then (or just before/after, within the tolerance); a state change
  to SYN_SENT, logged before the port is chosen (sport=0), goes to the connect() running in that process;
- each one is also tied to the packet it concerns: tcp_send_reset to the RST it sent, tcp_receive_reset to the
  RST that arrived, a retransmission to the segment sent again, icmp_send to the ICMP error; kfree_skb has no
  addresses: it joins the reset or ICMP event with the same skb address (the segment that found no socket);
- events that tie to no traced socket or call are other programs' and are left out.
Timestamps: tracefs prints its clock in microseconds; wirestack's sync markers (realtime written into the trace)
bring them onto the packets' and calls' clock, so they are as precise as a microsecond.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Sequence

from ..model import Addr, Call, KernelEvent, Packet
from .pairing import TOLERANCE_NS, KernelPairing, Timeline, candidates, choose, endpoints, index_endpoints, norm_host

_LINE = re.compile(r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+(?P<flags>\S+)\s+"
                   r"(?P<sec>\d+)\.(?P<usec>\d{6}):\s(?P<body>.*)$")
_ENTER = re.compile(r"^sys_(?P<name>\w+)\((?P<args>.*)\)$")
_EXIT = re.compile(r"^sys_(?P<name>\w+) -> (?P<ret>0x[0-9a-f]+)$")
_EVENT = re.compile(r"^(?P<name>\w+): (?P<rest>.*)$")
_ICMP = re.compile(r"type=(?P<type>\d+), code=(?P<code>\d+)\. From (?P<src>\S+):(?P<sport>\d+) to "
                   r"(?P<dst>\S+):(?P<dport>\d+) ulen=(?P<ulen>\d+) skbaddr=(?P<skbaddr>\S+)")
_FIELD = re.compile(r"(\w+)=(\S+)")
NET = {"inet_sock_set_state", "tcp_send_reset", "tcp_receive_reset", "inet_sk_error_report", "tcp_retransmit_skb",
       "tcp_retransmit_synack", "kfree_skb", "icmp_send"}


_SYNC = re.compile(r"tracing_mark_write: wirestack-sync (\d+)")


def parse(text: str, offset_ns: int = 0) -> list[KernelEvent]:
    """tracefs `trace` text to events (ids 0), times moved onto CLOCK_REALTIME: by the sync markers wirestack
    writes into the trace (each holds the realtime clock when written; the trace clock stamps it too) when there
    are any, else by `offset_ns` (trace clock minus realtime)."""
    out: list[KernelEvent] = []
    syncs = []
    for line in text.splitlines():
        if "wirestack-sync" in line and (m := _LINE.match(line)) and (s := _SYNC.search(m["body"])):
            syncs.append(int(m["sec"]) * 1_000_000_000 + int(m["usec"]) * 1000 - int(s.group(1)))
    if syncs:
        offset_ns = sum(syncs) // len(syncs)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        t = int(m["sec"]) * 1_000_000_000 + int(m["usec"]) * 1000 - offset_ns
        pid, body = int(m["pid"]), m["body"]
        if e := _ENTER.match(body):
            fields = dict(kv.split(": ", 1) for kv in e["args"].split(", ") if ": " in kv)
            out.append(KernelEvent(0, t, f"sys_enter_{e['name']}", pid, fields))
        elif x := _EXIT.match(body):
            ret = int(x["ret"], 16)
            out.append(KernelEvent(0, t, f"sys_exit_{x['name']}", pid,
                                   {"ret": str(ret - (1 << 64) if ret >= 1 << 63 else ret)}))
        elif ev := _EVENT.match(body):
            name, rest = ev["name"], ev["rest"]
            if name == "tracing_mark_write":
                continue
            if name == "icmp_send" and (i := _ICMP.search(rest)):
                fields = i.groupdict()
            else:
                fields = dict(_FIELD.findall(rest.replace("reason: ", "reason=")))
            out.append(KernelEvent(0, t, name, pid, fields))
    return out


def _addr(fields: dict[str, str], which: str) -> Addr:
    """('127.0.0.1', 464) from saddr/sport (or daddr/dport); IPv6 from saddrv6 when the family says so."""
    host = fields.get(f"{which}addrv6" if fields.get("family") == "AF_INET6" else f"{which}addr", "")
    return norm_host(host), int(fields.get(f"{which}port", "0") or 0)


def _hostport(text: str) -> Addr:
    host, _, port = text.rpartition(":")
    return norm_host(host.strip("[]")), int(port or 0)


def _flow(ev: KernelEvent) -> tuple[str, Addr, Addr] | None:
    """(proto, our side, their side) as the kernel event names it."""
    f = ev.fields
    if ev.event in ("inet_sock_set_state", "tcp_receive_reset", "inet_sk_error_report", "tcp_retransmit_skb",
                    "tcp_retransmit_synack"):
        proto = "UDP" if f.get("protocol") in ("IPPROTO_UDP", "0x11") else "TCP"
        return proto, _addr(f, "s"), _addr(f, "d")
    if ev.event == "tcp_send_reset":  # the reset goes from the peer (src) back to our socket (dest)
        return "TCP", _hostport(f.get("dest", ":0")), _hostport(f.get("src", ":0"))
    if ev.event == "icmp_send":  # the datagram that found no socket: from us (src) to the closed port (dst)
        return "UDP", (norm_host(f["src"]), int(f["sport"])), (norm_host(f["dst"]), int(f["dport"]))
    return None


SYSCALL_OPS = {"connect": {"connect", "connect_ex"}, "accept4": {"accept"}, "accept": {"accept"},
               "close": {"close"}}


def align_kernel(events: Sequence[KernelEvent], calls: Sequence[Call],
                 packets: Sequence[Packet]) -> list[KernelPairing]:
    """Pair each event with a call and packets; events of other programs get no pairing (and are dropped)."""
    index = index_endpoints(endpoints(calls))
    pids = {c.pid for c in calls if c.pid}
    grouped_pid: dict[int, list[Call]] = defaultdict(list)
    grouped_socket: dict[int, list[Call]] = defaultdict(list)
    for c in sorted(calls, key=lambda c: c.start_ns):
        grouped_pid[c.pid].append(c)
        if c.socket:
            grouped_socket[c.socket].append(c)
    by_pid = {k: Timeline(v) for k, v in grouped_pid.items()}
    by_socket = {k: Timeline(v) for k, v in grouped_socket.items()}
    flows = _Flows(packets)
    by_id = {e.id: e for e in events}
    empty = Timeline([])
    out: list[KernelPairing] = []
    linked: dict[str, KernelPairing] = {}  # skbaddr -> the reset/ICMP pairing, for kfree_skb
    for ev in sorted(events, key=lambda e: (e.time_ns, e.id)):
        if ev.event.startswith("sys_"):
            if ev.pid in pids:
                call = _running(by_pid.get(ev.pid, empty), ev.time_ns)
                name = ev.event.split("_", 2)[2]
                # close() of files inside, say, getaddrinfo is the resolver's business, not the network's
                if call is not None and (name not in SYSCALL_OPS or call.op in SYSCALL_OPS[name]
                                         or name == "connect"):
                    out.append(KernelPairing(ev.id, call.id, ()))
            continue
        if ev.event == "kfree_skb":
            twin = linked.get(ev.fields.get("skbaddr", ""))
            if twin is not None:
                out.append(KernelPairing(ev.id, twin.call, _dropped(ev, by_id.get(twin.event), flows)))
            continue
        if ev.event == "inet_sk_error_report" and ev.fields.get("error") == "0":
            continue  # the kernel clearing the error: nothing to tell
        flow = _flow(ev)
        if flow is None:
            continue
        proto, local, remote = flow
        call = None
        if local[1] == 0 and ev.pid in pids:  # SYN_SENT is logged before the ephemeral port is chosen
            running = _running(by_pid.get(ev.pid, empty), ev.time_ns)
            if running is not None and running.remote and running.remote[1] == remote[1]:
                call = running
        else:
            ep = choose(candidates(index, proto, local, remote), ev.time_ns)
            if ep is None:
                continue
            mine = by_socket.get(ep.socket, empty)
            # Outside every call of the socket, only an event in a traced process (or in the idle task's
            # softirq, pid 0) is ours: another program may reuse the 4-tuple moments later.
            call = _running(mine, ev.time_ns) or (_nearest(mine, ev.time_ns) if ev.pid in pids or ev.pid == 0
                                                  else None)
        if call is None:
            continue
        pairing = KernelPairing(ev.id, call.id, _packets_of(ev, local, remote, flows))
        out.append(pairing)
        if "skbaddr" in ev.fields:
            linked[ev.fields["skbaddr"]] = pairing
    return out


SLACK_NS = 20_000  # tracefs prints microseconds and the sync markers carry a few µs of error


def _running(calls: Timeline, t: int) -> Call | None:
    """The innermost call running at t (the latest started of those covering t, give or take SLACK_NS)."""
    covering = calls.around(t + SLACK_NS, before=2 * SLACK_NS)
    return covering[-1] if covering else None


def _nearest(calls: Timeline, t: int) -> Call | None:
    last, nxt = calls.latest(t), next(calls.after(t), None)
    near = [c for c in (last, nxt) if c is not None and c.start_ns - TOLERANCE_NS <= t <= c.end_ns + TOLERANCE_NS]
    return min(near, key=lambda c: min(abs(t - c.start_ns), abs(t - c.end_ns))) if near else None


class _Flows:
    """Packets by (proto, src, dst) in time order, for "the packet of this flow nearest to t"."""

    def __init__(self, packets: Sequence[Packet]) -> None:
        self.by: dict[tuple[str, Addr, Addr], list[Packet]] = defaultdict(list)
        for p in sorted(packets, key=lambda p: p.time_ns):
            self.by[(p.proto, (norm_host(p.src), p.sport), (norm_host(p.dst), p.dport))].append(p)
            if p.quoted is not None:
                q = p.quoted
                self.by[("quoted", (norm_host(q.src), q.sport), (norm_host(q.dst), q.dport))].append(p)
        self.times = {k: [p.time_ns for p in v] for k, v in self.by.items()}

    def from_(self, key: tuple[str, Addr, Addr], t: int) -> list[Packet]:
        """Packets of the flow at t or later."""
        return self.by.get(key, [])[bisect_left(self.times.get(key, []), t):]

    def until(self, key: tuple[str, Addr, Addr], t: int) -> list[Packet]:
        return self.by.get(key, [])[:bisect_right(self.times.get(key, []), t)]


def _packets_of(ev: KernelEvent, local: Addr, remote: Addr, flows: _Flows) -> tuple[int, ...]:
    """The one packet this event is about, when there is one."""
    hit: Packet | None = None
    t = ev.time_ns - 1_000_000
    if ev.event == "tcp_send_reset":
        hit = next((p for p in flows.from_(("TCP", remote, local), t) if "R" in p.flags), None)
    elif ev.event == "tcp_receive_reset":
        before = [p for p in flows.until(("TCP", remote, local), ev.time_ns + 1_000_000)[-8:] if "R" in p.flags]
        hit = before[-1] if before else None
    elif ev.event in ("tcp_retransmit_skb", "tcp_retransmit_synack"):
        hit = next(iter(flows.from_(("TCP", local, remote), t)), None)
    elif ev.event == "icmp_send":
        hit = next(iter(flows.from_(("quoted", local, remote), t)), None)
    return (hit.id,) if hit else ()


def _dropped(ev: KernelEvent, source: KernelEvent | None, flows: _Flows) -> tuple[int, ...]:
    """kfree_skb of the segment (or datagram) that found no socket: the packet that came in just before."""
    flow = _flow(source) if source is not None else None
    if flow is None:
        return ()
    proto, local, remote = flow
    cands = flows.until((proto, local, remote), ev.time_ns + 1_000_000)
    return (cands[-1].id,) if cands else ()


def keep(events: Sequence[KernelEvent], calls: Sequence[Call],
         packets: Sequence[Packet]) -> tuple[list[KernelEvent], list[KernelPairing]]:
    """The events of the traced program, renumbered 1..N in time order, with their pairings."""
    numbered = [KernelEvent(i + 1, e.time_ns, e.event, e.pid, e.fields)
                for i, e in enumerate(sorted(events, key=lambda e: e.time_ns))]
    pairs = align_kernel(numbered, calls, packets)
    wanted = {p.event for p in pairs}
    kept = [e for e in numbered if e.id in wanted]
    new = {e.id: i + 1 for i, e in enumerate(kept)}
    return ([KernelEvent(new[e.id], e.time_ns, e.event, e.pid, e.fields) for e in kept],
            [KernelPairing(new[p.event], p.call, p.packets) for p in pairs])


def describe(ev: KernelEvent) -> str:
    """One line for a kernel event, from its own fields."""
    f = ev.fields
    if ev.event.startswith("sys_enter_"):
        fd = f" (fd {f['fd']})" if "fd" in f else ""
        return f"syscall {ev.event[10:]}{fd} enters the kernel"
    if ev.event.startswith("sys_exit_"):
        ret = int(f.get("ret", "0"))
        name = ev.event[9:]
        if ret < 0:
            import errno as _errno

            return f"syscall {name} returns {ret} (-{_errno.errorcode.get(-ret, '?')})"
        return f"syscall {name} returns {ret}"
    flow = _flow(ev)
    where = ""
    if flow is not None:
        _, (lh, lp), (rh, rp) = flow
        where = f" ({_ep(lh, lp)} ↔ {_ep(rh, rp)})"
    if ev.event == "inet_sock_set_state":
        return f"socket state {f.get('oldstate', '?')} → {f.get('newstate', '?')}{where}"
    if ev.event == "tcp_send_reset":
        return f"tcp_send_reset: RST from {f.get('src', '?')}, reason {f.get('reason', '?')}"
    if ev.event == "kfree_skb":
        return f"kfree_skb: segment dropped, reason {f.get('reason', '?')} at {f.get('location', '?')}"
    if ev.event == "tcp_receive_reset":
        return "tcp_receive_reset: the RST reaches the socket"
    if ev.event == "inet_sk_error_report":
        import errno as _errno

        err = int(f.get("error", "0"))
        return f"inet_sk_error_report: error {err} ({_errno.errorcode.get(err, '?')}) set on the socket"
    if ev.event in ("tcp_retransmit_skb", "tcp_retransmit_synack"):
        return f"{ev.event}: sent again{where}" + (f", state {f['state']}" if "state" in f else "")
    if ev.event == "icmp_send":
        return f"icmp_send: type {f.get('type')} code {f.get('code')} for the datagram " \
               f"{f.get('src')}:{f.get('sport')} → {f.get('dst')}:{f.get('dport')}"
    return f"{ev.event} " + " ".join(f"{k}={v}" for k, v in f.items())


def _ep(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
