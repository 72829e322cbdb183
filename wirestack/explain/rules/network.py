"""Networks: what only a network shows. A packet followed along its path over the links a capture spans (what
the router changed, where a packet was seen no further), the TTL that tells who made an RST or ICMP error,
path MTU discovery and its black hole, IP fragments, ENETUNREACH with the routing table that lacked a route,
neighbour lookups (ARP, IPv6 ND) that nobody answered, the resolver's tries, a lab firewall's counters, and
the clock offset between a capture and the peer's.

What the hosts are comes from the data too: a network lab records its hosts' addresses, routes, default TTLs and
firewall counters (`Trace.network`); a capture merged with the peer's records each side's own addresses
(`network["merge"]`). Without either, the rules that need them say nothing.

It is long because the network labs' rules share one view of the links (`net_of`, the copies of a packet across the
router); each rule is short.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...core.companions import ip_offset, ipv4, lookup
from ...core.dissect import tcp_options
from ...core.pairing import CONNECTS, DNS_PORT, SENDS
from ...core.paths import Copies, copies, own_link
from ...core.protocols import QTYPES, dns_message
from ...model import Addr, Call, Packet
from ..context import Context
from ..facts import (
    BlackHole,
    ClockOffset,
    Counted,
    DnsTries,
    Fact,
    Forwarded,
    Fragments,
    NatRewrite,
    NeighbourUnanswered,
    NoRoute,
    PathMtu,
    Stopped,
    TtlOrigin,
)
from . import rule
from .udp import meaning

ENETUNREACH, EHOSTUNREACH = 101, 113
INITIAL_TTLS = (32, 64, 128, 255)  # the values systems start from (Linux 64, Windows 128, network gear 255)
DROP_NS = 2_000_000  # core.paths.DROP_NS


@dataclass
class Net:
    """What the rules know of the network: the links (capture interfaces), which host has which address and
    sits on which link, each host's default TTL."""

    links: tuple[str, ...]
    host_of: dict[str, str] = field(default_factory=dict)  # address -> host
    hosts_on: list[set[str]] = field(default_factory=list)  # interface -> hosts on that link
    tap_host: list[str] = field(default_factory=list)  # interface -> the host the capture sits in ("" if none)
    ttl: dict[str, int] = field(default_factory=dict)  # host -> its default TTL
    routes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    firewall: list[dict[str, Any]] = field(default_factory=list)
    client: str = ""
    merge: dict[str, Any] = field(default_factory=dict)

    def link(self, i: int) -> str:
        return self.links[i] if 0 <= i < len(self.links) else f"interface {i}"

    def interface_of(self, address: str) -> int | None:
        """The link the host with ADDRESS is on, when it is on one only (a router is on several)."""
        host = self.host_of.get(address)
        on = [i for i, hosts in enumerate(self.hosts_on) if host in hosts]
        return on[0] if host is not None and len(on) == 1 else None

    def describe_host(self, address: str) -> str:
        host = self.host_of.get(address)
        return f"the {host} {address}" if host else address


def _plain_host(text: object) -> str:
    return str(text).split("/", 1)[0]


