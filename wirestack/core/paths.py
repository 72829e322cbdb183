"""A packet along its path: the same packet captured on several links (a network lab's taps, or a capture merged
with the peer's, see `merge`). Pure.

Interface 0 of such a capture is the traced program's own link (`CaptureInfo.links`). Only its packets take part
in pairing, flows and the scene: a packet forwarded by a router is captured once on each link it crosses, and
counting each copy as a packet of its own would see every SYN twice ("a retransmission"). The copies are kept
beside it, to follow the packet: where it went, what the router changed (the TTL, the addresses under NAT), and
where it was seen no further.

**Copies** are found by what a router leaves alone: the protocol, the IPv4 identification, the TCP sequence and
acknowledgment numbers and flags, the ICMP type and code, the fragment offset and the payload bytes (NAT rewrites
addresses, ports and checksums; every hop lowers the TTL). Among packets with the same key, each is matched to the
nearest one in time on the other link, within `WINDOW_NS`.

**What is kept** of the other links (`select`): the copies of the packets kept on the program's own link, every
packet of a flow one of those copies belongs to on that link (what the far side sent that never reached the
program's link is part of the lesson), and the ICMP errors quoting such a flow.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from ..model import Addr, KernelEvent, Packet, Trace
from .companions import ipv4

WINDOW_NS = 2_000_000_000  # a copy is at most this far in time from the packet (a merge: after the clock offset)
DROP_NS = 2_000_000  # a kfree_skb this soon after a packet may be its drop (tracefs prints microseconds)
# kfree_skb reasons a router (or a host sending) gives for a packet it will not pass on
PATH_DROPS = frozenset({"NETFILTER_DROP", "PKT_TOO_BIG", "IP_INNOROUTES", "IP_OUTNOROUTES", "IP_INADDRERRORS",
                        "IP_INHDR", "NEIGH_FAILED", "NEIGH_QUEUEFULL", "NEIGH_DEAD", "TC_DROP", "XFRM_POLICY",
                        "IPV6_NDISC_BAD_CODE", "IP_RPFILTER", "UNHANDLED_PROTO"})


def own_link(trace: Trace) -> tuple[Packet, ...]:
    """The packets of the traced program's own link: every packet, unless the capture spans several links."""
    if not trace.capture.links:
        return trace.packets
    return tuple(p for p in trace.packets if not p.interface)


Key = tuple[object, ...]


def key(p: Packet) -> Key | None:
    """What stays the same when a router forwards P (see the module docstring); None: nothing to match on."""
    ip = ipv4(p)
    ident = (ip.ident, ip.offset) if ip is not None else None
    if p.proto == "TCP":
        return ("TCP", ident, p.seq, p.ack, p.flags, p.payload)
    if p.proto == "UDP":
        return ("UDP", ident, p.payload)
    if p.proto in ("ICMP", "ICMPv6") and p.icmp is not None and p.quoted is None:
        return (p.proto, ident, p.icmp, p.payload)
    if p.proto in ("ICMP", "ICMPv6") and p.icmp is not None:
        return (p.proto, ident, p.icmp, len(p.payload))  # the quote is rewritten by NAT: its length is not
    if p.proto == "other" and ip is not None:
        return ("fragment", ident, p.raw[ip.start:ip.start + 64])
    return None


@dataclass
class Copies:
    """Which packets are the same packet: `of` maps a packet of the own link to {interface: its copy there};
    `origin` maps each copy back."""

    of: dict[int, dict[int, int]] = field(default_factory=dict)
    origin: dict[int, int] = field(default_factory=dict)

    def seen_on(self, pid: int) -> dict[int, int]:
        return self.of.get(pid, {})


def copies(packets: Sequence[Packet], window_ns: int = WINDOW_NS) -> Copies:
    """Match each packet of interface 0 with its copy on every other interface (see the module docstring)."""
    mine: dict[Key, list[Packet]] = defaultdict(list)
    theirs: dict[tuple[int, Key], list[Packet]] = defaultdict(list)
    for p in sorted(packets, key=lambda p: (p.time_ns, p.id)):
        k = key(p)
        if k is None:
            continue
        (mine[k] if not p.interface else theirs[(p.interface, k)]).append(p)
    out = Copies()
    for (iface, k), others in theirs.items():
        candidates = mine.get(k)
        if not candidates:
            continue
        taken: set[int] = set()
        for q in others:  # few candidates share a key (a retransmission, a resolver's retry): a scan is fine
            best = min((p for p in candidates if p.id not in taken and abs(p.time_ns - q.time_ns) <= window_ns
                        and iface not in out.of.get(p.id, {})),
                       key=lambda p: abs(p.time_ns - q.time_ns), default=None)
            if best is not None:
                taken.add(best.id)
                out.of.setdefault(best.id, {})[iface] = q.id
                out.origin[q.id] = best.id
    return out


def _flow(p: Packet) -> tuple[str, frozenset[Addr]] | None:
    if p.quoted is not None:
        q = p.quoted
        return q.proto, frozenset({(q.src, q.sport), (q.dst, q.dport)})
    if p.proto in ("TCP", "UDP"):
        return p.proto, frozenset({(p.src, p.sport), (p.dst, p.dport)})
    return None


def select(kept: Iterable[int], packets: Sequence[Packet]) -> list[Packet]:
    """The packets of a capture on several links worth keeping, renumbered 1..N in time order: those of the
    own link whose ids are in KEPT, and what of the other links goes with them (see the module docstring)."""
    kept = set(kept)
    chosen = [p for p in packets if not p.interface and p.id in kept]
    found = copies(chosen + [p for p in packets if p.interface])
    wanted = set(found.origin)
    flows = {(q.interface, f) for q in packets if q.id in wanted and (f := _flow(q)) is not None}
    for q in packets:
        if q.interface and q.id not in wanted and (q.interface, _flow(q)) in flows:
            wanted.add(q.id)
    chosen += [q for q in packets if q.id in wanted]
    chosen.sort(key=lambda p: (p.time_ns, p.interface, p.id))
    return [replace(p, id=n) for n, p in enumerate(chosen, 1)]


def drops(events: Iterable[KernelEvent], packets: Sequence[Packet]) -> list[KernelEvent]:
    """The kfree_skb events that may be a kept packet's end on its way (reasons in PATH_DROPS, within DROP_NS
    after a packet): kfree_skb names no addresses, so these are joined by time alone (see rules.network)."""
    times = sorted(p.time_ns for p in packets)
    if not times:
        return []
    from bisect import bisect_right

    out = []
    for ev in events:
        if ev.event != "kfree_skb" or ev.fields.get("reason") not in PATH_DROPS:
            continue
        i = bisect_right(times, ev.time_ns) - 1
        if i >= 0 and ev.time_ns - times[i] <= DROP_NS:
            out.append(ev)
    return out
