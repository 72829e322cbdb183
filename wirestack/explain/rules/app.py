"""Application protocols in clear text: the commands and replies, an EHLO without STARTTLS, an HTTP body cut
short of its Content-Length."""

from __future__ import annotations

from collections.abc import Iterator

from ...core.pairing import RECVS, SENDS
from ...core.protocols import command_text, ehlo_extensions, http_response, preview, protocol_of, reply_code
from ...model import Call, Packet
from ..context import Context, library_path
from ..facts import AppExchange, Fact, NoStartTls, ShortBody
from ..scene import Connection
from . import rule

MAX_SEGMENTS = 24


def _stream(c: Connection, s: str, limit: int = 1 << 16) -> bytes:
    """The first bytes side `s` sent, in sequence order (as far as the capture has them, up to `limit`)."""
    side = c.side(s)
    out = bytearray()
    for p in sorted(side.data, key=side.offset):
        off = side.offset(p)
        if off > len(out):
            break
        out += p.payload[len(out) - off:]
        if len(out) >= limit:
            break
    return bytes(out)


def _text_turns(data: list[tuple[Packet, str]]) -> bool:
    """Every segment that starts a turn (the other side's segment came before it) opens with a text line."""
    previous = ""
    for p, side in data:
        if side != previous and preview(p.payload) is None:
            return False
        previous = side
    return True


@rule
def conversations(ctx: Context) -> Iterator[Fact]:
    for c in ctx.scene.connections:
        data = sorted([(p, "a") for p in c.a.data] + [(p, "b") for p in c.b.data], key=lambda x: x[0].time_ns)
        if not data or not _text_turns(data):
            continue
        client_first = next((p.payload for p, s in data if s == "a"), b"")
        server_first = next((p.payload for p, s in data if s == "b"), b"")
        proto = protocol_of(client_first, server_first)
        readers = {"a": _readers(ctx, c, "a"), "b": _readers(ctx, c, "b")}
        segments = []
        for p, s in data[:MAX_SEGMENTS]:
            # the call that sent it, where its sender is traced; else the call that read it, where its receiver is
            call: Call | None = ctx.call_of(p, c.end(s).sockets, "out") if c.end(s).traced else None
            how = "sent"
            if call is None:
                call, how = readers[c.other(s)].get(p.id), "read"
            label = ""
            if call is not None:
                expected = SENDS if how == "sent" else RECVS
                lib = library_path(call.frames)
                label = (f"{how} by {call.op}()" if call.op in expected else f"while {call.op}() ran") + (
                    f" under {lib}" if lib else "")
            segments.append((p.id, preview(p.payload, 48) or "(continued)", len(p.payload),
                             call.id if call else None, label))
        turns = _turns(data)
        calls = tuple(dict.fromkeys(x[3] for x in segments if x[3] is not None))
        yield AppExchange(client=c.client, server=c.server, protocol=proto, turns=tuple(turns),
                          segments=tuple(segments), packets=tuple(p.id for p, _ in data[:MAX_SEGMENTS]), calls=calls,
                          flow=c.id, sockets=c.client.sockets + c.server.sockets, time_ns=data[0][0].time_ns)
        yield from _starttls(ctx, c, data)
        yield from _short_body(ctx, c)


def _turns(data: list[tuple[Packet, str]]) -> list[tuple[str, str, int, int]]:
    """'(connection) → 220', 'EHLO → 250', ...: the first reply line after each command of the client."""
    out: list[tuple[str, str, int, int]] = []
    pending: tuple[str, int] | None = ("(on connecting)", 0)  # a server that speaks first answers the connection
    last_reply = ""
    for p, side in data:
        if side == "a":
            if pending is None or not pending[1]:  # a new command; more of one still unanswered keeps the first
                pending = ("(message)" if last_reply == "354" else command_text(p.payload), p.id)
            continue
        reply = reply_code(p.payload)
        if pending is None or reply is None:
            continue
        label, cid = pending
        out.append((label, reply, cid, p.id))
        last_reply, pending = reply, None
    return out


def _readers(ctx: Context, c: Connection, side: str) -> dict[int, Call]:
    """Which call of the `side` end read each segment from the other side, by counting bytes: a socket's reads
    take its incoming stream in order, so the segment at byte offset o was read by the read whose bytes cover
    o. Segments no recorded read covers (never read, or read from C as OpenSSL does) are left out."""
    end = c.end(side)
    if not end.traced or any(s in ctx.ssl_sockets for s in end.sockets):
        return {}
    other = c.side(c.other(side))
    reads = [x for x in ctx.calls_of(end) if x.op in RECVS and not x.failed and isinstance(x.result, int)
             and x.result > 0]
    spans: list[tuple[int, int, Call]] = []
    total = 0
    for x in reads:
        spans.append((total, total + int(x.result), x))
        total += int(x.result)
    out = {}
    i = 0
    for p in sorted(other.data, key=other.offset):
        off = other.offset(p)
        while i < len(spans) and spans[i][1] <= off:
            i += 1
        if i < len(spans) and spans[i][0] <= off < spans[i][1]:
            out[p.id] = spans[i][2]
    return out


def _starttls(ctx: Context, c: Connection, data: list[tuple[Packet, str]]) -> Iterator[Fact]:
    """An EHLO reply without STARTTLS, where the client then wanted it (its exception says so, or it asked)."""
    asked = any(p.payload.upper().startswith(b"STARTTLS") for p, s in data if s == "a")
    raised = next((e.type for e in ctx.linked_exceptions if "STARTTLS" in e.message.upper()), "")
    if not asked and not raised:
        return
    for p, s in data:
        ext = ehlo_extensions(p.payload) if s == "b" else None
        if ext is not None and "STARTTLS" not in ext:
            yield NoStartTls(server=c.server, reply=p.id, extensions=ext, raised=raised, packets=(p.id,), flow=c.id,
                             sockets=c.client.sockets + c.server.sockets, time_ns=p.time_ns)
            return


def _short_body(ctx: Context, c: Connection) -> Iterator[Fact]:
    stream = _stream(c, "b")
    pos = stream.rfind(b"HTTP/1.")
    if pos < 0:
        return
    head = http_response(stream[pos:])
    if head is None or head.content_length is None or head.chunked:
        return
    delivered = c.b.bytes - pos - head.header_bytes
    ending = c.b.rst or c.b.fin
    if delivered >= head.content_length or ending is None:
        return
    start = next((p for p in c.b.data if c.b.offset(p) <= pos < c.b.offset(p) + len(p.payload)), None)
    raised = next((e.type for e in ctx.linked_exceptions if "IncompleteRead" in e.type or "ProtocolError" in e.type
                   or "ContentLength" in e.type or "PayloadError" in e.type or "RemoteProtocol" in e.type), "")
    yield ShortBody(server=c.server, client=c.client, response=start.id if start else ending.id, status=head.status,
                    promised=head.content_length, delivered=max(0, delivered), ended_by="RST" if c.b.rst else "FIN",
                    end_packet=ending.id, raised=raised,
                    packets=((start.id,) if start else ()) + (ending.id,), flow=c.id,
                    sockets=c.client.sockets + c.server.sockets, time_ns=ending.time_ns)
