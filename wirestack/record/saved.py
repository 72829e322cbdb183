"""A recording saved without its analysis, and read back: what an interrupted analysis leaves.

When the analysis of a run is interrupted (Ctrl-C, SIGTERM), wirestack has no time to pair and explain; it saves
within a second what it recorded — the frames of the program's flows and the probe's items as they were read —
and `wirestack read` of that file later runs the analysis the live run would have run (`commands.read`).

Which frames are the program's is decided by ports alone here (the pairing is what was interrupted): a frame is
kept when its two ports are the local and remote port of a call of the program (the pairing, interrupted, would
also have checked addresses and times: another program that used the same two ports during the run is kept
too; the resolver's own DNS traffic is not). The kernel layer is not saved: its text holds every process's events,
and sorting them out is part of the analysis.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..core.dissect import ports
from .capture import Frames
from .loader import Loader
from .runner import Client, Recording

MAX_ITEMS = 20_000_000  # items read back from a file: more is a damaged or hostile file
MAX_DEPTH = 16


def own_frames(rec: Recording) -> list[int]:
    """Indices of the frames whose ports are those of the program's calls."""
    pairs = rec.loader.ports
    keep = []
    for i, frame in enumerate(rec.frames.data):
        p = ports(frame, rec.linktype)
        if p is not None and (p in pairs or (p[1], p[0]) in pairs):
            keep.append(i)
    return keep


def recording_doc(rec: Recording) -> dict[str, Any]:
    """The recording as JSON-able data (tuples become lists), without its kernel layer."""
    c = rec.client
    return {"title": c.title, "shown": c.shown, "interface": rec.interface, "linktype": rec.linktype,
            "seen": rec.seen, "dropped": rec.dropped, "started_ns": rec.started_ns, "returncode": rec.returncode,
            "pid": rec.pid, "python": rec.python, "frameless": rec.frameless,
            "notes": [*rec.notes, "the run's analysis was interrupted: this file holds its packets (cut by the "
                      "program's ports) and the probe's records; the kernel layer was not saved"],
            "items": rec.loader.export()}


def _tuples(value: Any, depth: int = 0) -> Any:
    """JSON lists back to the tuples the loader expects (it checks everything else)."""
    if depth > MAX_DEPTH:
        raise ValueError("nested too deep")
    if isinstance(value, list):
        return tuple(_tuples(v, depth + 1) for v in value)
    return value  # dicts (the call's args, and the exception, note and process records) keep their lists


def _items(doc: dict[str, Any]) -> Iterator[Any]:
    items = doc.get("items")
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        raise ValueError("no items")
    for item in items:
        yield item if isinstance(item, dict) else _tuples(item)


def _text(value: Any, limit: int = 300) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _number(value: Any, lo: int = 0, hi: int = (1 << 63) - 1) -> int:
    return value if type(value) is int and lo <= value <= hi else 0


def recording_from(doc: dict[str, Any], frames: Frames) -> Recording:
    """A Recording from a saved document and the file's frames. Raises ValueError when it is unusable; every
    item goes through the probe's validating loader (a file is untrusted)."""
    loader = Loader()
    loader.feed(_items(doc))
    code = doc.get("returncode")
    notes = doc.get("notes")
    kept_notes = [n[:500] for n in notes[:100] if isinstance(n, str)] if isinstance(notes, list) else []
    if loader.bad:
        kept_notes.append(f"{loader.bad} saved records did not have the form the probe writes and were left out")
    return Recording(Client(_text(doc.get("title")) or "run", source=_text(doc.get("shown"), 2000)),
                     _text(doc.get("interface"), 64), frames, _number(doc.get("linktype"), 0, 0xFFFF),
                     _number(doc.get("seen")), _number(doc.get("dropped")), loader, _number(doc.get("started_ns")),
                     code if type(code) is int and -255 <= code <= 255 else None, _number(doc.get("pid"), 0, 1 << 31),
                     "", "kernel layer off: not saved (the analysis was interrupted)", kept_notes,
                     _text(doc.get("python"), 20), doc.get("frameless") is True)
