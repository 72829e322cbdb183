"""Explanations: short statements derived from a trace and its alignment. Pure.

Every statement is computed from recorded data: the addresses, flags and times of captured packets, the
arguments, results and errnos of recorded calls, and the exception chain. Where the data does not support a
statement, it is not made (no reply captured means "no reply was captured", not "the host is down").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from ..core import errnos
from ..core.layers import is_transport
from ..core.pairing import CONNECTS, Alignment, find_origin, linked
from ..model import Call, ExceptionInfo, KernelEvent, Packet, Trace


@dataclass(frozen=True)
class Finding:
    text: str
    packets: tuple[int, ...] = ()


def duration(ns: int) -> str:
    """A human duration: 14 µs, 3.2 ms, 1.02 s."""
    if ns < 10_000_000:
        return f"{round(ns / 1000)} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.2f} s"


def endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def flag_name(flags: str) -> str:
    """'RA' -> 'RST/ACK', 'S' -> 'SYN', 'SA' -> 'SYN/ACK', 'FA' -> 'FIN/ACK', 'PA' -> 'PSH/ACK'."""
    names = {"S": "SYN", "F": "FIN", "R": "RST", "P": "PSH", "U": "URG", "E": "ECE", "C": "CWR", "N": "NS"}
    main = [names[f] for f in flags if f in names]
    return "/".join(main + (["ACK"] if "A" in flags else [])) or "none"


def explain(trace: Trace, alignment: Alignment) -> list[Finding]:
    packets = {p.id: p for p in trace.packets}
    findings: list[Finding] = []
    findings += port_wraps(trace.calls, trace.packets)
    findings += resolver_failures(trace.calls, trace.packets)
    for call in trace.calls:
        if call.op in CONNECTS and call.kind in ("SOCK_STREAM", ""):  # a UDP connect() sends nothing
            findings += handshake(call, [packets[i] for i in alignment.socket_packets.get(call.socket, ())])
    findings += kernel_findings(trace, alignment)
    findings += propagation(trace.exception, trace.calls, alignment)
    from .lessons import lessons  # lessons build on this module's helpers

    findings += lessons(trace, alignment)
    if not trace.calls:
        findings.append(Finding("the program made no socket call: there is nothing on the wire to show"))
    elif not trace.packets:
        findings.append(Finding(f"no packet of the program's flows was captured on {trace.capture.interface}"))
    if trace.capture.dropped:
        findings.append(Finding(f"the kernel dropped {trace.capture.dropped} packets during the capture: "
                                "pairings may be incomplete"))
    return findings


def _port(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def port_wraps(calls: Sequence[Call], packets: Sequence[Packet]) -> list[Finding]:
    """getaddrinfo handed back a different port than it was given (glibc keeps only the low 16 bits)."""
    out = []
    for c in calls:
        asked = _port(c.args.get("port"))
        if c.op != "getaddrinfo" or asked is None or not isinstance(c.result, list):
            continue
        given = {r[2][1] for r in c.result if isinstance(r, list) and len(r) == 3 and isinstance(r[2], list)}
        if not given or given == {asked}:
            continue
        port = min(given)
        text = (f"port {asked} does not fit in 16 bits: getaddrinfo turned it into {port} ({asked} mod 65536)"
                if asked > 65535 and port == asked % 65536 else f"getaddrinfo turned port {asked} into {port}")
        first = next((p for p in packets if p.dport == port and p.proto in ("TCP", "UDP")
                      and ("S" in p.flags or p.proto == "UDP")), None)
        if first is not None:
            what = "the SYN" if first.proto == "TCP" else "the datagram"
            text += f", and {what} went to {endpoint(first.dst, first.dport)}"
            if not any(p.dport == asked or p.sport == asked for p in packets):
                text += f"; no packet carried port {asked}"
        out.append(Finding(text, (first.id,) if first else ()))
    return out


def resolver_failures(calls: Sequence[Call], packets: Sequence[Packet]) -> list[Finding]:
    out = []
    for c in calls:
        if c.op == "getaddrinfo" and c.failed:
            text = f"getaddrinfo({c.args.get('host')!r}, {c.args.get('port')!r}) failed: {c.error}"
            later = [x for x in calls if x.start_ns > c.end_ns and x.op in CONNECTS]
            if not later and not any(p.proto == "TCP" for p in packets):
                text += "; no connection was attempted and no TCP packet was captured"
            out.append(Finding(text))
    return out


def handshake(call: Call, socket_packets: Sequence[Packet]) -> list[Finding]:
    """What the wire shows for one connect(): SYNs out, and what came back."""
    local = call.local
    if local is None:
        return []

    def out(p: Packet) -> bool:
        return p.sport == local[1]

    window = [p for p in socket_packets if p.proto == "TCP" and p.time_ns <= call.end_ns + 100_000_000]
    syns = [p for p in window if out(p) and "S" in p.flags and "A" not in p.flags and p.time_ns >= call.start_ns]
    if not syns:
        if call.failed:
            return [Finding(f"{call.op}() failed with {call.error} and no SYN of it was captured")]
        return []
    first = syns[0]
    dst = endpoint(first.dst, first.dport)
    found: list[Finding] = []
    if len(syns) > 1:
        times = ", ".join("+" + duration(p.time_ns - first.time_ns) for p in syns[1:])
        found.append(Finding(f"the SYN to {dst} was sent {len(syns)} times: retransmitted at {times}",
                             tuple(p.id for p in syns)))
    replies = [p for p in window if not out(p) and p.time_ns >= first.time_ns]
    synack = next((p for p in replies if "S" in p.flags and "A" in p.flags), None)
    reset = next((p for p in replies if "R" in p.flags), None)
    if synack is not None:
        found.append(Finding(f"{dst} accepted the connection: SYN/ACK came back after "
                             f"{duration(synack.time_ns - first.time_ns)}", (first.id, synack.id)))
    elif reset is not None:
        last_syn = max((p for p in syns if p.time_ns <= reset.time_ns), key=lambda p: p.time_ns, default=first)
        found.append(Finding(f"the peer's kernel answered the SYN with {flag_name(reset.flags)} after "
                             f"{duration(reset.time_ns - last_syn.time_ns)}: nothing listened on {dst}",
                             (last_syn.id, reset.id)))
    else:
        text = f"no reply to the SYN to {dst} was captured"
        if call.failed:
            text += f"; {call.op}() gave up after {duration(call.end_ns - call.start_ns)} with {call.error}"
        found.append(Finding(text, tuple(p.id for p in syns)))
    return found


def _module(file: str) -> str:
    return os.path.basename(file) if not file.startswith("<") else file


def propagation(exc: ExceptionInfo | None, calls: Sequence[Call], alignment: Alignment) -> list[Finding]:
    """How the errno became the exception that escaped, frame by frame."""
    if exc is None:
        return []
    origin, how = find_origin(exc, calls)
    if origin is None:
        return [_not_from_a_call(exc, calls)]
    if how == "errno":
        return _errno_source(exc, origin, calls, alignment)
    raised = next(e for e in linked(exc) if e.call == origin.id)
    where = next((f for f in reversed(raised.frames) if is_transport(f.file)), raised.frames[-1] if raised.frames
                 else None)
    text = _failed(origin)
    if where is not None:
        text += f"; {_module(where.file)} raised it as {raised.type}"
    if raised is exc:
        above = _modules_above(exc, where)
        if above:
            text += f"; {', '.join(above)} let it through"
    else:
        wrapper = _wrapper_of(exc, raised)
        if wrapper is not None and wrapper.frames:
            how = "raised from it" if wrapper.cause is raised else "raised while handling it"
            text += f"; {_module(wrapper.frames[-1].file)} turned it into {wrapper.type} ({how})"
    return [Finding(text, alignment.packets_of_call(origin.id))]


def _failed(call: Call) -> str:
    if call.errno is None:
        return f"{call.op}() failed"
    return f"{call.op}() {'reported' if call.op == 'getsockopt' else 'failed with'} {errnos.name(call.errno)} " \
           f"({call.errno})"


def _errno_source(exc: ExceptionInfo, origin: Call, calls: Sequence[Call], alignment: Alignment) -> list[Finding]:
    """No socket call raised the exception: say which call reported its errno, and how that errno got there."""
    made = next(e for e in linked(exc) if e.errno == origin.errno)
    inner = made.frames[-1] if made.frames else None
    where = f"{_module(inner.file)} ({inner.function})" if inner else "the program"
    found = [Finding(f"{made.type} was not raised by a socket call: {where} made it from errno {origin.errno} "
                     f"({errnos.name(origin.errno or 0)}), which {origin.op}() on socket {origin.socket} reported",
                     alignment.packets_of_call(origin.id))]
    started = [c for c in calls if c.socket == origin.socket and c.op in CONNECTS and c.errno in (115, 114)
               and c.end_ns <= origin.start_ns]
    if started:
        connect = started[0]
        sent, answer = alignment.packets_of_call(connect.id), alignment.packets_of_call(origin.id)
        text = (f"the errno came later than the SYN: {connect.op}() returned EINPROGRESS ({connect.errno}) at once "
                "(a non-blocking socket)")
        if sent:
            text += f", the SYN (#{sent[0]}) left during it"
        text += f"; {duration(origin.start_ns - connect.end_ns)} later getsockopt(SO_ERROR) read " \
                f"{errnos.name(origin.errno or 0)}"
        if answer:
            text += f", set by the answer #{answer[0]}"
        found.append(Finding(text, sent + answer))
    return found


def _wrapper_of(top: ExceptionInfo, inner: ExceptionInfo) -> ExceptionInfo | None:
    return next((e for e in linked(top) if e.cause is inner or e.context is inner), None)


def _modules_above(exc: ExceptionInfo, where: object | None) -> list[str]:
    """Library modules between the program's own frames and the transport frame that raised."""
    names: list[str] = []
    for f in exc.frames:
        if f is where or is_transport(f.file):
            break
        m = _module(f.file)
        if not f.file.startswith("<") and m not in names and f is not exc.frames[0]:
            names.append(m)
    return names


