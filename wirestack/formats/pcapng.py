"""pcapng export: packets with their kernel timestamps (nanosecond resolution) and per-packet comments.

Pure: `blocks()` yields the file as byte chunks, the caller writes them. Layout (pcapng, IETF draft):
Section Header Block, one Interface Description Block (link type, snap length, if_name, if_tsresol=9), then an
Enhanced Packet Block per packet, each with one opt_comment per pairing. The Section Header Block also
carries the whole recorded trace (see `wirestack.formats.archive`), so that `wirestack read` needs nothing else.

A comment is the sentence a person reads, then the same facts as key=value pairs in `[wirestack ...]` (the
form the Lua post-dissector `wirestack/data/wirestack.lua` turns into fields; documented in README.md):

    sent by connect() → ECONNREFUSED (111) at socket.py:836 create_connection ← smtplib.py:312 _get_socket ← ...
      [wirestack call=2 op=connect role=sent errno=111 errname=ECONNREFUSED socket=1 thread=MainThread
       frame="socket.py:836 create_connection" frame="smtplib.py:312 _get_socket" ...]

Values are bare (no space, quote, bracket or equals sign) or double-quoted with backslash escapes; `frame`
repeats, innermost first; `errno`/`errname` only when the call failed with one. tshark shows comments as
`frame.comment`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence

from .. import __version__
from ..core import errnos
from ..core.kernel import describe
from ..model import Call, KernelEvent, Packet
from ..report import Report
from . import archive

_BYTE_ORDER_MAGIC = 0x1A2B3C4D


def _option(code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _options(opts: Iterable[tuple[int, bytes]]) -> bytes:
    body = b"".join(_option(code, value) for code, value in opts)
    return body + struct.pack("<HH", 0, 0) if body else b""


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def section_header(application: str, custom: Sequence[bytes] = ()) -> bytes:
    """`custom`: values of custom options (code 2989), each starting with its PEN."""
    opts = [(4, application.encode())] + [(archive.OPTION_CODE, value) for value in custom]
    body = struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1) + _options(opts)
    return _block(0x0A0D0D0A, body)


def interface_description(linktype: int, snaplen: int, name: str) -> bytes:
    body = struct.pack("<HHI", linktype, 0, snaplen) + _options([(2, name.encode()), (9, bytes([9]))])
    return _block(1, body)


def enhanced_packet(time_ns: int, data: bytes, wirelen: int, comments: Sequence[str] = ()) -> bytes:
    pad = (-len(data)) % 4
    body = (struct.pack("<IIIII", 0, time_ns >> 32, time_ns & 0xFFFFFFFF, len(data), max(wirelen, len(data)))
            + data + b"\0" * pad + _options((1, c.encode()) for c in comments))
    return _block(6, body)


def where(call: Call) -> str:
    """'socket.py:836 create_connection ← smtplib.py:312 _get_socket ← ...', innermost first."""
    return " ← ".join(f"{f.file.rsplit('/', 1)[-1]}:{f.line} {f.function}" for f in reversed(call.frames))


def quote(value: str) -> str:
    """A key=value value: bare when it has no space, quote or backslash, else double-quoted and escaped."""
    if value and not any(ch in value for ch in ' "\\[]=') and value.isprintable():
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{escaped}"'


def fields(**pairs: object) -> str:
    """' [wirestack key=value ...]': lists repeat their key; None is left out."""
    out = []
    for key, value in pairs.items():
        for v in (value if isinstance(value, list) else [value]):
            if v is not None:
                out.append(f"{key}={quote(str(v))}")
    return " [wirestack " + " ".join(out) + "]"


def comment(call: Call, role: str, socket: int | None = None) -> str:
    outcome = (f"{errnos.name(call.errno)} ({call.errno})" if call.errno is not None
               else call.error if call.failed else "ok")
    verb = "sent by" if role == "sent" else "received by"
    thread = f" [thread {call.thread}]" if call.thread and call.thread != "MainThread" else ""
    frames = [f"{f.file.rsplit('/', 1)[-1]}:{f.line} {f.function}" for f in reversed(call.frames)]
    tail = fields(call=call.id, op=call.op, role=role, errno=call.errno,
                  errname=errnos.name(call.errno) if call.errno is not None else None,
                  socket=socket if socket is not None else (call.socket or None), thread=call.thread or None,
                  frame=frames)
    return f"{verb} {call.op}() → {outcome} at {where(call)}{thread}{tail}"


def packet_comments(report: Report, packet: Packet, calls: dict[int, Call],
                    events: dict[int, KernelEvent]) -> list[str]:
    out = []
    for pair in report.alignment.pairs_of(packet.id):
        if pair.call is not None:
            out.append(comment(calls[pair.call], pair.role, pair.socket))
        else:
            out.append(f"{'sent' if pair.side == 'out' else 'received'} by the kernel, no call of the program "
                       f"involved (socket {pair.socket})" + fields(role="kernel", socket=pair.socket))
    out += [f"kernel: {describe(events[k])}" for k in report.alignment.kernel_of_packet(packet.id)]
    return out


def blocks(report: Report, snaplen: int = 262144) -> Iterator[bytes]:
    trace = report.trace
    calls = {c.id: c for c in trace.calls}
    events = {e.id: e for e in trace.kernel}
    yield section_header(f"wirestack {__version__}", archive.option_values(trace))
    yield interface_description(trace.capture.linktype, snaplen, trace.capture.interface)
    for p in trace.packets:
        yield enhanced_packet(p.time_ns, p.raw, p.length, packet_comments(report, p, calls, events))
