"""pcapng export: packets with their kernel timestamps (nanosecond resolution) and per-packet comments.

Pure: `blocks()` yields the file as byte chunks, the caller writes them. Layout (pcapng, IETF draft):
Section Header Block, one Interface Description Block (link type, snap length, if_name, if_tsresol=9), then an
Enhanced Packet Block per packet, each with one opt_comment per pairing ("sent by connect() → ECONNREFUSED
(111) at socket.py:836 create_connection ← smtplib.py:312 _get_socket ← ..."). tshark shows them as
`frame.comment`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence

from . import __version__, errnos
from .kevents import describe
from .model import Call, KernelEvent, Packet
from .report import Report

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


def section_header(application: str) -> bytes:
    body = struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1) + _options([(4, application.encode())])
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


def comment(call: Call, role: str) -> str:
    outcome = (f"{errnos.name(call.errno)} ({call.errno})" if call.errno is not None
               else call.error if call.failed else "ok")
    verb = "sent by" if role == "sent" else "received by"
    thread = f" [thread {call.thread}]" if call.thread and call.thread != "MainThread" else ""
    return f"{verb} {call.op}() → {outcome} at {where(call)}{thread}"


def packet_comments(report: Report, packet: Packet, calls: dict[int, Call],
                    events: dict[int, KernelEvent]) -> list[str]:
    out = []
    for pair in report.alignment.pairs_of(packet.id):
        if pair.call is not None:
            out.append(comment(calls[pair.call], pair.role))
        else:
            out.append(f"{'sent' if pair.side == 'out' else 'received'} by the kernel, no call of the program "
                       f"involved (socket {pair.socket})")
    out += [f"kernel: {describe(events[k])}" for k in report.alignment.kernel_of_packet(packet.id)]
    return out


def blocks(report: Report, snaplen: int = 262144) -> Iterator[bytes]:
    trace = report.trace
    calls = {c.id: c for c in trace.calls}
    events = {e.id: e for e in trace.kernel}
    yield section_header(f"wirestack {__version__}")
    yield interface_description(trace.capture.linktype, snaplen, trace.capture.interface)
    for p in trace.packets:
        yield enhanced_packet(p.time_ns, p.raw, p.length, packet_comments(report, p, calls, events))
