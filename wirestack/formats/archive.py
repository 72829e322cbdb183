"""The recorded trace inside the pcapng: what makes a capture self-contained. Pure.

A wirestack pcapng carries, besides its packets and their comments, everything else the run recorded: the calls
with their stacks, the exception, the kernel's events, the capture counters, the notes, the header `#define`
lines and the application-layer labels. `wirestack read` rebuilds the very `Trace` of the live run from it, so
the report comes out the same. Format 2 (documented in docs/pcapng.md).

Where: in the Section Header Block, as pcapng custom options of code 2989 ("custom binary, may be copied"): tshark
and Wireshark read them silently and copy them when they save or filter a file (editcap, `tshark -w`, Save
As), whereas a custom *block* would show as a frame and shift frame numbers. Each option's value is

    PEN (u32, 32473)  "WSTK"  format (u8, = 2)  chunk index (u16 BE)  chunk count (u16 BE)  data

and the data of all chunks, in index order, is zlib-compressed UTF-8 JSON (an option holds at most 65,535
bytes, hence the chunks; 32473 is the Private Enterprise Number RFC 5612 reserves for documentation):

    {"format": 2, "wirestack": VERSION,
     "trace": {"title", "client", "started_ns", "exit_code", "notes", "defines", "kernel_off", "traced", "python",
               "capture": {interface, file, packets, seen, dropped, linktype, links},
               "network": {hosts, links, taps, servers, firewall}  (a network lab's, else {}),
               "processes": [[pid, traced, argv, parent, how]],
               "frames": [[file, line, function, code, instance]],          one table, shared by every stack
               "calls": [[id, op, thread, start_ns, end_ns, [frame index...], socket, family, kind,
                          fault | null, local, remote, args, result, pid, tid]],
               "exception": null | {type, message, frames: [frame index...], fault, call, cause, context,
                                    suppress_context, group, pid},
               "kernel": [[id, time_ns, event, tid, {field: value}, pid]]},
     "packets": {"count": N, "digest": sha256 hex of (time_ns, caplen, bytes) of every packet, "app": {id: label}}}

A fault is [namespace, type, message, code, name, library, reason, detail].

A run interrupted while it was being analysed is saved with "recording" in place of "trace": the probe's items
as they were read (see `record.items`; lists for tuples) and the run's counters, which `wirestack read`
analyses as the live run would have (see `commands.read`). It has no kernel layer.

Reading is for hostile files too: decompression is bounded, every value is checked against the model (types,
finite ranges, depth), and anything that does not fit raises `ArchiveError` (the caller shows the wire alone,
with a note). Encoding and decoding are hand-written, linear in the trace's size: no per-object introspection.

It is long because the archive's encoder and its validating decoder (every field checked: the input is hostile) must
mirror each other.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from .._version import __version__
from ..errors import ArchiveError as ArchiveError
from ..model import NAMESPACES, Call, CaptureInfo, ExceptionInfo, Fault, Frame, KernelEvent, Packet, Process, Trace

FORMAT = 2
PEN = 32473
MAGIC = b"WSTK"
OPTION_CODE = 2989  # custom option, binary, copyable
CHUNK = 60_000  # data bytes per option (an option's value is at most 65,535 bytes)
_HEAD = struct.Struct(">4sBHH")
MAX_DEPTH = 64
MAX_TEXT = 100_000


# -- encoding --------------------------------------------------------------------------------------------------


def _fault(f: Fault | None) -> list[Any] | None:
    if f is None:
        return None
    return [f.namespace, f.type, f.message, f.code, f.name, f.library, f.reason, f.detail]


def _trace_doc(trace: Trace) -> dict[str, Any]:
    frames: dict[Frame, int] = {}

    def index(f: Frame) -> int:
        i = frames.get(f)
        if i is None:
            i = frames[f] = len(frames)
        return i

    calls = [[c.id, c.op, c.thread, c.start_ns, c.end_ns, [index(f) for f in c.frames], c.socket, c.family, c.kind,
              _fault(c.fault), list(c.local) if c.local else None, list(c.remote) if c.remote else None, c.args,
              c.result, c.pid, c.tid] for c in trace.calls]

    def exc(e: ExceptionInfo | None, depth: int = 0) -> dict[str, Any] | None:
        if e is None or depth > MAX_DEPTH:
            return None
        return {"type": e.type, "message": e.message, "frames": [index(f) for f in e.frames], "fault": _fault(e.fault),
                "call": e.call, "cause": exc(e.cause, depth + 1), "context": exc(e.context, depth + 1),
                "suppress_context": e.suppress_context, "group": [exc(g, depth + 1) for g in e.group], "pid": e.pid}

    exception = exc(trace.exception)
    cap = trace.capture
    return {
        "title": trace.title, "client": trace.client, "started_ns": trace.started_ns, "exit_code": trace.exit_code,
        "notes": list(trace.notes), "defines": trace.defines, "kernel_off": trace.kernel_off, "traced": trace.traced,
        "python": trace.python,
        "capture": {"interface": cap.interface, "file": cap.file, "packets": cap.packets, "seen": cap.seen,
                    "dropped": cap.dropped, "linktype": cap.linktype, "links": list(cap.links)},
        "network": trace.network,
        "processes": [[p.pid, p.traced, list(p.argv), p.parent, p.how] for p in trace.processes],
        "frames": [[f.file, f.line, f.function, f.code, f.instance] for f in frames],
        "calls": calls, "exception": exception,
        "kernel": [[k.id, k.time_ns, k.event, k.tid, k.fields, k.pid] for k in trace.kernel],
    }


def digest(records: Iterable[tuple[int, bytes]]) -> str:
    """sha256 over (time_ns, captured length, bytes) of each packet, in file order."""
    h = hashlib.sha256()
    for time_ns, raw in records:
        h.update(struct.pack("<qI", time_ns & 0x7FFFFFFFFFFFFFFF, len(raw)))
        h.update(raw)
    return h.hexdigest()


def encode(trace: Trace) -> bytes:
    """The compressed document. Its long lists are encoded and compressed a batch at a time: a large trace is
    never one JSON string in memory."""
    doc = {"format": FORMAT, "wirestack": __version__, "trace": _trace_doc(trace),
           "packets": {"count": len(trace.packets), "digest": digest((p.time_ns, p.raw) for p in trace.packets),
                       "app": {str(p.id): p.app for p in trace.packets if p.app}}}
    z = zlib.compressobj(6)
    out = [z.compress(piece.encode()) for piece in _pieces(doc)]
    out.append(z.flush())
    return b"".join(out)


_BATCH = 2000


def _pieces(value: Any, depth: int = 0) -> Iterator[str]:
    """Compact JSON of `value`, in pieces: dicts and long lists opened up, other values whole."""
    dumps = json.dumps
    if isinstance(value, dict) and depth < 2:
        yield "{"
        for i, (k, v) in enumerate(value.items()):
            yield ("," if i else "") + dumps(k) + ":"
            yield from _pieces(v, depth + 1)
        yield "}"
    elif isinstance(value, list) and len(value) > _BATCH:
        yield "["
        for i in range(0, len(value), _BATCH):
            yield ("," if i else "") + dumps(value[i:i + _BATCH], separators=(",", ":"))[1:-1]
        yield "]"
    else:
        yield dumps(value, separators=(",", ":"))


def option_values(trace: Trace) -> list[bytes]:
    """The values of the SHB custom options that carry `trace` (PEN first, in little-endian section order)."""
    return _chunked(encode(trace))


def recording_values(recording: dict[str, Any], packets: Iterable[tuple[int, bytes]], count: int) -> list[bytes]:
    """The option values for a run saved without its analysis (interrupted): `recording` holds the probe's
    items as read and the run's counters (see `commands.read`, which analyses it); fast, for an exit within a
    second: no trace is built."""
    doc = {"format": FORMAT, "wirestack": __version__, "recording": recording,
           "packets": {"count": count, "digest": digest(packets), "app": {}}}
    return _chunked(zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 1))


def _chunked(data: bytes) -> list[bytes]:
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
    if len(chunks) > 0xFFFF:
        raise ArchiveError("the trace is too large to store in the file")
    return [struct.pack("<I", PEN) + _HEAD.pack(MAGIC, FORMAT, i, len(chunks)) + c for i, c in enumerate(chunks)]


def is_ours(value: bytes, pen: int) -> bool:
    """`value` is a custom option's value after its PEN."""
    return pen == PEN and value[:4] == MAGIC


