"""TCP connections: the handshake, how each side ended it, and what went wrong in between."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ...core.pairing import CONNECTS, RECVS, SENDS
from ...model import TIMEOUT, Call, Packet
from ..context import Context, frame_label
from ..facts import (
    Bytes,
    Closed,
    Established,
    Fact,
    ReadTimeout,
    Refused,
    Reset,
    Retransmits,
    Stale,
    SynRetransmits,
    Unanswered,
    Unsent,
    ZeroWindow,
)
from ..scene import Connection, first_ack
from . import rule
from .calls import WAITS


def pattern(waits: tuple[int, ...]) -> str:
    """How SYN retransmission waits grew: "equal", "doubling", "mixed" (or "one" wait)."""
    if len(waits) < 2:
        return "one"
    ratios = [b / a for a, b in zip(waits, waits[1:], strict=False) if a > 0]
    if ratios and all(0.8 <= r <= 1.25 for r in ratios):
        return "equal"
    if ratios and all(1.6 <= r <= 2.5 for r in ratios):
        return "doubling"
    return "mixed"


def _err(call: Call | None) -> str:
    if call is None or call.fault is None:
        return ""
    return call.fault.name or call.fault.type


@rule
def connections(ctx: Context) -> Iterator[Fact]:
    for c in ctx.scene.connections:
        yield from _handshake(ctx, c)
        yield from _ends(ctx, c)
        yield from _trouble(ctx, c)


def _connect_call(ctx: Context, c: Connection) -> Call | None:
    """The client's connect() that sent the first SYN (a traced client only)."""
    if not c.syns or not c.client.traced:
        return None
    call = ctx.call_of(c.syns[0], c.client.sockets, "out")
    if call is not None and call.op in CONNECTS:
        return call
    calls = [x for x in ctx.calls_of(c.client) if x.op in CONNECTS and x.start_ns <= c.syns[0].time_ns + 10_000_000]
    return calls[-1] if calls else None


def _handshake(ctx: Context, c: Connection) -> Iterator[Fact]:
    syns = c.syns
    if not syns:
        return
    ids = tuple(p.id for p in syns)
    base: dict[str, Any] = {"flow": c.id, "sockets": c.client.sockets + c.server.sockets, "time_ns": syns[0].time_ns}
    if len(syns) > 1:
        waits = tuple(b.time_ns - a.time_ns for a, b in zip(syns, syns[1:], strict=False))
        yield SynRetransmits(client=c.client, server=c.server, waits_ns=waits, pattern=pattern(waits), packets=ids,
                             **base)
    connect = _connect_call(ctx, c)
    calls = (connect.id,) if connect is not None else ()
    if c.outcome == "refused" and c.refusal is not None:
        rst = c.refusal
        syn = max((p for p in syns if p.time_ns <= rst.time_ns), key=lambda p: p.time_ns, default=syns[0])
        resets = ctx.kernel_of_packet(rst.id, "tcp_send_reset")
        reason = resets[0].fields.get("reason", "") if resets else ""
        met = ctx.call_of(rst, c.client.sockets, "in") if c.client.traced else None
        failed = met if met is not None and (met.failed or met.reported) else connect
        pending = connect if connect is not None and connect.errno in WAITS else None  # non-blocking
        if failed is not None and failed.errno in WAITS:  # EINPROGRESS is not the failure: who learnt of it?
            failed = next((x for x in ctx.calls_of(c.client) if x.start_ns >= failed.start_ns and x is not failed
                           and (x.reported or (x.failed and x.errno not in WAITS))), None)
        called = tuple(x.id for x in (pending, failed) if x is not None)
        yield Refused(client=c.client, server=c.server, syn=syn.id, rst=rst.id, delay_ns=rst.time_ns - syn.time_ns,
                      copies=len(syns), reason=reason, call=failed.id if failed is not None else None,
                      error=_err(failed) or (_reported(failed)), pending=pending.id if pending else None,
                      packets=(syn.id, rst.id), calls=called, kernel=tuple(e.id for e in resets), **base)
    elif c.outcome == "established" and c.synacks:
        synack = c.synacks[0]
        syn = max((p for p in syns if p.time_ns <= synack.time_ns), key=lambda p: p.time_ns, default=syns[0])
        accept = next((x for x in ctx.calls_of(c.server) if x.op == "accept" and not x.failed), None)
        listening = _listener_traced(ctx, c)
        yield Established(client=c.client, server=c.server, syn=syn.id, synack=synack.id,
                          delay_ns=synack.time_ns - syn.time_ns, accepted_by=accept.id if accept else None,
                          listener_traced=listening, packets=(syn.id, synack.id),
                          calls=calls + ((accept.id,) if accept else ()), **base)
    elif c.outcome == "unanswered":
        how, error, end, ender = _wait_ended(ctx, c, connect)
        waits = tuple(b.time_ns - a.time_ns for a, b in zip(syns, syns[1:], strict=False))
        yield Unanswered(client=c.client, server=c.server, copies=len(syns), waits_ns=waits, ended_by=how,
                         error=error, waited_ns=max(0, end - syns[0].time_ns),
                         after_last_ns=max(0, end - syns[-1].time_ns), packets=ids,
                         calls=calls + ((ender.id,) if ender is not None and ender is not connect else ()), **base)


