"""`wirestack read`: a capture file back to a report. The IO edge for reading (the file, tshark).

A wirestack pcapng gives back the very trace of its run (`reader.recorded_trace`), hence the same report as the
live run, text and JSON. Any other capture gives a `WireReport`: its flows and what the wire alone shows
(`wire_only`), with only the packets worth showing decoded, and their application layer (`app_layer`) when
tshark is installed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..explain.wire_only import summarise
from ..formats import reader
from ..formats.archive import ArchiveError
from ..output.wire_text import WireReport
from ..record import tshark
from ..report import Report, build_report


@dataclass(frozen=True)
class Loaded:
    path: str
    report: Report | None = None  # the file carried a wirestack trace
    wire: WireReport | None = None  # it did not (or the trace could not be read)
    error: str | None = None  # where the file broke, when it did

    def text(self, width: int = 100, color: bool = False) -> str:
        if self.report is not None:
            from ..output.text import render_text

            return render_text(self.report, width=width, color=color)
        assert self.wire is not None
        from ..output.wire_text import render_text as render_wire

        return render_wire(self.wire, width=width, color=color)

    def json(self) -> dict[str, Any]:
        if self.report is not None:
            from ..report import to_json

            return to_json(self.report)
        assert self.wire is not None
        from ..output.wire_text import to_json as wire_json

        return wire_json(self.wire)


def load(path: str | Path, decode_app: bool = True) -> Loaded:
    """Read `path`. Raises `reader.ReadError` when it is no capture at all."""
    cf = reader.load(path)
    notes: list[str] = []
    if cf.error:
        notes.append(f"the file is {cf.error}: what comes before is shown")
    try:
        trace = reader.recorded_trace(cf)
    except ArchiveError as exc:
        trace = None
        notes.append(f"the file carries a wirestack trace that cannot be read ({exc}): showing the wire alone")
    if trace is not None:
        if notes:
            trace = replace(trace, notes=(*trace.notes, *notes))
        return Loaded(str(path), report=build_report(trace), error=cf.error)
    summary = summarise(cf)
    packets = [cf.packet(pid) for pid in summary.shown]
    if decode_app:
        labels, note = tshark.decode(packets, [cf.links[pid - 1] for pid in summary.shown])
        packets = [replace(p, app=labels.get(p.id, "")) for p in packets]
        if note:
            notes.append(note)
    wire = WireReport(str(path), cf.format, tuple(cf.linktypes), summary, tuple(packets), tuple(notes),
                      cf.application)
    return Loaded(str(path), wire=wire, error=cf.error)