def net_of(ctx: Context) -> Net | None:
    """The network of a capture on several links (built once per context), or None."""
    cached = ctx.__dict__.get("_net")
    if cached is not None or "_net" in ctx.__dict__:
        return cached
    t = ctx.trace
    out: Net | None = None
    if t.capture.links:
        out = Net(t.capture.links)
        data = t.network
        for h in data.get("hosts", []) if isinstance(data.get("hosts"), list) else []:
            if not isinstance(h, dict):
                continue
            name = str(h.get("name", ""))
            for a in h.get("addresses", []) or []:
                out.host_of[_plain_host(a)] = name
            if isinstance(h.get("ttl"), int):
                out.ttl[name] = h["ttl"]
            if isinstance(h.get("routes"), list):
                out.routes[name] = [r for r in h["routes"] if isinstance(r, dict)]
        taps = {str(tp.get("name")): tp for tp in data.get("taps", []) or [] if isinstance(tp, dict)}
        for name in t.capture.links:
            tap = taps.get(name, {})
            out.hosts_on.append({str(x) for x in tap.get("link", []) or []})
            out.tap_host.append(str(tap.get("host", "")))
        out.firewall = [r for r in data.get("firewall", []) or [] if isinstance(r, dict)]
        out.client = str(data.get("client", ""))
        merge = data.get("merge")
        if isinstance(merge, dict):
            out.merge = merge
            out.hosts_on, out.tap_host = [], []
            for i, side in enumerate(merge.get("sides", []) or []):
                name = str(side.get("name", f"side {i}")) if isinstance(side, dict) else f"side {i}"
                for a in (side.get("addresses", []) if isinstance(side, dict) else []) or []:
                    out.host_of.setdefault(str(a), name)
                out.hosts_on.append({name})
                out.tap_host.append(name)
    ctx.__dict__["_net"] = out
    return out


def _copies(ctx: Context) -> Copies:
    found = ctx.__dict__.get("_copies")
    if found is None:
        found = ctx.__dict__["_copies"] = copies(ctx.trace.packets)
    return found


def what(p: Packet) -> str:
    """A packet in one word or two: "SYN", "SYN/ACK", "RST", "segment", "datagram", "ICMP ...", "fragment"."""
    if p.proto == "TCP":
        if "S" in p.flags:
            return "SYN/ACK" if "A" in p.flags else "SYN"
        if "R" in p.flags:
            return "RST"
        if "F" in p.flags:
            return "FIN"
        return "segment" if p.payload else "ACK"
    if p.proto == "UDP":
        return "DNS query" if p.dport == DNS_PORT else "DNS answer" if p.sport == DNS_PORT else "datagram"
    if p.icmp is not None and p.proto in ("ICMP", "ICMPv6"):
        return f"ICMP {meaning(p)}" if p.quoted is not None else f"{p.proto} type {p.icmp[0]}"
    if p.proto == "other" and ipv4(p) is not None:
        return "fragment"
    return p.proto


def _ip_len(p: Packet) -> int:
    ip = ipv4(p)
    return ip.total if ip is not None else p.length - 14


def _expected(net: Net, p: Packet) -> int | None:
    """The link P should appear on next, when its destination lies on another link than the one it was seen on,
    beyond the host the capture sits in."""
    dst = net.interface_of(p.dst)
    src_host, dst_host = net.host_of.get(p.src), net.host_of.get(p.dst)
    if dst is None or dst == p.interface or src_host == dst_host:
        return None
    if 0 <= p.interface < len(net.tap_host) and dst_host == net.tap_host[p.interface] and not net.merge:
        return None  # it is for the host the capture sits in
    return dst


# -- where each packet went ------------------------------------------------------------------------------------