def _wait_ended(ctx: Context, c: Connection, connect: Call | None) -> tuple[str, str, int, Call | None]:
    """What ended the wait for an answer to the SYN: ("timeout", the program's own, with the exception it
    raised), ("errno", the kernel gave up: ETIMEDOUT...), ("closed", the program closed the socket), or
    ("capture", the run ended first); with the error, the time, and the call that ended it."""
    last = c.syns[-1].time_ns
    if connect is not None and connect.fault is not None and not _waiting(connect):
        f = connect.fault
        return ("timeout" if f.namespace == TIMEOUT else "errno" if f.errno is not None else "capture"), \
            _err(connect), connect.end_ns, connect
    # a non-blocking connect (asyncio, a socket with a timeout of 0): the errno, if any, comes through SO_ERROR
    for x in ctx.calls_of(c.client):
        if x.op == "getsockopt" and x.reported and x.start_ns >= last:
            import errno

            return "errno", errno.errorcode.get(x.reported, str(x.reported)), x.start_ns, x
    close = next((x for x in ctx.calls_of(c.client) if x.op == "close" and x.start_ns >= last), None)
    timeout = next((e for e in ctx.linked_exceptions if e.fault is not None and e.fault.namespace == TIMEOUT), None)
    if close is not None:
        return ("timeout" if timeout is not None else "closed"), timeout.type if timeout else "", close.start_ns, close
    return "capture", "", c.last_packet.time_ns, None


def _waiting(call: Call) -> bool:
    return call.errno in (11, 114, 115)


def _reported(call: Call | None) -> str:
    if call is None or not call.reported:
        return ""
    import errno

    return errno.errorcode.get(call.reported, "")


def _listener_traced(ctx: Context, c: Connection) -> bool:
    port = c.server.addr[1]
    return any(x.op == "listen" and x.local is not None and x.local[1] == port for x in ctx.trace.calls)


def _sent_before(c: Connection, s: str, t: int) -> int:
    """Bytes side `s` had sent by time t (highest offset reached)."""
    side = c.side(s)
    hi = 0
    for p in side.data:
        if p.time_ns > t:
            break
        hi = max(hi, side.offset(p) + len(p.payload))
    return hi


def _ends(ctx: Context, c: Connection) -> Iterator[Fact]:
    fins = [(c.side(s).fin, s) for s in ("a", "b") if c.side(s).fin is not None]
    start = c.synacks[0].time_ns if c.synacks else c.first_packet.time_ns
    sockets = c.client.sockets + c.server.sockets
    if fins:
        fins.sort(key=lambda x: x[0].time_ns)  # type: ignore[union-attr]
        fin, s = fins[0]
        assert fin is not None
        other = c.other(s)
        other_fin = c.side(other).fin
        first, second = c.end(s), c.end(other)
        eof = None
        for x in ctx.calls_of(second):
            if x.op in RECVS and x.result == 0 and x.end_ns >= fin.time_ns:
                eof = x
                break
        raised, where = _raised_above(ctx, eof)
        yield Closed(first=first, second=second, first_role="client" if s == "a" else "server", fin=fin.id,
                     other_fin=other_fin.id if other_fin is not None else None, after_ns=fin.time_ns - start,
                     gap_ns=(other_fin.time_ns - fin.time_ns) if other_fin is not None else 0,
                     sent_first=_sent_before(c, s, fin.time_ns), sent_second=_sent_before(c, other, fin.time_ns),
                     eof_call=eof.id if eof else None, eof_op=eof.op if eof else "", raised=raised,
                     raised_where=where, packets=(fin.id,) + ((other_fin.id,) if other_fin else ()),
                     calls=(eof.id,) if eof else (), flow=c.id, sockets=sockets, time_ns=fin.time_ns)
    if c.outcome not in ("established", "unknown"):
        return
    for s in ("a", "b"):
        rst = c.side(s).rst
        if rst is None:
            continue
        yield _reset(ctx, c, s, rst)


