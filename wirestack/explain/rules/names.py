"""Names: what getaddrinfo() was asked and gave, its resolver errors, and DNS on the wire."""

from __future__ import annotations

from collections.abc import Iterator

from ...core.pairing import DNS_PORT
from ...core.protocols import dns_message
from ...model import EAI, Addr
from ..context import Context
from ..facts import DnsExchange, Fact, PortWrap, ResolveFailed
from ..scene import Conversation
from . import rule


def _port(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


@rule
def port_wraps(ctx: Context) -> Iterator[Fact]:
    """getaddrinfo handed back a different port than it was given (glibc keeps only the low 16 bits)."""
    for c in ctx.trace.calls:
        asked = _port(c.args.get("port"))
        if c.op != "getaddrinfo" or asked is None or not isinstance(c.result, list):
            continue
        given = {r[2][1] for r in c.result if isinstance(r, list) and len(r) == 3 and isinstance(r[2], list)
                 and len(r[2]) == 2 and isinstance(r[2][1], int)}
        if not given or given == {asked}:
            continue
        port = min(given)
        first = next((p for p in ctx.trace.packets if p.dport == port and p.proto in ("TCP", "UDP")
                      and p.time_ns >= c.start_ns and ("S" in p.flags or p.proto == "UDP")), None)
        carried = any(p.dport == asked or p.sport == asked for p in ctx.trace.packets)
        yield PortWrap(call=c.id, asked=asked, given=port, first=first.id if first else None,
                       first_to=(first.dst, first.dport) if first else None,
                       first_what=("SYN" if first.proto == "TCP" else "datagram") if first else "", carried=carried,
                       calls=(c.id,), packets=(first.id,) if first else (), time_ns=c.start_ns)


def _dns(conv: Conversation) -> tuple[list[str], int, list[str], Addr, Addr]:
    names: list[str] = []
    queries, answers = 0, []
    client, server = conv.first.addr, conv.second.addr
    if client[1] == DNS_PORT and server[1] != DNS_PORT:
        client, server = server, client
    for p, _ in conv.datagrams:
        m = dns_message(p.payload)
        if m is None:
            continue
        if m.response:
            answers.append(m.rcode_name)
        else:
            queries += 1
            if m.name and m.name not in names:
                names.append(m.name)
    return names, queries, answers, client, server


@rule
def lookups(ctx: Context) -> Iterator[Fact]:
    by_call: dict[int, list[Conversation]] = {}
    for conv in ctx.scene.conversations:
        call = ctx.alignment.resolver.get(conv.id)
        if call is not None:
            by_call.setdefault(call, []).append(conv)
    for c in ctx.trace.calls:
        if c.op != "getaddrinfo" or c.fault is None:
            continue
        convs = by_call.get(c.id, [])
        queries, answers, icmp, servers = 0, [], 0, []
        packets: list[int] = []
        for conv in convs:
            _, q, a, _, server = _dns(conv)
            queries += q
            answers += a
            icmp += len(conv.icmp)
            servers.append(server)
            packets += [p.id for p, _ in conv.datagrams[:4]] + [p.id for p in conv.icmp[:2]]
        fault = c.fault
        yield ResolveFailed(call=c.id, host=str(c.args.get("host"))[:200], port=str(c.args.get("port"))[:20],
                            error=fault.name or fault.type if fault.namespace == EAI else fault.type,
                            code=fault.code, queries=queries, answers=tuple(answers), icmp=icmp,
                            servers=tuple(dict.fromkeys(servers)), calls=(c.id,), packets=tuple(packets),
                            time_ns=c.start_ns)
    failed = {c.id for c in ctx.trace.calls if c.op == "getaddrinfo" and c.fault is not None}
    for conv in ctx.scene.conversations:
        if DNS_PORT not in (conv.first.addr[1], conv.second.addr[1]):
            continue
        call = ctx.alignment.resolver.get(conv.id)
        if call in failed:
            continue  # told with the failure
        names, queries, answers, client, server = _dns(conv)
        if not queries and not answers:
            continue
        first, second = (conv.first, conv.second) if conv.first.addr == client else (conv.second, conv.first)
        yield DnsExchange(client=first, server=second, names=tuple(names[:8]), queries=queries,
                          answers=tuple(answers), call=call, icmp=len(conv.icmp),
                          packets=tuple(p.id for p, _ in conv.datagrams[:4]), calls=(call,) if call else (),
                          flow=conv.id, time_ns=conv.datagrams[0][0].time_ns if conv.datagrams else 0)