@rule
def paths(ctx: Context) -> Iterator[Fact]:
    net = net_of(ctx)
    if net is None or len(net.links) < 2:
        return
    found = _copies(ctx)
    packets = ctx.packets
    flows = ctx.alignment.flows
    told: set[tuple[int | None, str]] = set()  # flows already followed (one story each)
    stopped: dict[tuple[int, int | None, str, Addr, Addr], list[Packet]] = defaultdict(list)
    for p in sorted(ctx.trace.packets, key=lambda p: (p.time_ns, p.id)):
        if p.interface == 0:
            seen = found.seen_on(p.id)
        else:
            origin = found.origin.get(p.id)
            if origin is not None:
                continue  # told from its own-link copy
            seen = {}
        expected = _expected(net, p)
        fid = flows.of_packet.get(p.id) if p.interface == 0 else None
        if expected is not None and expected not in seen:
            stopped[(p.interface, expected, what(p) if p.proto != "TCP" or "S" in p.flags or "R" in p.flags
                     else "segment", (p.src, p.sport), (p.dst, p.dport))].append(p)
            continue
        if what(p) == "fragment":
            continue  # told with its datagram (ip.fragments)
        for iface, cid in seen.items():
            c = packets[cid]
            first, second = (p, c) if p.time_ns <= c.time_ns else (c, p)
            if (fid, "") in told:
                continue  # one story per flow: its first packet that crossed
            told.add((fid, "" if fid is not None else str(p.id)))
            crossed = sum(1 for q in ctx.trace.packets if q.interface == 0 and flows.of_packet.get(q.id) == fid
                          and _seen(found, q)) if fid is not None else 1
            before, after = ((first.src, first.sport), (first.dst, first.dport)), \
                ((second.src, second.sport), (second.dst, second.dport))
            base: dict[str, Any] = {"packets": (first.id, second.id), "flow": fid, "time_ns": first.time_ns,
                                    "sockets": _sockets(ctx, p)}
            if before != after:
                reply = _reply(ctx, found, p, fid)
                yield NatRewrite(inside=before if first.interface == 0 else after,
                                 outside=after if first.interface == 0 else before,
                                 inside_link=net.link(0), outside_link=net.link(iface),
                                 rewritten=_rewritten(before, after), port_kept=_port_kept(before, after),
                                 packet=first.id, copy=second.id, reply=reply[0] if reply else None,
                                 reply_copy=reply[1] if reply else None, delay_ns=second.time_ns - first.time_ns,
                                 **{**base, "packets": (first.id, second.id, *(reply or ()))})
            else:
                yield Forwarded(packet=first.id, copy=second.id, what=what(first), seen_on=net.link(first.interface),
                                then_on=net.link(second.interface), delay_ns=second.time_ns - first.time_ns,
                                ttl_before=first.ttl, ttl_after=second.ttl, source=before[0], target=before[1],
                                crossed=max(1, crossed), **base)
    for (iface, expected, kind, src, dst), rows in stopped.items():
        yield _stopped(ctx, net, iface, expected or 0, kind, src, dst, rows)


def _seen(found: Copies, q: Packet) -> dict[int, int]:
    if q.interface == 0:
        return found.seen_on(q.id)
    origin = found.origin.get(q.id)
    return {0: origin} if origin is not None else {}


def _sockets(ctx: Context, p: Packet) -> tuple[int, ...]:
    return tuple(sorted({x.socket for x in ctx.alignment.pairs_of(p.id) if x.socket}))


def _rewritten(before: tuple[Addr, Addr], after: tuple[Addr, Addr]) -> str:
    parts = [name for name, x, y in (("source", before[0], after[0]), ("destination", before[1], after[1]))
             if x != y]
    return " and ".join(parts)


def _port_kept(before: tuple[Addr, Addr], after: tuple[Addr, Addr]) -> bool:
    return all(x[1] == y[1] for x, y in zip(before, after, strict=True) if x != y)


def _reply(ctx: Context, found: Copies, p: Packet, fid: int | None) -> tuple[int, int] | None:
    """The first answer in P's flow on the far link and its copy on the program's link."""
    if fid is None:
        return None
    for q in ctx.trace.packets:
        if q.interface == 0 and ctx.alignment.flows.of_packet.get(q.id) == fid and (q.dst, q.dport) == (p.src,
                                                                                                        p.sport):
            far = found.seen_on(q.id)
            if far:
                return min(far.values()), q.id
    return None