def _not_from_a_call(exc: ExceptionInfo, calls: Sequence[Call]) -> Finding:
    inner = exc.frames[-1] if exc.frames else None
    where = f" in {_module(inner.file)}:{inner.line} {inner.function}" if inner else ""
    text = f"{exc.type} was raised{where}, not by a socket call"
    below = [c for c in calls if inner is not None and any(f.instance == inner.instance for f in c.frames)]
    if below:
        last = below[-1]
        result = f"failed with {last.error}" if last.failed else f"returned {last.result!r}"
        text += f"; the last socket call below that frame, {last.op}(), {result}"
    return Finding(text)


def kernel_findings(trace: Trace, alignment: Alignment) -> list[Finding]:
    """What the kernel's own tracepoints say about each failed call: why a reset was sent, what error reached the
    socket, what the syscall returned, how often it retransmitted, why it sent ICMP."""
    events = {e.id: e for e in trace.kernel}
    out = []
    for call in trace.calls:
        mine = [events[k] for k in alignment.kernel_of_call(call.id)]
        if not mine:
            continue
        parts = []
        for ev in mine:
            f = ev.fields
            if ev.event == "tcp_send_reset":
                parts.append(f"the peer kernel sent the RST because no socket matched: tcp_send_reset reason "
                             f"{f.get('reason')}" + _dropped(trace.kernel, f, ", and it dropped the SYN"))
            elif ev.event == "icmp_send":
                parts.append(f"the kernel answered the datagram to port {f.get('dport')} with ICMP type "
                             f"{f.get('type')} code {f.get('code')} (icmp_send)"
                             + _dropped(trace.kernel, f, " and dropped it:"))
            elif ev.event == "inet_sk_error_report":
                err = int(f.get("error", "0"))
                parts.append(f"the kernel set error {err} ({errnos.name(err)}) on the socket (inet_sk_error_report)")
            elif ev.event.startswith("sys_exit_") and int(ev.fields.get("ret", "0")) < 0:
                ret = int(ev.fields["ret"])
                parts.append(f"the {ev.event[9:]} syscall returned {ret} (-{errnos.name(-ret)})")
        retrans = [e for e in mine if e.event == "tcp_retransmit_skb"]
        if retrans:
            parts.append(f"tcp_retransmit_skb fired {len(retrans)} time{'s' if len(retrans) > 1 else ''}")
        states = [e for e in mine if e.event == "inet_sock_set_state"]
        if states:
            path = [states[0].fields.get("oldstate", "?")] + [e.fields.get("newstate", "?") for e in states]
            parts.append("the socket went " + " → ".join(s.removeprefix("TCP_") for s in path))
        if parts:
            out.append(Finding(f"kernel, for {call.op}(): " + "; ".join(parts)))
    return out


def _dropped(events: Sequence[KernelEvent], fields: dict[str, str], lead: str) -> str:
    """The kfree_skb of the same skb as a reset or ICMP send (the segment that found no socket), in words."""
    drop = next((e for e in events if e.event == "kfree_skb" and e.fields.get("skbaddr") == fields.get("skbaddr")),
                None)
    if drop is None:
        return ""
    where = drop.fields.get("location", "?").split("+")[0]
    return f"{lead} (kfree_skb reason {drop.fields.get('reason')} at {where})" if lead.startswith(",") else \
        f"{lead} kfree_skb reason {drop.fields.get('reason')} at {where}"