def _reset(ctx: Context, c: Connection, s: str, rst: Packet) -> Reset:
    other = c.other(s)
    sender, receiver = c.end(s), c.end(other)
    me, peer = c.side(s), c.side(other)
    resets = ctx.kernel_of_packet(rst.id, "tcp_send_reset")
    reason = resets[0].fields.get("reason", "") if resets else ""
    state = resets[0].fields.get("state", "") if resets else ""
    own_fin = me.fin if me.fin is not None and me.fin.time_ns <= rst.time_ns else None
    answered = None
    if own_fin is not None:  # the RST answers data that arrived after the sender had closed
        answered = next((p for p in reversed(peer.data + peer.retransmitted) if own_fin.time_ns < p.time_ns
                         <= rst.time_ns), None)
    received = _sent_before(c, other, rst.time_ns)
    unread = None
    read = ctx.read_bytes(sender) if sender.traced else None
    if read is not None and received > read:
        unread = received - read
    met = ctx.call_of(rst, receiver.sockets, "in") if receiver.traced else None
    if met is not None and not met.failed:
        met = None
    last = next((p for p in reversed(peer.data) if p.time_ns <= rst.time_ns), None)
    ack = first_ack(c, other, last) if last is not None else None
    if ack is not None and ack.time_ns > rst.time_ns:
        ack = None
    linger = next((x for x in ctx.calls_of(sender) if x.op == "setsockopt" and x.args.get("option") == "SO_LINGER"
                   and isinstance(x.args.get("value"), str) and _linger_zero(x.args["value"])), None)
    packets = tuple(p.id for p in (last, ack, own_fin, answered) if p is not None) + (rst.id,)
    return Reset(sender=sender, receiver=receiver, sender_role="client" if s == "a" else "server", rst=rst.id,
                 reason=reason, state=state, after_fin=own_fin.id if own_fin else None,
                 linger0=linger.id if linger is not None else None,
                 answered=answered.id if answered else None, unread=unread, received=received,
                 met_by=met.id if met else None, error=_err(met),
                 waited_ns=max(0, met.start_ns - rst.time_ns) if met else 0,
                 last_data=last.id if last else None, acked=ack.id if ack else None,
                 packets=tuple(dict.fromkeys(packets)), calls=(met.id,) if met else (),
                 kernel=tuple(e.id for e in resets), flow=c.id, sockets=c.client.sockets + c.server.sockets,
                 time_ns=rst.time_ns)


def _linger_zero(value: str) -> bool:
    """struct linger {int l_onoff; int l_linger} (as hex) turned on with 0 seconds."""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return False
    return len(raw) == 8 and int.from_bytes(raw[:4], "little") != 0 and int.from_bytes(raw[4:], "little") == 0


def _raised_above(ctx: Context, call: Call | None) -> tuple[str, str]:
    """The exception raised (not by a socket call) in a frame that `call` was made under: its type and where."""
    if call is None:
        return "", ""
    instances = {f.instance for f in call.frames}
    for e in ctx.linked_exceptions:
        if e.call is not None or not e.frames:
            continue
        inner = e.frames[-1]
        if inner.instance in instances:
            return e.type, frame_label(inner)
    return "", ""