def _stopped(ctx: Context, net: Net, iface: int, expected: int, kind: str, src: Addr, dst: Addr,
             rows: list[Packet]) -> Stopped:
    first = rows[0]
    answer = _answer(ctx, first, rows)
    drop = _drop(ctx, rows)
    rule_text, rule_host, rule_n = _rule(net, first)
    return Stopped(what=kind, source=src, target=dst, seen_on=net.link(iface), missing_on=net.link(expected),
                   first=first.id, count=len(rows), largest=max(_ip_len(p) for p in rows),
                   answered_by=answer.id if answer else None, answer=what(answer) if answer else "",
                   drop=drop.id if drop else None, drop_reason=drop.fields.get("reason", "") if drop else "",
                   drop_location=drop.fields.get("location", "").split("+")[0] if drop else "",
                   drop_after_ns=min((drop.time_ns - p.time_ns for p in rows if 0 <= drop.time_ns - p.time_ns),
                                     default=0) if drop else 0,
                   rule=rule_text, rule_host=rule_host, rule_packets=rule_n,
                   packets=tuple(p.id for p in rows[:16]) + ((answer.id,) if answer else ()),
                   kernel=(drop.id,) if drop else (), flow=ctx.alignment.flows.of_packet.get(first.id),
                   sockets=_sockets(ctx, first), time_ns=first.time_ns)


def _answer(ctx: Context, first: Packet, rows: Sequence[Packet]) -> Packet | None:
    """An ICMP error quoting the first packet's flow, or a RST answering a SYN, that came back soon after."""
    for q in ctx.trace.packets:
        if q.interface != first.interface or q.time_ns < first.time_ns or q.time_ns > rows[-1].time_ns + DROP_NS:
            continue
        if q.quoted is not None and (q.quoted.src, q.quoted.sport) == (first.src, first.sport) and \
                (q.quoted.dst, q.quoted.dport) == (first.dst, first.dport):
            return q
        if q.proto == "TCP" and "R" in q.flags and (q.src, q.sport, q.dst, q.dport) == (first.dst, first.dport,
                                                                                      first.src, first.sport):
            return q
    return None


def _drop(ctx: Context, rows: Sequence[Packet]) -> Any:
    """The first kfree_skb (of a path reason) soon after one of the packets."""
    for ev in ctx.trace.kernel:
        if ev.event == "kfree_skb" and any(0 <= ev.time_ns - p.time_ns <= DROP_NS for p in rows):
            return ev
    return None


def _rule(net: Net, p: Packet) -> tuple[str, str, int]:
    """The one firewall rule that counted packets in the chains a packet like P passes (forward, input)."""
    hits = [r for r in net.firewall if int(r.get("packets", 0) or 0) > 0 and r.get("chain") in ("forward", "input")]
    if len(hits) != 1:
        return "", "", 0
    r = hits[0]
    return f"{r.get('rule')} (chain {r.get('chain')})", str(r.get("host", "")), int(r.get("packets", 0))


# -- who made an RST or ICMP error -----------------------------------------------------------------------------


@rule
def ttl_origins(ctx: Context) -> Iterator[Fact]:
    net = net_of(ctx)
    if net is None:
        return
    found = _copies(ctx)
    own = own_link(ctx.trace)
    crossing: dict[str, Packet] = {}  # address -> a packet from it that came from another link
    for p in own:
        if p.ttl and p.src not in crossing and found.seen_on(p.id) and any(
                ctx.packets[c].time_ns < p.time_ns for c in found.seen_on(p.id).values()):
            crossing[p.src] = p
    told: set[tuple[str, object, int]] = set()
    for p in own:
        is_rst = p.proto == "TCP" and "R" in p.flags
        is_error = p.quoted is not None and p.icmp is not None
        if not (is_rst or is_error) or not p.ttl or net.host_of.get(p.src) == net.client:
            continue
        if (p.src, p.icmp if is_error else "RST", p.ttl) in told:
            continue  # the same maker again
        told.add((p.src, p.icmp if is_error else "RST", p.ttl))
        earlier = [ctx.packets[c] for c in found.seen_on(p.id).values() if ctx.packets[c].time_ns < p.time_ns]
        maker = _maker(net, p, bool(earlier))
        initial = net.ttl.get(maker) if maker else None
        initial = initial or min((t for t in INITIAL_TTLS if t >= p.ttl), default=255)
        ref = crossing.get(p.src)
        ref = ref if ref is not None and ref.id != p.id and ref.ttl != p.ttl else None
        yield TtlOrigin(packet=p.id, what="RST" if is_rst else f"ICMP {meaning(p)}", sender=p.src, ttl=p.ttl,
                        initial=initial, hops=initial - p.ttl,
                        crossed=net.link(earlier[0].interface) if earlier else "", reference=ref.id if ref else None,
                        reference_ttl=ref.ttl if ref else 0, maker=maker or "",
                        packets=(p.id, *(q.id for q in earlier[:1]), *((ref.id,) if ref else ())),
                        flow=ctx.alignment.flows.of_packet.get(p.id), sockets=_sockets(ctx, p), time_ns=p.time_ns)


