"""The escaped exception: the call that raised that very exception object, or the call whose errno it was
built from, or the Python code that raised it; an ExceptionGroup's exceptions each with their own call."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ...core.chains import chain, linked
from ...core.layers import is_transport
from ...core.unseen import unseen_notes
from ...model import ERRNO, Addr, Call, ExceptionInfo
from ..context import Context, frame_label, module
from ..facts import Built, Fact, Group, Layers, NotFromSocket, Origin
from . import rule

_ADDRESS = re.compile(r"\(\s*'([^']{1,100})'\s*,\s*(\d{1,5})(?:\s*,[^)]*)?\)|\[([0-9a-fA-F:.]{2,45})\]:(\d{1,5})|"
                      r"\b(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})\b")


def named_address(message: str) -> Addr | None:
    """The address an exception's message names: asyncio's "('127.0.0.1', 8080)", "[::1]:8080", "1.2.3.4:80"."""
    m = _ADDRESS.search(message)
    if m is None:
        return None
    host = m.group(1) or m.group(3) or m.group(5)
    port = m.group(2) or m.group(4) or m.group(6)
    return (host, int(port)) if host and port and int(port) <= 65535 else None


@rule
def escaped(ctx: Context) -> Iterator[Fact]:
    exc = ctx.trace.exception
    if exc is None:
        return
    yield from _explain(ctx, exc)


def _explain(ctx: Context, exc: ExceptionInfo) -> Iterator[Fact]:
    if exc.group:
        members = []
        for m in exc.group:
            call = _raising_call(ctx, m)
            members.append((m.type, call.id if call else None, m.fault.name if m.fault and m.fault.name else
                            (m.message[:80] if m.message else "")))
        yield Group(exception=exc.type, members=tuple(members),
                    calls=tuple(c for _, c, _ in members if c is not None), time_ns=_time(ctx, exc))
        for m in exc.group:
            yield from _explain(ctx, m)
        return
    family = linked(exc)
    raised = next((e for e in reversed(chain(exc)) if e.call is not None and e.call in ctx.calls), None)
    if raised is None:
        raised = next((e for e in family if e.call is not None and e.call in ctx.calls and not e.group), None)
    if raised is not None and raised.call is not None:
        yield _origin(ctx, exc, raised, ctx.calls[raised.call])
        return
    built = next((e for e in family if e.fault is not None and e.fault.namespace == ERRNO and not e.group), None)
    if built is not None:
        fact = _built(ctx, exc, built)
        if fact is not None:
            yield fact
            return
        if unseen_notes(ctx.trace.notes):
            return  # an errno from calls the probe could not see (uvloop's): not "raised by Python code"
    yield _python(ctx, exc)


@rule
def layers(ctx: Context) -> Iterator[Fact]:
    """The failing call's packets under the frames of more than one library module (urllib over http.client)."""
    from ...core.layers import is_library

    exc = ctx.trace.exception
    call = _raising_call(ctx, exc) if exc is not None else None
    if exc is None or call is None:
        return
    pids = set(ctx.alignment.packets_of_call(call.id))
    if not pids:
        return
    seen: set[int] = set()
    path: list[list[str | int]] = []
    apps: set[str] = set()
    for e in reversed(chain(exc)):  # the outermost exception's traceback starts at the program
        for f in e.frames:
            if f.instance in seen or not pids & set(ctx.alignment.packets_below(f.instance)):
                continue
            seen.add(f.instance)
            name = module(f.file)
            if is_library(f.file) and not is_transport(f.file):
                apps.add(name)
            if path and path[-1][0] == name:
                path[-1][1] = int(path[-1][1]) + 1
            else:
                path.append([name, 1])
    if len(apps) < 2:
        return
    steps = tuple((str(m), int(n)) for m, n in path)
    yield Layers(call=call.id, op=call.op, path=steps, frames=sum(n for _, n in steps), calls=(call.id,),
                 packets=tuple(sorted(pids)), time_ns=call.end_ns + 1)


def _raising_call(ctx: Context, exc: ExceptionInfo) -> Call | None:
    for e in linked(exc):
        if e.call is not None and e.call in ctx.calls:
            return ctx.calls[e.call]
    return None


