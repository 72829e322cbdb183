"""The recorded trace inside the pcapng: what makes a capture self-contained. Pure.

A wirestack pcapng carries, besides its packets and their comments, everything else the run recorded: the
calls with their stacks, the exception, the capture counters, the notes, the errno `#define` lines and the
application-layer labels. `wirestack read` rebuilds the very `Trace` of the live run from it, so the report
(text and JSON) comes out the same.

Where (format 1, documented in README.md): in the Section Header Block, as pcapng **custom options** of code
2989 ("custom binary, may be copied"). Each option's value is

    PEN (u32, 32473)  "WSTK"  format (u8, = 1)  chunk index (u16 BE)  chunk count (u16 BE)  data

and the data of all chunks, in index order, is zlib-compressed UTF-8 JSON:

    {"format": 1, "wirestack": VERSION, "trace": {...see trace_to_dict...},
     "packets": {"count": N, "digest": sha256 hex of (time_ns, caplen, bytes) of every packet, "app": {id: label}}}

Why there: tshark/Wireshark 4.0 read SHB custom options silently and copy them when they save or filter a file
(`editcap`, `tshark -w`, Wireshark's Save As), whereas a pcapng Custom Block shows up as an extra "PCAPNG" frame
and shifts frame numbers, and blocks of unknown type are dropped on save (all checked with tshark 4.0.17).
An option holds at most 65,535 bytes, hence the chunks. 32473 is the Private Enterprise Number that RFC 5612
reserves for documentation and examples (wirestack has none of its own); the "WSTK" magic tells ours apart.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from . import __version__
from .model import Call, CaptureInfo, ExceptionInfo, Frame, Packet, Trace
from .records import call_from, exception_from

FORMAT = 1
PEN = 32473
MAGIC = b"WSTK"
OPTION_CODE = 2989  # custom option, binary, copyable
CHUNK = 60_000  # data bytes per option (an option's value is at most 65,535 bytes)
_HEAD = struct.Struct(">4sBHH")


class ArchiveError(Exception):
    """The trace in the file cannot be read; the message is one line for the user."""


def _frame(f: Frame) -> dict[str, Any]:
    return {"file": f.file, "line": f.line, "function": f.function, "code": f.code, "instance": f.instance}


def call_to_dict(c: Call) -> dict[str, Any]:
    """A call in the probe's record shape, so that `records.call_from` reads it back unchanged."""
    return {"id": c.id, "op": c.op, "thread": c.thread, "start_ns": c.start_ns, "end_ns": c.end_ns,
            "frames": [_frame(f) for f in c.frames], "socket": c.socket, "family": c.family, "type": c.kind,
            "errno": c.errno, "error": c.error, "local": list(c.local) if c.local else None,
            "remote": list(c.remote) if c.remote else None, "args": c.args, "result": c.result, "pid": c.pid}


def exception_to_dict(e: ExceptionInfo | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"type": e.type, "message": e.message, "frames": [_frame(f) for f in e.frames], "errno": e.errno,
            "call": e.call, "cause": exception_to_dict(e.cause), "context": exception_to_dict(e.context),
            "suppress_context": e.suppress_context}


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    """Everything in a trace but its packets (those are the file's packet blocks)."""
    cap = trace.capture
    return {
        "title": trace.title, "client": trace.client, "started_ns": trace.started_ns, "exit_code": trace.exit_code,
        "capture": {"interface": cap.interface, "file": cap.file, "packets": cap.packets, "seen": cap.seen,
                    "dropped": cap.dropped, "linktype": cap.linktype},
        "calls": [call_to_dict(c) for c in trace.calls],
        "exception": exception_to_dict(trace.exception),
        "notes": list(trace.notes),
        "errno_defines": {str(k): v for k, v in sorted(trace.errno_defines.items())},
    }


def trace_from_dict(d: dict[str, Any], packets: Sequence[Packet]) -> Trace:
    cap = d.get("capture") or {}
    info = CaptureInfo(str(cap.get("interface", "")), cap.get("file"), int(cap.get("packets", 0)),
                       int(cap.get("seen", 0)), int(cap.get("dropped", 0)), int(cap.get("linktype", 1)))
    return Trace(
        title=str(d.get("title", "")), client=str(d.get("client", "")), packets=tuple(packets),
        calls=tuple(call_from(c) for c in d.get("calls", ())), exception=exception_from(d.get("exception")),
        capture=info, started_ns=int(d.get("started_ns", 0)), exit_code=d.get("exit_code"),
        notes=tuple(str(n) for n in d.get("notes", ())),
        errno_defines={int(k): str(v) for k, v in (d.get("errno_defines") or {}).items()},
    )


def digest(records: Iterable[tuple[int, bytes]]) -> str:
    """sha256 over (time_ns, captured length, bytes) of each packet, in file order."""
    h = hashlib.sha256()
    for time_ns, raw in records:
        h.update(struct.pack("<qI", time_ns, len(raw)))
        h.update(raw)
    return h.hexdigest()


def encode(trace: Trace) -> bytes:
    doc = {"format": FORMAT, "wirestack": __version__, "trace": trace_to_dict(trace),
           "packets": {"count": len(trace.packets), "digest": digest((p.time_ns, p.raw) for p in trace.packets),
                       "app": {str(p.id): p.app for p in trace.packets if p.app}}}
    return zlib.compress(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode(), 6)


def option_values(trace: Trace) -> list[bytes]:
    """The values of the SHB custom options that carry `trace` (PEN first, in little-endian section order)."""
    data = encode(trace)
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
    if len(chunks) > 0xFFFF:
        raise ArchiveError("the trace is too large to store in the file")
    return [struct.pack("<I", PEN) + _HEAD.pack(MAGIC, FORMAT, i, len(chunks)) + c for i, c in enumerate(chunks)]


def is_ours(value: bytes, pen: int) -> bool:
    """`value` is a custom option's value after its PEN."""
    return pen == PEN and value[:4] == MAGIC


def decode(values: Sequence[bytes]) -> dict[str, Any]:
    """The archive document from our custom options' values (each without its PEN)."""
    parts: dict[int, bytes] = {}
    count = None
    for v in values:
        if len(v) < _HEAD.size:
            raise ArchiveError("a chunk of the trace is cut short")
        magic, fmt, index, total = _HEAD.unpack_from(v)
        if fmt != FORMAT:
            raise ArchiveError(f"the trace is in format {fmt}; this wirestack reads format {FORMAT}: upgrade it")
        count = total if count is None else count
        parts[index] = v[_HEAD.size :]
    if count is None or sorted(parts) != list(range(count)):
        raise ArchiveError(f"the trace is incomplete ({len(parts)} of {count} chunks)")
    try:
        doc = json.loads(zlib.decompress(b"".join(parts[i] for i in range(count))))
    except (zlib.error, ValueError) as exc:
        raise ArchiveError(f"the trace is damaged ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("trace"), dict):
        raise ArchiveError("the trace is damaged (no trace record)")
    return doc
