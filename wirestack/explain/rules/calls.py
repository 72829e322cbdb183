"""Calls: each failed call with its error in its own namespace (and what the kernel's syscall returned), the
addresses one create_connection() tried, and a library's retries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from ...core.pairing import CONNECTS
from ...model import ERRNO, OPENSSL, TIMEOUT, Call
from ..context import Context, library_module
from ..facts import Attempts, CallFailed, Fact, Retries
from . import rule

WAITS = frozenset({11, 114, 115})  # EAGAIN, EALREADY, EINPROGRESS: a non-blocking socket waiting, not failing
SSL_WAITS = frozenset({"SSL_ERROR_WANT_READ", "SSL_ERROR_WANT_WRITE"})


def is_wait(call: Call) -> bool:
    f = call.fault
    if f is None:
        return False
    return (f.namespace == ERRNO and f.code in WAITS) or (f.namespace == OPENSSL and f.name in SSL_WAITS)


def syscall_ret(ctx: Context, call: Call) -> int | None:
    for k in ctx.kernel.for_call(call.id):
        ev = ctx.events[k]
        if ev.event.startswith("sys_exit_"):
            try:
                return int(ev.fields.get("ret", ""))
            except ValueError:
                return None
    return None


@rule
def failed_calls(ctx: Context) -> Iterator[Fact]:
    for c in ctx.trace.calls:
        if c.op == "spawn":
            continue
        if c.fault is not None and not is_wait(c):
            f = c.fault
            timeout = c.args.get("timeout") if f.namespace == TIMEOUT else None
            yield CallFailed(call=c.id, op=c.op, namespace=f.namespace, code=f.code, name=f.name, error=f.line,
                             reason=f.reason, syscall_ret=syscall_ret(ctx, c),
                             timeout_s=timeout if isinstance(timeout, float) else None,
                             calls=(c.id,), packets=ctx.alignment.packets_of_call(c.id)[:8],
                             kernel=ctx.kernel.for_call(c.id), sockets=(c.socket,) if c.socket else (),
                             time_ns=c.start_ns)
        elif c.reported and c.reported not in WAITS:
            import errno

            yield CallFailed(call=c.id, op=c.op, namespace=ERRNO, code=c.reported,
                             name=errno.errorcode.get(c.reported, ""), error="", reported=c.reported,
                             syscall_ret=syscall_ret(ctx, c), calls=(c.id,),
                             packets=ctx.alignment.packets_of_call(c.id)[:8], kernel=ctx.kernel.for_call(c.id),
                             sockets=(c.socket,) if c.socket else (), time_ns=c.start_ns)


def _outcome(c: Call) -> str:
    if c.fault is not None:
        return c.fault.name or c.fault.type
    if c.reported:
        import errno

        return errno.errorcode.get(c.reported, str(c.reported))
    return "connected"


@rule
def attempts(ctx: Context) -> Iterator[Fact]:
    """create_connection() tries each address getaddrinfo returned, in turn: which, and which error escaped."""
    groups: dict[int, list[Call]] = defaultdict(list)
    names: dict[int, str] = {}
    for c in ctx.trace.calls:
        if c.op not in CONNECTS or c.remote is None:
            continue
        frame = next((f for f in reversed(c.frames) if f.function in ("create_connection", "_connect_sock",
                                                                       "open_connection")), None)
        if frame is not None:
            groups[frame.instance].append(c)
            names[frame.instance] = frame.function
    escaped = {e.call for e in ctx.linked_exceptions if e.call is not None}
    for inst, group in groups.items():
        if len(group) < 2 or len({c.remote for c in group}) < 2:
            continue
        raised = next((c.id for c in reversed(group) if c.id in escaped), None)
        tries = tuple((c.id, c.remote, _outcome(c)) for c in group if c.remote is not None)
        yield Attempts(function=names[inst], tries=tries, raised=raised,
                       all_failed=all(c.failed or c.reported for c in group), calls=tuple(c.id for c in group),
                       time_ns=group[0].start_ns)


@rule
def retries(ctx: Context) -> Iterator[Fact]:
    """Several failed attempts to one server from one thread, each after the one before had failed: a
    library's retries (urllib3's backoff, redis-py reconnecting)."""
    failed_flows: dict[int, tuple[int, str]] = {}  # connect call -> when and how its connection failed
    for conn in ctx.scene.connections:
        if not conn.client.traced or not conn.syns:
            continue
        call = ctx.call_of(conn.syns[0], conn.client.sockets, "out")
        if call is None or call.op not in CONNECTS:
            continue
        if conn.outcome == "refused" and conn.refusal is not None:
            failed_flows[call.id] = (conn.refusal.time_ns, "refused (RST)")
        elif conn.b.rst is not None and conn.a.rst is None:
            failed_flows[call.id] = (conn.b.rst.time_ns, "reset by the server")
        elif conn.a.after_peer_fin is not None:  # it wrote into a connection the server had closed
            failed_flows[call.id] = (conn.a.after_peer_fin.time_ns, "written to after the server closed")
        elif conn.b.fin is not None and (conn.a.fin is None or conn.b.fin.time_ns < conn.a.fin.time_ns) \
                and not conn.b.data:
            failed_flows[call.id] = (conn.b.fin.time_ns, "closed by the server")
    by: dict[tuple[int, str, tuple[str, int]], list[Call]] = defaultdict(list)
    for c in ctx.trace.calls:
        if c.op in CONNECTS and c.remote is not None:
            by[(c.pid, c.thread, c.remote)].append(c)
    for (_, _, remote), group in by.items():
        run: list[tuple[Call, int, str]] = []
        for c in group:
            failed: tuple[int, str] | None = (c.end_ns, _outcome(c)) if (
                c.failed and c.fault is not None and c.fault.namespace in (ERRNO, TIMEOUT) and c.errno not in WAITS
            ) else failed_flows.get(c.id)
            if run and c.start_ns < run[-1][1]:
                run = []  # the next attempt began before the last one had failed: not a retry
            if failed is None:
                if len(run) >= 1:
                    run.append((c, c.end_ns, "connected"))
                    yield _retries(run, remote)
                run = []
                continue
            run.append((c, *failed))
        if len(run) >= 2:
            yield _retries(run, remote)


def _retries(run: list[tuple[Call, int, str]], remote: tuple[str, int]) -> Retries:
    """`run`: (call, when its attempt failed, how: an errno the call returned, or what the wire showed)."""
    first = run[0][0].start_ns
    attempts = tuple((c.id, c.start_ns - first, how) for c, _, how in run)
    gaps = tuple(b.start_ns - failed for (_, failed, _), (b, _, _) in zip(run, run[1:], strict=False))
    modules = {library_module(c.frames) for c, _, _ in run}
    module = modules.pop() if len(modules) == 1 else ""
    return Retries(server=remote, attempts=attempts, gaps_ns=gaps, module=module,
                   calls=tuple(c.id for c, _, _ in run), time_ns=first)