def _maker(net: Net, p: Packet, crossed: bool) -> str:
    """The host that made P: its source's, if P came from further away; else the host next to the program on its
    own link that can speak for that address (the router, for a host behind it)."""
    host = net.host_of.get(p.src)
    if crossed or host is None or not net.hosts_on:
        return host or ""
    if host in net.hosts_on[0]:
        return host
    near = [h for h in net.hosts_on[0] if h != net.client and h in set().union(*net.hosts_on[1:])]
    return near[0] if len(near) == 1 else ""


# -- path MTU ----------------------------------------------------------------------------------------------------


def _mtu(p: Packet) -> int:
    if p.proto == "ICMP" and len(p.payload) >= 4:
        return int(struct.unpack_from("!H", p.payload, 2)[0])
    if p.proto == "ICMPv6" and len(p.payload) >= 4:
        return int(struct.unpack_from("!I", p.payload, 0)[0])
    return 0


@rule
def path_mtu(ctx: Context) -> Iterator[Fact]:
    net = net_of(ctx)
    for c in ctx.scene.connections:
        too_big = [p for p in c.icmp if p.icmp in ((3, 4),) and p.proto == "ICMP" or p.proto == "ICMPv6"
                   and p.icmp == (2, 0)]
        rows = [p for p, s in c.packets if s != "icmp"]
        if too_big:
            first = too_big[0]
            assert first.quoted is not None
            sender = (first.quoted.src, first.quoted.sport)
            mtu = _mtu(first)
            mine = [p for p in rows if (p.src, p.sport) == sender and p.payload]
            shrunk = next((p for p in mine if p.time_ns > first.time_ns and _ip_len(p) <= mtu), None)
            big = [p for p in mine if (shrunk is None or p.time_ns < shrunk.time_ns) and _ip_len(p) > mtu]
            later = [p for p in mine if shrunk is not None and p.time_ns >= shrunk.time_ns]
            ip = ipv4(big[0]) if big else None
            beyond = [q for q in ctx.trace.packets if q.interface and
                      _copies(ctx).origin.get(q.id) in {p.id for p in mine}]
            yield PathMtu(sender=sender, target=(first.quoted.dst, first.quoted.dport), reporter=first.src, mtu=mtu,
                          icmp=tuple(p.id for p in too_big), big=len(big),
                          largest=max((_ip_len(p) for p in big), default=0), df=bool(ip and ip.df),
                          after=later[0].id if later else None,
                          after_largest=max((_ip_len(p) for p in later), default=0),
                          beyond_largest=max((_ip_len(q) for q in beyond), default=0), mss=_mss(rows),
                          packets=tuple(p.id for p in big[:4]) + tuple(p.id for p in too_big[:4])
                          + ((later[0].id,) if later else ()), flow=c.id,
                          sockets=c.client.sockets + c.server.sockets, time_ns=first.time_ns)
        elif net is not None and len(net.links) > 1:
            yield from _black_hole(ctx, net, c.id, rows, c.client.sockets + c.server.sockets)