def _trouble(ctx: Context, c: Connection) -> Iterator[Fact]:
    sockets = c.client.sockets + c.server.sockets
    for s in ("a", "b"):
        side, end, other_end = c.side(s), c.end(s), c.end(c.other(s))
        if side.zero_window:
            zw = side.zero_window
            yield ZeroWindow(side=end, other=other_end, count=len(zw), lasted_ns=zw[-1].time_ns - zw[0].time_ns,
                             packets=(zw[0].id, zw[-1].id) if len(zw) > 1 else (zw[0].id,), flow=c.id,
                             sockets=sockets, time_ns=zw[0].time_ns)
        if side.retransmitted:
            yield Retransmits(side=end, other=other_end, count=len(side.retransmitted),
                              packets=tuple(p.id for p in side.retransmitted[:8]), flow=c.id, sockets=sockets,
                              time_ns=side.retransmitted[0].time_ns)
        if side.after_peer_fin is not None:
            peer_fin = c.side(c.other(s)).fin
            if peer_fin is not None:
                data = side.after_peer_fin
                answer = c.side(c.other(s)).rst
                answer = answer if answer is not None and answer.time_ns >= data.time_ns else None
                yield Stale(sender=end, closer=other_end, fin=peer_fin.id, data=data.id,
                            gap_ns=data.time_ns - peer_fin.time_ns, answer=answer.id if answer else None,
                            packets=tuple(p.id for p in (peer_fin, data, answer) if p is not None), flow=c.id,
                            sockets=sockets, time_ns=data.time_ns)
        if end.traced:
            yield from _unsent(ctx, c, s)
            yield from _read_timeout(ctx, c, s)
    if c.a.bytes or c.b.bytes:
        yield Bytes(client=c.client, server=c.server, from_client=c.a.bytes, from_server=c.b.bytes,
                    data_segments=len(c.a.data) + len(c.b.data), flow=c.id, sockets=sockets,
                    time_ns=c.first_packet.time_ns)


def _unsent(ctx: Context, c: Connection, s: str) -> Iterator[Fact]:
    end, side = c.end(s), c.side(s)
    written = ctx.written_bytes(end)
    if not written or written <= side.bytes:
        return
    ending = c.side(c.other(s)).rst or side.rst
    how = "RST" if ending is not None else "FIN" if side.fin is not None else "capture"
    sends = [x.id for x in ctx.calls_of(end) if x.op in SENDS][:8]
    yield Unsent(sender=end, receiver=c.end(c.other(s)), written=written, left=side.bytes, ended_by=how,
                 ended=ending.id if ending else None, packets=(ending.id,) if ending else (), calls=tuple(sends),
                 flow=c.id, sockets=end.sockets, time_ns=ending.time_ns if ending else c.last_packet.time_ns)


def _read_timeout(ctx: Context, c: Connection, s: str) -> Iterator[Fact]:
    end, other = c.end(s), c.other(s)
    for call in ctx.calls_of(end):
        if call.op not in RECVS or call.fault is None or call.fault.namespace != TIMEOUT:
            continue
        mine = [p for p in c.side(s).data if p.time_ns <= call.end_ns]
        request = mine[-1] if mine else None
        ack = first_ack(c, s, request) if request is not None else None
        since = ack.time_ns if ack is not None else (request.time_ns if request is not None else call.start_ns)
        came = [p for p in c.side(other).data if since < p.time_ns <= call.end_ns]
        if came:
            continue  # something did come back meanwhile: not a silent peer
        timeout = call.args.get("timeout")
        yield ReadTimeout(waiter=end, other=c.end(other), request=request.id if request else None,
                          ack=ack.id if ack else None, silent_ns=call.end_ns - since, call=call.id,
                          timeout_s=timeout if isinstance(timeout, float) else None,
                          packets=tuple(p.id for p in (request, ack) if p is not None), calls=(call.id,), flow=c.id,
                          sockets=end.sockets, time_ns=since)
        return
    # An event loop waits without a read call (asyncio's wait_for around a read): a timeout exception escaped,
    # the waiter's last data was acknowledged, nothing came back, and the waiter then closed.
    timeout_exc = next((e for e in ctx.linked_exceptions if e.fault is not None and e.fault.namespace == TIMEOUT
                        and e.call is None), None)
    waiter = c.side(s)
    if timeout_exc is None or not waiter.data or c.side(other).data or waiter.fin is None:
        return
    request = waiter.data[-1]
    ack = first_ack(c, s, request)
    if ack is None or ack.time_ns > waiter.fin.time_ns:
        return
    yield ReadTimeout(waiter=end, other=c.end(other), request=request.id, ack=ack.id,
                      silent_ns=waiter.fin.time_ns - ack.time_ns, call=None, raised=timeout_exc.type,
                      packets=(request.id, ack.id, waiter.fin.id), flow=c.id, sockets=end.sockets, time_ns=ack.time_ns)
