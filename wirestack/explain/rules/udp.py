"""UDP conversations and the ICMP errors that quote datagrams (and TCP segments)."""

from __future__ import annotations

from collections.abc import Iterator

from ...core.companions import datagram_size
from ...core.pairing import CONNECTS, DNS_PORT, RECVS
from ...model import TIMEOUT, Call, Packet
from ..context import Context
from ..facts import Datagrams, Fact, IcmpError, LoneIcmp
from ..scene import End
from . import rule

ICMP4 = {(3, 0): "network unreachable", (3, 1): "host unreachable", (3, 2): "protocol unreachable",
         (3, 3): "port unreachable", (3, 4): "fragmentation needed", (3, 9): "network administratively prohibited",
         (3, 10): "host administratively prohibited", (3, 13): "communication administratively prohibited",
         (11, 0): "time exceeded in transit", (11, 1): "fragment reassembly time exceeded",
         (12, 0): "parameter problem"}
ICMP6 = {(1, 0): "no route to destination", (1, 1): "communication administratively prohibited",
         (1, 3): "address unreachable", (1, 4): "port unreachable", (2, 0): "packet too big",
         (3, 0): "hop limit exceeded", (4, 0): "parameter problem"}


def meaning(p: Packet) -> str:
    assert p.icmp is not None
    table = ICMP6 if p.proto == "ICMPv6" else ICMP4
    return table.get(p.icmp, table.get((p.icmp[0], 0), f"type {p.icmp[0]} code {p.icmp[1]}") if p.icmp[0] in
                     (11, 2, 3) else f"type {p.icmp[0]} code {p.icmp[1]}")


@rule
def conversations(ctx: Context) -> Iterator[Fact]:
    for conv in ctx.scene.conversations:
        if ctx.alignment.resolver.get(conv.id) is not None or DNS_PORT in (conv.first.addr[1], conv.second.addr[1]):
            pass  # DNS: told by the names rules; its ICMP errors below still are
        else:
            sent, back = conv.sent_by("a"), conv.sent_by("b")
            waited = None
            if sent and conv.first.traced:
                last = sent[-1].time_ns
                waited = next((c for c in ctx.calls_of(conv.first) if c.op in RECVS and c.fault is not None
                               and c.fault.namespace == TIMEOUT and c.end_ns >= last), None)
            ids = tuple(p.id for p in (sent[:1] + back[:1]))
            yield Datagrams(first=conv.first, second=conv.second, sent=len(sent), back=len(back),
                            bytes_sent=sum(map(datagram_size, sent)), bytes_back=sum(map(datagram_size, back)),
                            waited_by=waited.id if waited else None,
                            error=waited.fault.name or waited.fault.type if waited and waited.fault else "",
                            packets=ids, calls=(waited.id,) if waited else (), flow=conv.id,
                            sockets=conv.first.sockets + conv.second.sockets,
                            time_ns=conv.datagrams[0][0].time_ns if conv.datagrams else 0)
        yield from _icmp(ctx, conv.datagrams, conv.icmp, conv.first, conv.second, conv.id, "UDP")
    for c in ctx.scene.connections:
        if c.icmp:
            rows = [(p, side) for p, side in c.packets if side != "icmp"]
            yield from _icmp(ctx, rows, c.icmp, c.client, c.server, c.id, "TCP")
    for p in ctx.scene.lone_icmp:
        if p.quoted is None or p.icmp is None:
            continue
        q = p.quoted
        yield LoneIcmp(icmp=p.id, icmp_type=p.icmp[0], icmp_code=p.icmp[1], meaning=meaning(p), reporter=p.src,
                       quoted=(q.proto, (q.src, q.sport), (q.dst, q.dport)), packets=(p.id,), time_ns=p.time_ns)


def _icmp(ctx: Context, rows: list[tuple[Packet, str]], errors: list[Packet], a: End, b: End, flow: int,
          proto: str) -> Iterator[Fact]:
    """Each ICMP error with the datagram it quotes: the latest one from the quoted sender before it, found by
    one merged walk in time order (O(n), not a scan per error)."""
    last: dict[tuple[str, int], Packet] = {}
    connected: dict[int, bool] = {}  # by id(end): whether an end's sockets ever connect()ed
    timeouts: dict[int, list[Call]] = {}  # by id(end): its recv calls that timed out, in time order
    merged = sorted([(p.time_ns, 0, p) for p, _ in rows] + [(p.time_ns, 1, p) for p in errors],
                    key=lambda x: (x[0], x[1], x[2].id))
    for _, is_error, p in merged:
        if not is_error:
            last[(p.src, p.sport)] = p
            continue
        q = p.quoted
        if q is None or p.icmp is None:
            continue
        datagram = last.get((q.src, q.sport))
        sender = a if (q.src, q.sport) == a.addr else b
        sent_by = ctx.call_of(datagram, sender.sockets, "out") if datagram is not None and sender.traced else None
        learner = ctx.call_of(p, sender.sockets, "in") if sender.traced else None
        told, error, timed_out = "", "", None
        if learner is not None and learner.errno is not None:
            told, error = "call", learner.fault.name if learner.fault else ""
        elif sender.traced and not _connected(ctx, sender, connected):
            told = "unconnected"
            learner = None
            if id(sender) not in timeouts:
                timeouts[id(sender)] = [c for c in ctx.calls_of(sender) if c.op in RECVS and c.fault is not None
                                        and c.fault.namespace == TIMEOUT]
            timed_out_call = next((c for c in timeouts[id(sender)] if c.end_ns >= p.time_ns), None)
            timed_out = timed_out_call.id if timed_out_call else None
        else:
            learner = None
        calls = tuple(x.id for x in (sent_by, learner) if x is not None) + ((timed_out,) if timed_out else ())
        yield IcmpError(sender=sender, target=(q.dst, q.dport), icmp=p.id, datagram=datagram.id if datagram else None,
                        icmp_type=p.icmp[0], icmp_code=p.icmp[1], meaning=meaning(p), reporter=p.src,
                        delay_ns=p.time_ns - datagram.time_ns if datagram else 0,
                        sent_by=sent_by.id if sent_by else None,
                        sent_returned=sent_by.result if sent_by and isinstance(sent_by.result, int) else None,
                        told=told, learner=learner.id if learner else None, error=error, timed_out=timed_out,
                        proto=proto, packets=((datagram.id,) if datagram else ()) + (p.id,), calls=calls, flow=flow,
                        sockets=sender.sockets, kernel=ctx.kernel.for_packet(p.id), time_ns=p.time_ns)


def _connected(ctx: Context, end: End, memo: dict[int, bool]) -> bool:
    if id(end) not in memo:
        memo[id(end)] = any(c.op in CONNECTS for c in ctx.calls_of(end))
    return memo[id(end)]