def _mss(rows: list[Packet]) -> tuple[tuple[int, str, int], ...]:
    """The MSS option of the connection's SYN and SYN/ACK (their first copies), as each end announced it."""
    out: list[tuple[int, str, int]] = []
    for flags, name in (("S", "SYN"), ("SA", "SYN/ACK")):
        p = next((p for p in rows if p.flags == flags), None)
        o = tcp_options(p) if p is not None else None
        if p is not None and o is not None and o.mss is not None:
            out.append((p.id, name, o.mss))
    return tuple(out)


def _black_hole(ctx: Context, net: Net, fid: int, rows: list[Packet], sockets: tuple[int, ...]) -> Iterator[Fact]:
    found = _copies(ctx)
    for sender in {(p.src, p.sport) for p in rows}:
        data = [p for p in rows if (p.src, p.sport) == sender and p.payload]
        lost = [p for p in data if _expected(net, p) is not None and _expected(net, p) not in found.seen_on(p.id)]
        if len(lost) < 2:
            continue
        size = max(_ip_len(p) for p in lost)
        crossed = [p for p in rows if (p.src, p.sport) == sender and found.seen_on(p.id)]
        crossed_largest = max((_ip_len(p) for p in crossed), default=0)
        same = [p for p in lost if p.seq == lost[0].seq]
        ip = ipv4(lost[0])
        if not crossed or crossed_largest >= size or len(same) < 2 or not (ip and ip.df):
            continue
        dropped_icmp = [r for r in net.firewall if "frag" in str(r.get("rule", "")) or "too-big" in
                        str(r.get("rule", ""))]
        counted = [r for r in dropped_icmp if int(r.get("packets", 0) or 0) > 0]
        rule_text = "; ".join(f"{r.get('rule')} ({r.get('host')}, chain {r.get('chain')})" for r in counted)
        yield BlackHole(sender=sender, target=(lost[0].dst, lost[0].dport), size=size, count=len(lost),
                        first=lost[0].id, sent=len(same),
                        waits_ns=tuple(b.time_ns - a.time_ns for a, b in zip(same, same[1:], strict=False)),
                        crossed_largest=crossed_largest, missing_on=net.link(_expected(net, lost[0]) or 1),
                        rule=rule_text, rule_packets=sum(int(r.get("packets", 0)) for r in counted), mss=_mss(rows),
                        packets=tuple(p.id for p in same[:6]), flow=fid, sockets=sockets, time_ns=lost[0].time_ns)


# -- fragments ---------------------------------------------------------------------------------------------------


@rule
def fragments(ctx: Context) -> Iterator[Fact]:
    net = net_of(ctx)
    found = _copies(ctx) if net is not None else None
    datagrams: dict[tuple[str, str, int, int], list[tuple[Packet, Any]]] = defaultdict(list)
    for p in own_link(ctx.trace):
        if p.proto not in ("UDP", "ICMP", "other"):
            continue
        ip = ipv4(p)
        if ip is not None and (ip.mf or ip.offset):
            datagrams[(p.src, p.dst, ip.proto, ip.ident)].append((p, ip))
    for (src, dst, proto, ident), parts in datagrams.items():
        parts.sort(key=lambda x: x[1].offset)
        head = parts[0][0]
        if parts[0][1].offset != 0 or parts[-1][1].mf:
            continue  # not all of it was captured
        last_frame, last_ip = parts[-1]
        header = last_ip.start - (ip_offset(last_frame) or 0)  # the last fragment's own IP header length
        size = last_ip.offset + last_ip.total - header
        call = next((x.call for x in ctx.alignment.pairs_of(head.id) if x.side == "out" and x.call), None)
        crossed = [c for p, _ in parts for c in (found.seen_on(p.id).values() if found else ())]
        then_on = net.link(ctx.packets[crossed[0]].interface) if crossed and net else ""
        yield Fragments(source=(src, head.sport), target=(dst, head.dport), ident=ident, size=size,
                        sizes=tuple(ip.total for _, ip in parts), offsets=tuple(ip.offset for _, ip in parts),
                        more=tuple(ip.mf for _, ip in parts), df=parts[0][1].df, call=call, crossed=len(crossed),
                        then_on=then_on, proto={17: "UDP", 1: "ICMP", 6: "TCP"}.get(proto, f"protocol {proto}"),
                        packets=tuple(p.id for p, _ in parts[:8]) + tuple(crossed[:8]),
                        calls=(call,) if call else (), flow=ctx.alignment.flows.of_packet.get(head.id),
                        sockets=_sockets(ctx, head), time_ns=head.time_ns)


