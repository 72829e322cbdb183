"""TLS: the ClientHello and what answered it, alerts and who sent them, a certificate the client rejected."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ...core.protocols import is_client_hello, is_tls_record, preview, tls_records
from ...model import OPENSSL
from ..context import Context
from ..facts import CertificateRejected, Fact, TlsAlert, TlsHello
from ..scene import Connection
from . import rule

_VERIFY_REASONS = ("CERTIFICATE_VERIFY_FAILED",)


@rule
def tls(ctx: Context) -> Iterator[Fact]:
    for c in ctx.scene.connections:
        data = sorted([(p, "a") for p in c.a.data] + [(p, "b") for p in c.b.data], key=lambda x: x[0].time_ns)
        if not data:
            continue
        hello = next(((p, s) for p, s in data if is_client_hello(p.payload)), None)
        if hello is None:
            continue
        yield from _hello(ctx, c, hello[0], hello[1], data)
        yield from _alerts(c, data)
        yield from _rejected(ctx, c, hello[1])


def _handshake_fault(ctx: Context, c: Connection, s: str) -> str:
    for call in ctx.calls_of(c.end(s)):
        if call.op == "do_handshake" and call.fault is not None and call.fault.namespace == OPENSSL:
            return call.fault.reason or call.fault.name
    for e in ctx.linked_exceptions:
        if e.fault is not None and e.fault.namespace == OPENSSL and e.fault.reason:
            return e.fault.reason
    return ""


def _hello(ctx: Context, c: Connection, hello: object, s: str, data: list) -> Iterator[Fact]:  # type: ignore[type-arg]
    from ...model import Packet

    assert isinstance(hello, Packet)
    other = c.other(s)
    reply = next((p for p, side in data if side == other), None)
    client, server = c.end(s), c.end(other)
    base: dict[str, Any] = {"flow": c.id, "sockets": client.sockets + server.sockets, "time_ns": hello.time_ns}
    fault = _handshake_fault(ctx, c, s)
    if reply is None:
        yield TlsHello(client=client, server=server, hello=hello.id, hello_bytes=len(hello.payload), reply="none",
                       fault=fault, packets=(hello.id,), **base)
        return
    d = reply.payload
    if is_tls_record(d):
        records = tls_records(d)
        what = ", ".join(r.name for r in records[:4]) if records else "TLS record"
        yield TlsHello(client=client, server=server, hello=hello.id, hello_bytes=len(hello.payload), reply="tls",
                       reply_packet=reply.id, reply_what=what, reply_first=reply.time_ns < hello.time_ns,
                       reply_gap_ns=abs(reply.time_ns - hello.time_ns), fault=fault, packets=(hello.id, reply.id),
                       **base)
        return
    header = (d[0], (d[1] << 8) | d[2], (d[3] << 8) | d[4]) if len(d) >= 5 else (0, 0, 0)
    yield TlsHello(client=client, server=server, hello=hello.id, hello_bytes=len(hello.payload), reply="not-tls",
                   reply_packet=reply.id, reply_what=preview(d, 60) or "", reply_first=reply.time_ns < hello.time_ns,
                   reply_gap_ns=abs(reply.time_ns - hello.time_ns), header=header, fault=fault,
                   packets=(hello.id, reply.id), **base)


def _alerts(c: Connection, data: list) -> Iterator[Fact]:  # type: ignore[type-arg]
    for p, s in data:
        for r in tls_records(p.payload):
            if r.type != 21:
                continue
            level = {1: "warning", 2: "fatal"}.get(r.alert[0], str(r.alert[0])) if r.alert else ""
            from ...core.protocols import ALERTS

            desc = ALERTS.get(r.alert[1], str(r.alert[1])) if r.alert else ""
            yield TlsAlert(sender=c.end(s), receiver=c.end(c.other(s)), sender_role="client" if s == "a" else "server",
                           packet=p.id, level=level, description=desc, packets=(p.id,), flow=c.id,
                           sockets=c.client.sockets + c.server.sockets, time_ns=p.time_ns)
            break


def _rejected(ctx: Context, c: Connection, s: str) -> Iterator[Fact]:
    client, server = c.end(s), c.end(c.other(s))
    for call in ctx.calls_of(client):
        f = call.fault
        if call.op != "do_handshake" or f is None or f.namespace != OPENSSL or f.reason not in _VERIFY_REASONS:
            continue
        records = tuple(p.id for p in c.side(c.other(s)).data if p.time_ns <= call.end_ns and is_tls_record(p.payload))
        mine = c.side(s)
        after = [p for p in ([mine.fin, mine.rst] + list(mine.data)) if p is not None and p.time_ns >= call.end_ns]
        ended = min(after, key=lambda p: p.time_ns) if after else None
        yield CertificateRejected(client=client, server=server, call=call.id, reason=f.reason, detail=f.detail,
                                  server_records=records[:6], ended_by=ended.id if ended else None,
                                  packets=records[:6] + ((ended.id,) if ended else ()), calls=(call.id,), flow=c.id,
                                  sockets=client.sockets + server.sockets, time_ns=call.start_ns)
        return
