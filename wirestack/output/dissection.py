"""`wirestack read FILE --packet N`: chosen packets shown whole, layer by layer, as scapy decodes them, each with
the Python call it is paired with. Pure but for scapy's import, which only this pays (~0.2 s): the report's
packet lines come from the `struct` decoder (`core.dissect`), so `wirestack smtp` never imports scapy.

Every value scapy prints comes from the file and goes through `sanitize.clean`; a frame scapy cannot decode is
said to be so, in one line, and the others are still shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..core.layers import PROGRAM, layer_of
from ..model import Packet
from ..report import Report
from .sanitize import clean
from .text import call_line, packet_text

MAX_PACKETS = 256  # one command shows at most this many
_LOAD_BYTES = 32  # of a payload, shown as bytes


class SelectionError(ValueError):
    """A --packet value that names no packet of the file."""


def selection(spec: Sequence[str], count: int) -> list[int]:
    """'3', '9-12', '3,5,9-12' (and repeated options) as packet ids, in order, each once."""
    out: dict[int, None] = {}
    for part in (p.strip() for s in spec for p in s.split(",")):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise SelectionError(f"--packet takes numbers and ranges such as 3 or 9-12, not {clean(part, 40)!r}")
        first, last = int(low), int(high or low)
        if not 1 <= first <= last <= count:
            raise SelectionError(f"no packet #{part} in the file: it holds {count} (#1 to #{count})" if count
                                 else "the file holds no packet")
        for pid in range(first, min(last, first + MAX_PACKETS) + 1):
            out[pid] = None
        if len(out) > MAX_PACKETS:
            raise SelectionError(f"--packet shows at most {MAX_PACKETS} packets at once")
    return list(out)


def missing_scapy() -> str | None:
    """Why scapy cannot be used here (one line), or None when it can."""
    try:
        from scapy.layers import dns, inet, inet6, l2  # noqa: F401  (registers their layers with scapy)
    except ImportError as exc:
        return f"--packet decodes with scapy, which this Python cannot import ({exc.name or exc}): pip install scapy"
    return None


def _scapy_layers(p: Packet) -> list[tuple[str, list[tuple[str, str]]]] | str:
    """[(layer name, [(field, value as scapy writes it)])], or why scapy could not decode the frame."""
    from scapy.config import conf
    from scapy.fields import ConditionalField
    from scapy.layers import dns, inet, inet6, l2  # noqa: F401  (registers their layers with scapy)
    from scapy.packet import Raw

    cls = conf.l2types.num2layer.get(p.link)
    if cls is None:
        return f"scapy has no decoder for link type {p.link}"
    try:
        frame = cls(p.raw)
        layers: list[tuple[str, list[tuple[str, str]]]] = []
        layer: Any = frame
        while layer is not None and len(layers) < 32:
            if isinstance(layer, Raw):
                load = bytes(layer.load)
                more = f" … ({len(load)} bytes)" if len(load) > _LOAD_BYTES else ""
                layers.append((layer.name, [("load", repr(load[:_LOAD_BYTES]) + more)]))
            else:
                fields = [(f.name, f.i2repr(layer, layer.getfieldval(f.name))) for f in layer.fields_desc
                          if not isinstance(f, ConditionalField) or f._evalcond(layer)]  # as scapy's show()
                layers.append((layer.name, fields))
            nxt = layer.payload
            layer = nxt if nxt is not None and len(nxt.fields_desc) + len(bytes(nxt)) > 0 else None
        return layers
    except (Exception, RecursionError) as exc:  # noqa: BLE001  (a hostile frame: say so, show the others)
        return f"scapy could not decode it: {type(exc).__name__}"


def dissection_text(report: Report, ids: Iterable[int], width: int = 100) -> str:
    """The chosen packets: wirestack's line, where it was seen, its calls, then scapy's layers."""
    packets = {p.id: p for p in report.trace.packets}
    calls = {c.id: c for c in report.trace.calls}
    links = report.trace.capture.links
    start = report.trace.packets[0].time_ns if report.trace.packets else 0
    out: list[str] = []
    for pid in ids:
        p = packets[pid]
        where = f"  on {clean(links[p.interface], 80)}" if 0 <= p.interface < len(links) and len(links) > 1 else ""
        out.append(f"#{pid}  +{(p.time_ns - start) / 1e9:.6f} s{where}  {clean(packet_text(p), 400)}")
        for pair in report.alignment.pairs_of(pid):
            c = calls.get(pair.call) if pair.call is not None else None
            if c is None:
                did = "sent" if pair.side == "out" else "took"
                out.append(f"  socket {pair.socket}: the kernel {did} it, in no call of the program")
                continue
            frame = next((f for f in reversed(c.frames) if layer_of(f.file) == PROGRAM), None) or \
                (c.frames[-1] if c.frames else None)
            at = f" at {clean(frame.file, 200)}:{frame.line} in {clean(frame.function, 80)}" if frame else ""
            out.append(f"  {pair.role}: call {c.id} {clean(call_line(c), 200)}{at}")
        layers = _scapy_layers(p)
        if isinstance(layers, str):
            out.append(f"  {layers}")
        else:
            for name, fields in layers:
                out.append(_wrap(f"  {clean(name, 60)}", [f"{clean(k, 40)}={clean(v, 160)}" for k, v in fields],
                                 width))
        out.append("")
    return "\n".join(out)


def _wrap(head: str, items: list[str], width: int) -> str:
    """HEAD then the items, wrapped under one another at WIDTH (below HEAD when it is a long layer name)."""
    if len(head) > 24:
        lines, line, indent = [head], "     ", "     "
    else:
        indent = " " * max(len(head) + 1, 12)
        lines, line = [], head.ljust(len(indent) - 1)
    for item in items:
        if len(line) + 1 + len(item) > width and line.strip() and line.strip() != head.strip():
            lines.append(line)
            line = indent + item
        else:
            line += " " + item
    lines.append(line)
    return "\n".join(x for x in lines if x.strip())