# -- no route, no neighbour -----------------------------------------------------------------------------------


def _covering(routes: list[dict[str, Any]], host: str) -> str:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ""
    best: tuple[int, str] | None = None
    for r in routes:
        dst = str(r.get("dst", ""))
        try:
            network = ipaddress.ip_network("0.0.0.0/0" if dst == "default" and address.version == 4 else
                                           "::/0" if dst == "default" else dst)
        except ValueError:
            continue
        if network.version == address.version and address in network and (best is None or network.prefixlen >
                                                                            best[0]):
            best = (network.prefixlen, _route_text(r))
    return best[1] if best else ""


def _route_text(r: dict[str, Any]) -> str:
    return f"{r.get('dst')}" + (f" via {r['via']}" if r.get("via") else "") + f" dev {r.get('dev')}"


@rule
def no_route(ctx: Context) -> Iterator[Fact]:
    net = net_of(ctx)
    for c in ctx.trace.calls:
        errno = c.errno if c.errno is not None else c.reported
        if errno != ENETUNREACH or ctx.alignment.packets_of_call(c.id) or c.op not in CONNECTS | SENDS:
            continue
        target = c.remote or _address(c)
        if target is None:
            continue
        host = net.client if net is not None else ""
        routes = [r for r in (net.routes.get(host, []) if net else []) if ":" not in str(r.get("dst", "")) or
                  ":" in target[0]]
        yield NoRoute(call=c.id, op=c.op, target=target, host=host, routes=tuple(_route_text(r) for r in routes),
                      covering=_covering(routes, target[0]) if routes else "",
                      links=net.links if net else (ctx.trace.capture.interface,), calls=(c.id,),
                      sockets=(c.socket,) if c.socket else (), time_ns=c.start_ns)


def _address(c: Call) -> Addr | None:
    a = c.args.get("address")
    if isinstance(a, list) and len(a) >= 2 and isinstance(a[0], str) and isinstance(a[1], int):
        return (a[0], a[1])
    return None


@rule
def neighbours(ctx: Context) -> Iterator[Fact]:
    asked: dict[tuple[str, str, int | None], list[Packet]] = defaultdict(list)
    answered: set[tuple[str, str]] = set()
    for p in own_link(ctx.trace):
        found = lookup(p)
        if found is None:
            continue
        if found.request:
            call = next((x.call for x in ctx.alignment.pairs_of(p.id) if x.side == "out"), None)
            if call is not None:
                asked[(found.asker, found.target, call)].append(p)
        else:
            answered.add((found.target, found.asker))
    for (asker, target, call_id), rows in asked.items():
        if (asker, target) in answered:
            continue
        asker_call = ctx.calls.get(call_id) if call_id is not None else None
        own = [pid for pid in ctx.alignment.packets_of_call(call_id) if lookup(ctx.packets[pid]) is None] \
            if call_id is not None else []
        yield NeighbourUnanswered(protocol="ARP" if rows[0].proto == "ARP" else "NDP", asker=asker, target=target,
                                  requests=tuple(p.id for p in rows),
                                  gaps_ns=tuple(b.time_ns - a.time_ns for a, b in zip(rows, rows[1:], strict=False)),
                                  call=call_id, error=asker_call.fault.name or asker_call.fault.type
                                  if asker_call and asker_call.fault else "",
                                  waited_ns=(asker_call.end_ns - rows[0].time_ns) if asker_call else 0, sent=len(own),
                                  packets=tuple(p.id for p in rows[:16]), calls=(call_id,) if call_id else (),
                                  sockets=(asker_call.socket,) if asker_call and asker_call.socket else (),
                                  time_ns=rows[0].time_ns)


