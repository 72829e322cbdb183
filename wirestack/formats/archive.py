"""The recorded trace inside the pcapng: what makes a capture self-contained. Pure.

A wirestack pcapng carries, besides its packets and their comments, everything else the run recorded: the
calls with their stacks, the exception, the capture counters, the notes, the errno `#define` lines and the
application-layer labels. `wirestack read` rebuilds the very `Trace` of the live run from it, so the report
(text and JSON) comes out the same.

Where (format 1, documented in README.md): in the Section Header Block, as pcapng **custom options** of code
2989 ("custom binary, may be copied"). Each option's value is

    PEN (u32, 32473)  "WSTK"  format (u8, = 1)  chunk index (u16 BE)  chunk count (u16 BE)  data

and the data of all chunks, in index order, is zlib-compressed UTF-8 JSON:

    {"format": 1, "wirestack": VERSION, "trace": {every field of model.Trace but packets, see encode_value},
     "packets": {"count": N, "digest": sha256 hex of (time_ns, caplen, bytes) of every packet, "app": {id: label}}}

Why there: tshark/Wireshark 4.0 read SHB custom options silently and copy them when they save or filter a file
(`editcap`, `tshark -w`, Wireshark's Save As), whereas a pcapng Custom Block shows up as an extra "PCAPNG" frame
and shifts frame numbers, and blocks of unknown type are dropped on save (all checked with tshark 4.0.17).
An option holds at most 65,535 bytes, hence the chunks. 32473 is the Private Enterprise Number that RFC 5612
reserves for documentation and examples (wirestack has none of its own); the "WSTK" magic tells ours apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
import zlib
from collections.abc import Iterable, Sequence
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from .. import __version__
from ..model import Packet, Trace

FORMAT = 1
PEN = 32473
MAGIC = b"WSTK"
OPTION_CODE = 2989  # custom option, binary, copyable
CHUNK = 60_000  # data bytes per option (an option's value is at most 65,535 bytes)
_HEAD = struct.Struct(">4sBHH")


class ArchiveError(Exception):
    """The trace in the file cannot be read; the message is one line for the user."""


def encode_value(value: Any, tp: Any) -> Any:
    """A typed model value as JSON data, directed by its type hint: dataclasses as objects (every field, so
    fields added to the model later are stored without touching this module), tuples and lists as arrays,
    dicts as arrays of [key, value] pairs (keys need not be strings), bytes as hex, `Any` as it is."""
    if value is None or tp is Any:
        return value
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, UnionType):
        inner = [a for a in args if a is not type(None)]
        return encode_value(value, inner[0] if len(inner) == 1 else Any)
    if dataclasses.is_dataclass(tp):
        hints = get_type_hints(tp)
        return {f.name: encode_value(getattr(value, f.name), hints[f.name]) for f in dataclasses.fields(tp)
                if f.name not in _SKIP.get(tp, ())}
    if origin in (tuple, list):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return [encode_value(v, a) for v, a in zip(value, args, strict=True)]
        return [encode_value(v, args[0] if args else Any) for v in value]
    if origin is dict:
        return [[encode_value(k, args[0]), encode_value(v, args[1])] for k, v in value.items()]
    if tp is bytes:
        return bytes(value).hex()
    return value


def decode_value(data: Any, tp: Any) -> Any:
    """The inverse of `encode_value`. Missing dataclass fields take their defaults (files from older versions);
    unknown keys are ignored (files from newer ones)."""
    if data is None or tp is Any:
        return data
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, UnionType):
        inner = [a for a in args if a is not type(None)]
        return decode_value(data, inner[0] if len(inner) == 1 else Any)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = get_type_hints(tp)
        return tp(**{f.name: decode_value(data[f.name], hints[f.name]) for f in dataclasses.fields(tp)
                     if f.init and f.name in data})
    if origin in (tuple, list):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return tuple(decode_value(v, a) for v, a in zip(data, args, strict=True))
        items = [decode_value(v, args[0] if args else Any) for v in data]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        return {decode_value(k, args[0]): decode_value(v, args[1]) for k, v in data}
    if tp is bytes:
        return bytes.fromhex(data)
    if tp in (int, float, str, bool):
        return tp(data)
    return data


_SKIP: dict[Any, tuple[str, ...]] = {Trace: ("packets",)}  # the packets are the file's packet blocks


def trace_to_dict(trace: Trace) -> dict[str, Any]:
    """Everything in a trace but its packets."""
    out: dict[str, Any] = encode_value(trace, Trace)
    return out


def trace_from_dict(d: dict[str, Any], packets: Sequence[Packet]) -> Trace:
    try:
        trace: Trace = decode_value({**d, "packets": []}, Trace)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArchiveError(f"the trace is damaged ({type(exc).__name__}: {exc})") from None
    return dataclasses.replace(trace, packets=tuple(packets))


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
