"""The run as a whole: nothing captured, drops, IPv6 frames, ARP that got no answer."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from ...core.unseen import unseen_notes
from ..context import Context
from ..facts import Fact, Note
from . import rule


@rule
def run(ctx: Context) -> Iterator[Fact]:
    t = ctx.trace
    if t.traced and not t.packets and unseen_notes(t.notes) and t.capture.seen:
        # the probe could not see some calls (uvloop): the capture's traffic may well be the program's
        yield Note(what="run.unseen" if t.kernel_off else "run.unseen_kernel", detail=t.capture.interface,
                   count=t.capture.seen)
    elif t.traced and not t.calls and not t.packets:
        yield Note(what="run.no_calls")
    elif t.traced and t.calls and not t.packets:
        yield Note(what="capture.empty", detail=t.capture.interface)
    if t.capture.dropped:
        yield Note(what="capture.dropped", count=t.capture.dropped)
    for flow in [c.flow for c in ctx.scene.connections] + [v.flow for v in ctx.scene.conversations]:
        if ":" in flow.a[0]:
            pkts = [ctx.packets[p] for p in flow.packets[:4]]
            yield Note(what="ip.v6", detail=", ".join(f"#{p.id} {p.length}" for p in pkts), addr=flow.a,
                       packets=tuple(p.id for p in pkts), flow=flow.id, time_ns=pkts[0].time_ns)
            break


@rule
def arp(ctx: Context) -> Iterator[Fact]:
    """ARP requests for an address that never answered (who has X? and silence)."""
    asked: dict[str, list[int]] = defaultdict(list)
    answered: set[str] = set()
    for p in ctx.scene.other:
        if p.proto != "ARP" or p.icmp is None or ctx.alignment.pairs_of(p.id):
            continue  # a call's own lookups: told with the call (rules.network)
        if p.icmp[0] == 1:
            asked[p.dst].append(p.id)
        elif p.icmp[0] == 2:
            answered.add(p.src)
    for target, ids in asked.items():
        if target not in answered:
            first, last = ctx.packets[ids[0]], ctx.packets[ids[-1]]
            yield Note(what="arp.unanswered", count=len(ids), detail=f"{(last.time_ns - first.time_ns) / 1e9:.2f}",
                       addr=(target, 0), packets=tuple(ids[:16]), time_ns=first.time_ns)
