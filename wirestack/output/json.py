"""The report as JSON, schema 2 (documented in docs/json.md). Pure: returns data or text.

    {"wirestack": VERSION, "schema": 2, "kind": "trace" | "wire", "title", "client", "exit_code", "python",
     "capture": {interface, file, format, writer, packets, seen, dropped, links}, "network": null | {...},
     "processes": [{pid, traced, argv, parent, how}],
     "packets": [{id, time_ns, proto, src, sport, dst, dport, flags, seq, ack, window, ttl, length, payload,
                  data, icmp, quoted, app, calls, role, flow, interface}],
     "calls": [{id, op, thread, pid, tid, start_ns, end_ns, socket, local, remote, args, result,
                fault: null | {namespace, code, name, type, message, library, reason, detail},
                frames: [{file, line, function, code, layer}] innermost last, packets, kernel}],
     "exception": null | {type, message, fault, call, frames: [{..., packets}] outermost first, cause, context,
                          suppress_context, group: [...]},
     "kernel": [{id, time_ns, event, tid, pid, fields, call, packets, flow, sockets}], "kernel_off",
     "flows": [{id, proto, client: {addr, sockets, pids}, server: {...}, packets, outcome,
                bytes: {client, server}}],
     "facts": [{kind, text, packets, calls, kernel, sockets, flow, ...the kind's own fields}],
     "notes": [...]}

Every error is in its own namespace: `fault.namespace` is "errno" (a kernel errno in `code`, its name in `name`),
"openssl", "eai", "h_errno", "timeout" or "python". A fact's `kind` is stable; CI can assert on kinds and fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .._version import __version__
from ..core.dissect import tcp_options
from ..core.layers import layer_of
from ..explain.facts import Fact, kind_of
from ..explain.wording import Words, sentence
from ..model import Call, ExceptionInfo, Fault, Frame, Packet
from ..report import Report

SCHEMA = 2


def _fault(f: Fault | None) -> dict[str, Any] | None:
    if f is None:
        return None
    return {"namespace": f.namespace, "code": f.code, "name": f.name or None, "type": f.type, "message": f.message,
            "library": f.library or None, "reason": f.reason or None, "detail": f.detail or None}


def _frame(f: Frame) -> dict[str, Any]:
    return {"file": f.file, "line": f.line, "function": f.function, "code": f.code, "layer": layer_of(f.file)}


def _frames(frames: tuple[Frame, ...], cache: dict[tuple[Frame, ...], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A call's frames as JSON; a loop's calls share their stack's (read-only) list."""
    out = cache.get(frames)
    if out is None:
        out = cache[frames] = [_frame(f) for f in frames]
    return out


def _packet(p: Packet, report: Report) -> dict[str, Any]:
    pairs = report.alignment.pairs_of(p.id)
    return {
        "id": p.id, "time_ns": p.time_ns, "proto": p.proto, "src": p.src, "sport": p.sport, "dst": p.dst,
        "dport": p.dport, "flags": p.flags, "seq": p.seq, "ack": p.ack, "window": p.window, "ttl": p.ttl,
        "length": p.length, "payload": len(p.payload), "data": p.payload.hex(),
        "icmp": {"type": p.icmp[0], "code": p.icmp[1]} if p.icmp else None,
        "quoted": ({"proto": p.quoted.proto, "src": p.quoted.src, "sport": p.quoted.sport, "dst": p.quoted.dst,
                    "dport": p.quoted.dport} if p.quoted else None),
        "app": p.app or None, "calls": [x.call for x in pairs if x.call is not None],
        "role": pairs[0].role if pairs else None, "flow": report.alignment.flows.of_packet.get(p.id),
        "interface": p.interface, "tcp_options": _options(p),
    }


def _options(p: Packet) -> dict[str, Any] | None:
    o = tcp_options(p) if p.proto == "TCP" else None
    if o is None:
        return None
    return {"mss": o.mss, "wscale": o.wscale, "sack_permitted": o.sack_permitted,
            "sack": [list(b) for b in o.sack], "timestamps": list(o.timestamps) if o.timestamps else None,
            "other": list(o.other), "malformed": o.malformed}


