"""The report: a trace with its alignment and explanations, and its JSON form. Pure.

JSON layout (schema 1; documented in README.md):

    {"wirestack": VERSION, "schema": 1, "title", "client", "exit_code",
     "capture": {interface, file, packets, seen, dropped},
     "packets": [{id, time_ns, proto, src, sport, dst, dport, flags, seq, ack, length, payload, data,
                  icmp, quoted, calls, role, app}],
     "calls": [{id, op, thread, start_ns, end_ns, errno, error, socket, local, remote, args, result,
                frames: [{file, line, function, code, layer}] innermost last, packets}],
     "exception": null | {type, errno, message, call,
                          frames: [{file, line, function, code, layer, packets}] outermost first,
                          cause, context, suppress_context},
     "explanation": [{text, packets}], "notes": [...]}
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from . import __version__
from .core.kernel import align_kernel
from .core.layers import layer_of
from .core.pairing import Alignment, align, origin_call
from .explain.explanation import Finding, explain
from .model import Call, ExceptionInfo, Frame, Packet, Trace

SCHEMA = 1


@dataclass(frozen=True)
class Report:
    trace: Trace
    alignment: Alignment
    findings: tuple[Finding, ...]

    @property
    def origin(self) -> Call | None:
        return origin_call(self.trace.exception, self.trace.calls)

    def packet(self, pid: int) -> Packet:
        return self.trace.packets[pid - 1]


def build_report(trace: Trace) -> Report:
    alignment = align(trace.calls, trace.packets)
    if trace.kernel:
        pairs = align_kernel(trace.kernel, trace.calls, trace.packets)
        alignment = replace(alignment, kernel={p.event: p for p in pairs})
    return Report(trace, alignment, tuple(explain(trace, alignment)))


def _frame(f: Frame) -> dict[str, Any]:
    return {"file": f.file, "line": f.line, "function": f.function, "code": f.code, "layer": layer_of(f.file)}


def _packet(p: Packet, alignment: Alignment) -> dict[str, Any]:
    pairs = alignment.pairs_of(p.id)
    return {
        "id": p.id, "time_ns": p.time_ns, "proto": p.proto, "src": p.src, "sport": p.sport, "dst": p.dst,
        "dport": p.dport, "flags": p.flags, "seq": p.seq, "ack": p.ack, "length": p.length,
        "payload": len(p.payload), "data": p.payload.hex(),
        "icmp": {"type": p.icmp[0], "code": p.icmp[1]} if p.icmp else None,
        "quoted": ({"proto": p.quoted.proto, "src": p.quoted.src, "sport": p.quoted.sport, "dst": p.quoted.dst,
                    "dport": p.quoted.dport} if p.quoted else None),
        "calls": [x.call for x in pairs if x.call is not None],
        "role": pairs[0].role if pairs else None,
        "app": p.app or None,
    }


def _call(c: Call, alignment: Alignment) -> dict[str, Any]:
    return {
        "id": c.id, "op": c.op, "thread": c.thread, "start_ns": c.start_ns, "end_ns": c.end_ns, "errno": c.errno,
        "error": c.error or None, "socket": c.socket or None, "local": list(c.local) if c.local else None,
        "remote": list(c.remote) if c.remote else None, "args": c.args, "result": c.result,
        "frames": [_frame(f) for f in c.frames], "packets": list(alignment.packets_of_call(c.id)),
    }


def _exception(e: ExceptionInfo | None, alignment: Alignment) -> dict[str, Any] | None:
    if e is None:
        return None
    return {
        "type": e.type, "errno": e.errno, "message": e.message, "call": e.call,
        "frames": [{**_frame(f), "packets": list(alignment.packets_below(f.instance))} for f in e.frames],
        "cause": _exception(e.cause, alignment), "context": _exception(e.context, alignment),
        "suppress_context": e.suppress_context,
    }


def to_json(report: Report) -> dict[str, Any]:
    t, a = report.trace, report.alignment
    return {
        "wirestack": __version__, "schema": SCHEMA, "title": t.title, "client": t.client, "exit_code": t.exit_code,
        "capture": {"interface": t.capture.interface, "file": t.capture.file, "packets": t.capture.packets,
                    "seen": t.capture.seen, "dropped": t.capture.dropped},
        "packets": [_packet(p, a) for p in t.packets],
        "calls": [_call(c, a) for c in t.calls],
        "exception": _exception(t.exception, a),
        "kernel": [{"id": k.id, "time_ns": k.time_ns, "event": k.event, "pid": k.pid, "fields": k.fields,
                    "call": a.kernel[k.id].call if k.id in a.kernel else None,
                    "packets": list(a.kernel[k.id].packets) if k.id in a.kernel else []} for k in t.kernel],
        "kernel_off": t.kernel_off or None,
        "explanation": [{"text": f.text, "packets": list(f.packets)} for f in report.findings],
        "notes": list(t.notes),
    }