# -- decoding (untrusted) ----------------------------------------------------------------------------------------


def max_inflated(compressed: int) -> int:
    """How far a trace of this many compressed bytes may inflate: JSON of a trace compresses 5-20 times; a zlib
    bomb, 1000 times. Beyond the bound it is refused as damaged."""
    return min(2 << 30, max(16 << 20, 60 * compressed))


# A trace's JSON holds a value every 13-18 bytes and a list or object every 40-90 (measured on runs of 15,000
# connects and 30,000 datagrams, and on the shipped captures). A document far denser is a bomb of tiny values
# ("{},{},...": 3 bytes each, 64 once parsed), refused before it is parsed: parsed memory stays within about
# 10 times the inflated size, which `max_inflated` bounds.
MIN_BYTES_PER_VALUE, MIN_BYTES_PER_CONTAINER = 6, 16


def _too_dense(raw: bytes) -> bool:
    return (raw.count(b",") > len(raw) // MIN_BYTES_PER_VALUE + 64
            or raw.count(b"[") + raw.count(b"{") > len(raw) // MIN_BYTES_PER_CONTAINER + 64)


def decode(values: Sequence[bytes]) -> dict[str, Any]:
    """The archive document from our custom options' values (each without its PEN)."""
    parts: dict[int, bytes] = {}
    count = None
    for v in values:
        if len(v) < _HEAD.size:
            raise ArchiveError("a chunk of the trace is cut short")
        _magic, fmt, index, total = _HEAD.unpack_from(v)
        if fmt != FORMAT:
            raise ArchiveError(f"the trace is in format {fmt}; this wirestack reads format {FORMAT}")
        if count is not None and total != count:
            raise ArchiveError("the trace's chunks disagree about their number")
        count = total
        if index in parts:
            raise ArchiveError(f"chunk {index} of the trace appears twice")
        parts[index] = v[_HEAD.size:]
    if count is None or sorted(parts) != list(range(count)):
        raise ArchiveError(f"the trace is incomplete ({len(parts)} of {count} chunks)")
    data = b"".join(parts[i] for i in range(count))
    limit = max_inflated(len(data))
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, limit)
        if inflater.unconsumed_tail:
            raise ArchiveError(f"the trace inflates beyond {limit >> 20} MiB: refused as damaged")
        if _too_dense(raw):
            raise ArchiveError("the trace holds far more values than a trace of its size: refused as damaged")
        doc = json.loads(raw)
    except (zlib.error, ValueError, RecursionError, MemoryError) as exc:
        raise ArchiveError(f"the trace is damaged ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or not (isinstance(doc.get("trace"), dict) or isinstance(doc.get("recording"), dict)):
        raise ArchiveError("the trace is damaged (no trace record)")
    return doc


class _Bad(Exception):
    pass


def _int(v: Any, lo: int = -(1 << 63), hi: int = (1 << 63) - 1) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise _Bad
    return v


def _opt_int(v: Any) -> int | None:
    return None if v is None else _int(v)


def _str(v: Any, limit: int = MAX_TEXT) -> str:
    if type(v) is not str:
        raise _Bad
    return v[:limit]


def _bool(v: Any) -> bool:
    if type(v) is not bool:
        raise _Bad
    return v


def _addr(v: Any) -> tuple[str, int] | None:
    if v is None:
        return None
    if not isinstance(v, list) or len(v) != 2:
        raise _Bad
    return (_str(v[0], 256), _int(v[1], 0, 65535))


def _plain(v: Any, depth: int = 0) -> Any:
    """A JSON value as found (args, results): only JSON's types, nested at most 16 deep; floats are finite
    (the JSON parser gives inf/nan for Infinity/NaN, which are refused)."""
    if depth > 16:
        raise _Bad
    if v is None or type(v) in (bool, int, str):
        return v
    if type(v) is float:
        if v != v or v in (float("inf"), float("-inf")):
            raise _Bad
        return v
    if isinstance(v, list):
        return [_plain(x, depth + 1) for x in v]
    if isinstance(v, dict):
        return {_str(k, 200): _plain(x, depth + 1) for k, x in v.items()}
    raise _Bad


def _fields(d: dict[Any, Any]) -> dict[str, str]:
    """A kernel event's fields: strings only, at most 64 of them, names of 64 characters and values of 400 at
    most (checked in one pass; the dict is rebuilt only when something must be cut)."""
    if len(d) > 64 or not all(type(a) is str and type(b) is str and len(a) <= 64 and len(b) <= 400
                              for a, b in d.items()):
        return {_str(a, 64): _str(b, 400) for a, b in list(d.items())[:64]}
    return d


def _fault_from(v: Any) -> Fault | None:
    if v is None:
        return None
    if not isinstance(v, list) or len(v) != 8 or v[0] not in NAMESPACES:
        raise _Bad
    return Fault(v[0], _str(v[1], 300), _str(v[2], 4000), _opt_int(v[3]), _str(v[4], 64), _str(v[5], 64),
                 _str(v[6], 128), _str(v[7], 400))


def trace_from_doc(d: dict[str, Any], packets: Sequence[Packet]) -> Trace:
    """The Trace a document describes, with the file's packets; ArchiveError if anything does not fit."""
    try:
        return _trace(d, packets)
    except (_Bad, KeyError, TypeError, ValueError, IndexError, RecursionError, AttributeError):
        raise ArchiveError("the trace is damaged (a value of the wrong type or out of range)") from None


def _trace(d: dict[str, Any], packets: Sequence[Packet]) -> Trace:
    frames = []
    for f in d.get("frames", []):
        if not isinstance(f, list) or len(f) != 5:
            raise _Bad
        frames.append(Frame(_str(f[0], 2000), _int(f[1], 0), _str(f[2], 400), _str(f[3], 1000), _int(f[4])))

    stacks: dict[tuple[Any, ...], tuple[Frame, ...]] = {}  # a loop's calls share one stack and one fault
    faults: dict[tuple[Any, ...], Fault | None] = {}

    def stack(v: Any) -> tuple[Frame, ...]:
        if not isinstance(v, list) or len(v) > 10_000:
            raise _Bad
        key = tuple(v)
        found = stacks.get(key)
        if found is None:
            found = stacks[key] = tuple(frames[_int(i, 0, len(frames) - 1)] for i in v)
        return found

    def fault(v: Any) -> Fault | None:
        if v is None:
            return None
        key = tuple(v) if isinstance(v, list) else (v,)
        if key not in faults:
            faults[key] = _fault_from(v)
        return faults[key]

    calls = []
    for c in d.get("calls", []):
        if not isinstance(c, list) or len(c) != 16:
            raise _Bad
        args = _plain(c[12])
        if not isinstance(args, dict):
            raise _Bad
        start, end = _int(c[3], 0), _int(c[4], 0)
        calls.append(Call(_int(c[0], 1), _str(c[1], 40), _str(c[2], 400), start, max(end, start), stack(c[5]),
                          _int(c[6], 0), _str(c[7], 40), _str(c[8], 40), fault(c[9]), _addr(c[10]),
                          _addr(c[11]), args, _plain(c[13]), _int(c[14]), _int(c[15])))

    def exc(e: Any, depth: int = 0) -> ExceptionInfo | None:
        if e is None:
            return None
        if not isinstance(e, dict) or depth > MAX_DEPTH:
            raise _Bad
        group = e.get("group") or []
        if not isinstance(group, list):
            raise _Bad
        return ExceptionInfo(_str(e["type"], 400), _str(e.get("message", ""), 4000), stack(e.get("frames", [])),
                             _fault_from(e.get("fault")), _opt_int(e.get("call")), exc(e.get("cause"), depth + 1),
                             exc(e.get("context"), depth + 1), _bool(e.get("suppress_context", False)),
                             tuple(x for x in (exc(g, depth + 1) for g in group[:1000]) if x is not None),
                             _int(e.get("pid", 0)))

    kernel = []
    for k in d.get("kernel", []):
        if not isinstance(k, list) or len(k) not in (5, 6) or not isinstance(k[4], dict):
            raise _Bad
        kernel.append(KernelEvent(_int(k[0], 1), _int(k[1], 0), _str(k[2], 64), _int(k[3]), _fields(k[4]),
                                  _int(k[5], 0, 1 << 31) if len(k) == 6 else 0))
    processes = []
    for p in d.get("processes", []):
        if not isinstance(p, list) or len(p) != 5 or not isinstance(p[2], list):
            raise _Bad
        processes.append(Process(_int(p[0]), _bool(p[1]), tuple(_str(a, 400) for a in p[2][:64]), _int(p[3]),
                                 _str(p[4], 40)))
    cap = d["capture"]
    if not isinstance(cap, dict):
        raise _Bad
    notes, defines = d.get("notes", []), d.get("defines", {})
    if not isinstance(notes, list) or not isinstance(defines, dict):
        raise _Bad
    links, network = cap.get("links", []), _plain(d.get("network", {}))
    if not isinstance(links, list) or not isinstance(network, dict):
        raise _Bad
    info = CaptureInfo(_str(cap.get("interface", ""), 600),
                       None if cap.get("file") is None else _str(cap["file"], 4096),
                       len(packets), _int(cap.get("seen", 0), 0), _int(cap.get("dropped", 0), 0),
                       _int(cap.get("linktype", 1), 0, 0xFFFF), links=tuple(_str(x, 300) for x in links[:64]))
    return Trace(_str(d["title"], 400), _str(d.get("client", ""), 100_000), tuple(packets), tuple(calls),
                 exc(d.get("exception")), info, _int(d.get("started_ns", 0)), _opt_int(d.get("exit_code")),
                 tuple(_str(n, 2000) for n in notes[:1000]),
                 {_str(k, 64): _str(v, 1000) for k, v in list(defines.items())[:1000]}, tuple(kernel),
                 _str(d.get("kernel_off", ""), 1000), tuple(processes), _bool(d.get("traced", True)),
                 _str(d.get("python", ""), 40), network)


def with_labels(trace: Trace, doc: dict[str, Any]) -> Trace:
    """The application-layer labels the document carries, put back on the packets."""
    info = doc.get("packets") or {}
    labels = info.get("app") if isinstance(info, dict) else None
    if not isinstance(labels, dict) or not labels:
        return trace
    app = {}
    for k, v in labels.items():
        if isinstance(k, str) and k.isdigit() and isinstance(v, str):
            app[int(k)] = v[:200]
    return replace(trace, packets=tuple(replace(p, app=app[p.id]) if p.id in app else p for p in trace.packets))
