"""What the kernel's own events add: why it dropped a segment, and the states each traced socket went through."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from ..context import Context
from ..facts import Drop, Fact, States
from . import rule


@rule
def drops(ctx: Context) -> Iterator[Fact]:
    answers: dict[int, dict[str, str]] = {}  # flow -> skb address -> what the kernel sent for it (first one)
    for ev in ctx.trace.kernel:
        link = ctx.kernel.links.get(ev.id)
        if ev.event != "kfree_skb" or link is None:
            continue
        if link.flow is not None and link.flow not in answers:
            sent: dict[str, str] = {}
            for k in ctx.kernel.for_flow(link.flow):
                t = ctx.events[k]
                if t.event in ("tcp_send_reset", "icmp_send") and t.fields.get("skbaddr"):
                    sent.setdefault(t.fields["skbaddr"], "RST" if t.event == "tcp_send_reset" else "ICMP")
            answers[link.flow] = sent
        caused = answers.get(link.flow, {}).get(ev.fields.get("skbaddr", ""), "") if link.flow is not None else ""
        yield Drop(reason=ev.fields.get("reason", ""), location=ev.fields.get("location", "").split("+")[0],
                   caused=caused, packets=link.packets, kernel=(ev.id,), flow=link.flow, sockets=link.sockets,
                   calls=(link.call,) if link.call else (), time_ns=ev.time_ns)


@rule
def states(ctx: Context) -> Iterator[Fact]:
    paths: dict[int, list[tuple[int, str, str]]] = defaultdict(list)
    for ev in ctx.trace.kernel:
        link = ctx.kernel.links.get(ev.id)
        if ev.event != "inet_sock_set_state" or link is None or not link.sockets:
            continue
        old, new = ev.fields.get("oldstate", "?"), ev.fields.get("newstate", "?")
        if old == new:
            continue
        paths[link.sockets[0]].append((ev.id, old, new))
    for socket, path in paths.items():
        names = [path[0][1]] + [new for _, _, new in path]
        yield States(socket=socket, states=tuple(s.removeprefix("TCP_") for s in names),
                     kernel=tuple(k for k, _, _ in path), sockets=(socket,), time_ns=ctx.events[path[0][0]].time_ns)