def _time(ctx: Context, exc: ExceptionInfo) -> int:
    return ctx.trace.calls[-1].end_ns if ctx.trace.calls else 0


def _origin(ctx: Context, top: ExceptionInfo, raised: ExceptionInfo, call: Call) -> Origin:
    where = next((f for f in reversed(raised.frames) if is_transport(f.file)),
                 raised.frames[-1] if raised.frames else None)
    through: list[str] = []
    for f in top.frames[1:]:
        if f is where or is_transport(f.file):
            break
        m = module(f.file)
        if not f.file.startswith("<") and m not in through:
            through.append(m)
    wrapper = next((e for e in linked(top) if e.cause is raised or e.context is raised), None)
    fault = call.fault
    return Origin(exception=top.type, call=call.id, op=call.op, error=fault.name or fault.type if fault else "",
                  namespace=fault.namespace if fault else "", raised_as=raised.type,
                  raised_in=module(where.file) if where is not None else "", through=tuple(through),
                  wrapper=wrapper.type if wrapper is not None and raised is not top else "",
                  wrapped_in=module(wrapper.frames[-1].file) if wrapper is not None and wrapper.frames else "",
                  how=("raised from it" if wrapper is not None and wrapper.cause is raised else
                       "raised while handling it" if wrapper is not None else ""),
                  calls=(call.id,), packets=ctx.alignment.packets_of_call(call.id)[:8], time_ns=call.end_ns)


def _built(ctx: Context, top: ExceptionInfo, made: ExceptionInfo) -> Built | None:
    """No socket call raised it: find the call that read its errno. asyncio builds OSError(err, 'Connect call
    failed (host, port)') from getsockopt(SO_ERROR): the getsockopt on the socket connecting to the address the
    message names; without a named address, one below the exception's own frames."""
    assert made.fault is not None
    errno = made.fault.code
    address = named_address(made.message)
    reads = [c for c in ctx.trace.calls if c.op == "getsockopt" and c.result == errno]
    if address is not None:
        on = [c for c in reads if c.remote is not None and c.remote[1] == address[1]
              and _same_host(c.remote[0], address[0])]
        if not on:
            on = [c for c in reads if any(x.socket == c.socket and x.remote is not None and x.remote[1] == address[1]
                                          and _same_host(x.remote[0], address[0])
                                          for x in ctx.by_socket.get(c.socket, ()))]
        reads = on
    else:
        mine = {f.instance for f in made.frames}
        reads = [c for c in reads if any(f.instance in mine for f in c.frames)]
    if not reads or errno is None:
        return None
    read = reads[-1] if address is None else reads[0]
    connect = next((c for c in ctx.by_socket.get(read.socket, ()) if c.op in ("connect", "connect_ex")
                    and c.end_ns <= read.start_ns), None)
    inner = made.frames[-1] if made.frames else None
    return Built(exception=made.type, errno=errno, name=made.fault.name, getsockopt=read.id, socket=read.socket,
                 address=address, connect=connect.id if connect else None,
                 made_in=f"{module(inner.file)} ({inner.function})" if inner else "",
                 delay_ns=read.start_ns - connect.end_ns if connect else 0,
                 calls=tuple(c.id for c in (connect, read) if c is not None),
                 packets=(ctx.alignment.packets_of_call(connect.id) if connect else ())
                 + ctx.alignment.packets_of_call(read.id), sockets=(read.socket,), time_ns=read.start_ns)


def _same_host(a: str, b: str) -> bool:
    from ...core.pairing import norm_host

    return norm_host(a) == norm_host(b)


def _python(ctx: Context, exc: ExceptionInfo) -> NotFromSocket:
    inner = exc.frames[-1] if exc.frames else None
    below = [c for c in ctx.trace.calls if inner is not None and any(f.instance == inner.instance for f in c.frames)]
    last = below[-1] if below else None
    outcome = ""
    if last is not None:
        outcome = (f"failed with {last.fault.line}" if last.fault is not None else
                   f"returned {last.result!r}"[:80])
    return NotFromSocket(exception=exc.type, where=frame_label(inner) if inner else "", last_call=last.id if last
                         else None, last_op=last.op if last else "", last_outcome=outcome,
                         calls=(last.id,) if last else (), time_ns=last.end_ns if last else 0)
