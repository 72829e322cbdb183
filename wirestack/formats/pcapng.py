"""pcapng blocks, written: bytes only, no knowledge of reports (the annotation is `output.annotate`'s).

Layout (pcapng, IETF draft): Section Header Block (shb_userappl, and wirestack's trace in custom options, see
`archive`), Interface Description Blocks (link type, snap length, if_name, if_description, if_tsresol=9:
nanoseconds; one per link of a capture on several links), then one Enhanced Packet Block per packet, each with its
interface id and its opt_comment options.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

BYTE_ORDER_MAGIC = 0x1A2B3C4D
SHB, IDB, EPB = 0x0A0D0D0A, 1, 6
OPT_END, OPT_COMMENT, SHB_USERAPPL, IF_NAME, IF_DESCRIPTION, IF_TSRESOL = 0, 1, 4, 2, 3, 9
CUSTOM_COPYABLE = 2989  # a custom binary option that tools may copy (see archive)
_HEAD = struct.Struct("<HH")
_EPB = struct.Struct("<IIIIIII")


def option(code: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError("a pcapng option holds at most 65,535 bytes")
    return _HEAD.pack(code, len(value)) + value + b"\0" * ((-len(value)) % 4)


def options(opts: Iterable[tuple[int, bytes]]) -> bytes:
    body = b"".join(option(code, value) for code, value in opts)
    return body + _HEAD.pack(OPT_END, 0) if body else b""


def block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def section_header(application: str, custom: Sequence[bytes] = ()) -> bytes:
    """`custom`: values of custom options (code 2989), each starting with its PEN."""
    opts = [(SHB_USERAPPL, application.encode())] + [(CUSTOM_COPYABLE, value) for value in custom]
    return block(SHB, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + options(opts))


def interface_description(linktype: int, snaplen: int, name: str, description: str = "") -> bytes:
    opts = [(IF_NAME, name.encode()[:255])] + ([(IF_DESCRIPTION, description.encode()[:1000])] if description else [])
    body = struct.pack("<HHI", linktype, 0, snaplen) + options([*opts, (IF_TSRESOL, bytes([9]))])
    return block(IDB, body)


def enhanced_packet(time_ns: int, data: bytes, wirelen: int, comments: Sequence[str] = (), interface: int = 0) -> bytes:
    """One EPB. Built in one piece (header, data, padding, options, trailer): this runs once per packet."""
    pad = b"\0" * ((-len(data)) % 4)
    opts = b""
    if comments:
        parts = []
        for c in comments:
            raw = c.encode("utf-8", "replace")[:0xFFFF]
            parts.append(_HEAD.pack(OPT_COMMENT, len(raw)) + raw + b"\0" * ((-len(raw)) % 4))
        opts = b"".join(parts) + b"\0\0\0\0"
    length = 32 + len(data) + len(pad) + len(opts)
    t = time_ns & 0xFFFFFFFFFFFFFFFF
    return b"".join((_EPB.pack(EPB, length, interface, t >> 32, t & 0xFFFFFFFF, len(data), max(wirelen, len(data))),
                     data, pad, opts, struct.pack("<I", length)))