def _call(c: Call, report: Report, stacks: dict[tuple[Frame, ...], list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "id": c.id, "op": c.op, "thread": c.thread, "pid": c.pid, "tid": c.tid, "start_ns": c.start_ns,
        "end_ns": c.end_ns, "socket": c.socket or None, "local": list(c.local) if c.local else None,
        "remote": list(c.remote) if c.remote else None, "args": c.args, "result": c.result, "fault": _fault(c.fault),
        "frames": _frames(c.frames, stacks), "packets": list(report.alignment.packets_of_call(c.id)),
        "kernel": list(report.kernel.for_call(c.id)),
    }


def _exception(e: ExceptionInfo | None, report: Report, depth: int = 0) -> dict[str, Any] | None:
    if e is None or depth > 64:
        return None
    return {
        "type": e.type, "message": e.message, "fault": _fault(e.fault), "call": e.call, "pid": e.pid,
        "frames": [{**_frame(f), "packets": list(report.alignment.packets_below(f.instance))} for f in e.frames],
        "cause": _exception(e.cause, report, depth + 1), "context": _exception(e.context, report, depth + 1),
        "suppress_context": e.suppress_context, "group": [_exception(g, report, depth + 1) for g in e.group],
    }


def fact_json(f: Fact, words: Words) -> dict[str, Any]:
    return {"kind": kind_of(f), "text": sentence(f, words), "packets": list(f.packets), "calls": list(f.calls),
            "kernel": list(f.kernel), "sockets": list(f.sockets), "flow": f.flow, **f.fields()}


def _sections(report: Report) -> list[tuple[str, Any]]:
    """The report's top-level keys in order; the long lists as iterators (streamed when large, see `chunks`)."""
    t = report.trace
    scene = report.explanation.scene
    words = Words({c.id: c for c in t.calls}, many_pids=len({c.pid for c in t.calls}) > 1)
    flows: list[dict[str, Any]] = []
    for c in scene.connections:
        flows.append({"id": c.id, "proto": "TCP", "client": _end(c.client), "server": _end(c.server),
                      "packets": len(c.packets), "outcome": c.outcome,
                      "bytes": {"client": c.a.bytes, "server": c.b.bytes}})
    for v in scene.conversations:
        flows.append({"id": v.id, "proto": "UDP", "client": _end(v.first), "server": _end(v.second),
                      "packets": len(v.datagrams) + len(v.icmp), "outcome": "icmp" if v.icmp else "",
                      "bytes": {"client": sum(len(p.payload) for p, s in v.datagrams if s == "a"),
                                "server": sum(len(p.payload) for p, s in v.datagrams if s == "b")}})
    flows.sort(key=lambda f: int(f["id"]))
    links = report.kernel.links
    stacks: dict[tuple[Frame, ...], list[dict[str, Any]]] = {}

    def kernel() -> Iterator[dict[str, Any]]:
        for k in t.kernel:
            link = links.get(k.id)
            yield {"id": k.id, "time_ns": k.time_ns, "event": k.event, "tid": k.tid, "pid": k.pid or None,
                   "fields": k.fields, "call": link.call if link else None,
                   "packets": list(link.packets) if link else [], "flow": link.flow if link else None,
                   "sockets": list(link.sockets) if link else []}

    return [
        ("wirestack", __version__), ("schema", SCHEMA), ("kind", "trace" if t.traced else "wire"),
        ("title", t.title), ("client", t.client if t.traced else None), ("exit_code", t.exit_code),
        ("python", t.python or None),
        ("capture", {"interface": t.capture.interface or None, "file": t.capture.file,
                     "format": t.capture.format or None, "writer": t.capture.writer or None,
                     "packets": t.capture.packets, "seen": t.capture.seen, "dropped": t.capture.dropped,
                     "links": list(t.capture.links)}),
        ("network", t.network or None),
        ("processes", [{"pid": p.pid, "traced": p.traced, "argv": list(p.argv), "parent": p.parent, "how": p.how}
                       for p in t.processes]),
        ("packets", (_packet(p, report) for p in t.packets)),
        ("calls", (_call(c, report, stacks) for c in t.calls)),
        ("exception", _exception(t.exception, report)),
        ("kernel", kernel()),
        ("kernel_off", t.kernel_off or None),
        ("flows", flows),
        ("facts", (fact_json(f, words) for f in report.facts)),
        ("notes", list(t.notes)),
    ]


def to_json(report: Report) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, Iterator) else value for key, value in _sections(report)}


BATCH = 2000  # list items encoded at once when streaming: the C encoder's speed, a bounded string


def chunks(report: Report) -> Iterator[str]:
    """The compact JSON text in pieces, never the whole document in memory: each long list is encoded
    `BATCH` items at a time."""
    # compact separators and no cycle check (the data is fresh lists and dicts, shared only as read-only
    # leaves): a fifth less time in the C encoder; ASCII escapes stay (a lone surrogate from a hostile name
    # could not be encoded otherwise)
    dumps = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode
    yield "{"
    for i, (key, value) in enumerate(_sections(report)):
        yield ("," if i else "") + dumps(key) + ":"
        if not isinstance(value, Iterator):
            yield dumps(value)
            continue
        yield "["
        first = True
        batch: list[Any] = []
        for item in value:
            batch.append(item)
            if len(batch) == BATCH:
                yield ("" if first else ",") + dumps(batch)[1:-1]
                first, batch = False, []
        if batch:
            yield ("" if first else ",") + dumps(batch)[1:-1]
        yield "]"
    yield "}\n"


def _end(e: Any) -> dict[str, Any]:
    return {"addr": list(e.addr), "sockets": list(e.sockets), "pids": list(e.pids)}


class JsonRenderer:
    """The report as JSON text: indented when small; compact when large (the indenting encoder is pure
    Python)."""

    name: str = "json"
    extensions: tuple[str, ...] = (".json",)

    def render(self, report: Report) -> str:
        if self.large(report):
            return "".join(chunks(report))
        return json.dumps(to_json(report), indent=2) + "\n"

    def large(self, report: Report) -> bool:
        return len(report.trace.calls) + len(report.trace.packets) > 5000

    def stream(self, report: Report) -> Iterator[bytes]:
        """The file's bytes in pieces (a large report is never one string in memory)."""
        if not self.large(report):
            yield self.render(report).encode()
            return
        for piece in chunks(report):
            yield piece.encode()