# -- the resolver's tries ---------------------------------------------------------------------------------------


@rule
def dns_tries(ctx: Context) -> Iterator[Fact]:
    by_call: dict[tuple[int, Addr], list[tuple[Packet, Any]]] = defaultdict(list)
    for conv in ctx.scene.conversations:
        call = ctx.alignment.resolver.get(conv.id)
        if call is None:
            continue
        for p, _ in conv.datagrams:
            m = dns_message(p.payload)
            if m is not None:
                server = (p.dst, p.dport) if not m.response else (p.src, p.sport)
                by_call[(call, server)].append((p, m))
    for (call_id, server), rows in by_call.items():
        rows.sort(key=lambda x: x[0].time_ns)
        queries = [(p, m) for p, m in rows if not m.response]
        answers = [(p, m) for p, m in rows if m.response]
        if not queries:
            continue
        questions = {(m.name, m.qtype) for _, m in queries}
        rounds: list[int] = []  # the start of each round: a question asked again starts one
        asked: set[tuple[str, int]] = set()
        for p, m in queries:
            if (m.name, m.qtype) in asked or not rounds:
                rounds.append(p.time_ns)
                asked = set()
            asked.add((m.name, m.qtype))
        resolver_call = ctx.calls.get(call_id)
        err = (resolver_call.fault.name or resolver_call.fault.type
               if resolver_call is not None and resolver_call.fault is not None else "")
        yield DnsTries(server=server, names=tuple(sorted({n for n, _ in questions})),
                       types=tuple(QTYPES.get(t, str(t)) for t in sorted({t for _, t in questions})),
                       queries=len(queries), tries=len(rounds),
                       gaps_ns=tuple(b - a for a, b in zip(rounds, rounds[1:], strict=False)),
                       rcodes=tuple(m.rcode_name for _, m in answers),
                       answer_ns=answers[0][0].time_ns - queries[0][0].time_ns if answers else 0,
                       after_last_ns=(resolver_call.end_ns - queries[-1][0].time_ns) if resolver_call else 0,
                       call=call_id,
                       error=err, packets=tuple(p.id for p, _ in rows[:12]), calls=(call_id,),
                       time_ns=queries[0][0].time_ns)


# -- the lab's firewall, the merge ------------------------------------------------------------------------------


@rule
def counted(ctx: Context) -> Iterator[Fact]:
    net = net_of(ctx)
    for r in net.firewall if net is not None else ():
        yield Counted(host=str(r.get("host", "")), chain=str(r.get("chain", "")), rule=str(r.get("rule", "")),
                      matched=int(r.get("packets", 0) or 0), size=int(r.get("bytes", 0) or 0),
                      time_ns=ctx.trace.packets[-1].time_ns if ctx.trace.packets else ctx.trace.started_ns)


@rule
def merged(ctx: Context) -> Iterator[Fact]:
    net = net_of(ctx)
    m = net.merge if net is not None else {}
    if not m:
        return
    sides = [str(s.get("name", "")) for s in m.get("sides", []) if isinstance(s, dict)]
    yield ClockOffset(this=sides[0] if sides else "", peer=sides[1] if len(sides) > 1 else "",
                      offset_ns=int(m.get("offset_ns", 0)), delay_ns=int(m.get("delay_ns", 0)),
                      matched=int(m.get("matched", 0)), both_ways=bool(m.get("both_ways")),
                      time_ns=ctx.trace.packets[0].time_ns if ctx.trace.packets else 0)
