"""`wirestack read`: a capture file back to a report. The IO edge for reading (the file, tshark).

A wirestack pcapng gives back the very trace of its run (`formats.reader.recorded_trace`), hence the same report
as the live run, text and JSON. Any other capture becomes a trace of packets only, and the same rules find in it
what the wire alone shows; its payloads' application layer comes from tshark when it is installed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..formats import reader
from ..formats.archive import ArchiveError
from ..model import Trace
from ..record import assemble, saved, tshark
from ..record.capture import Frames
from ..report import Report, build_report


@dataclass(frozen=True)
class Loaded:
    path: str
    report: Report
    error: str | None = None  # where the file broke, when it did


def load_trace(path: str | Path, decode_app: bool = True) -> tuple[Trace, str | None]:
    """Read `path` into a Trace. Raises `reader.ReadError` when it is no capture at all."""
    cf = reader.load(path)
    notes: list[str] = []
    restored = False
    try:
        trace = reader.recorded_trace(cf)
        if trace is None:
            trace = _from_recording(cf, str(path))
            restored = trace is not None
    except ArchiveError as exc:
        trace = None
        notes.append(f"the file carries a wirestack trace that cannot be read ({exc}): showing the wire alone")
    if trace is not None and not restored:
        if cf.error:
            notes.append(f"the file is {cf.error}: what comes before is shown")
    else:
        if trace is None:
            trace = reader.plain_trace(cf, str(path))
        elif cf.error:
            notes.append(f"the file is {cf.error}: what comes before is shown")
        if decode_app:
            packets, note = tshark.label_trace(trace.packets)
            trace = replace(trace, packets=packets)
            if note:
                notes.append(note)
    if notes:
        trace = replace(trace, notes=(*trace.notes, *notes))
    return trace, cf.error


def _from_recording(cf: reader.CaptureFile, path: str) -> Trace | None:
    """The trace of a run whose analysis was interrupted (`record.saved`): analysed now, as it would have been."""
    doc = reader.saved_recording(cf)
    if doc is None:
        return None
    frames = Frames([cf.times[i] for i in range(len(cf))], [cf.wirelens[i] for i in range(len(cf))],
                    [cf.raw(i + 1) for i in range(len(cf))])
    try:
        recording = saved.recording_from(doc, frames)
    except (ValueError, TypeError) as exc:
        raise ArchiveError(f"its saved recording is damaged ({exc})") from None
    trace = assemble.build_trace(recording)
    return replace(trace, capture=replace(trace.capture, file=path))


def load(path: str | Path, decode_app: bool = True) -> Loaded:
    from .pipeline import check_facts

    trace, error = load_trace(path, decode_app)
    report = build_report(trace)
    check_facts(report)
    return Loaded(str(path), report, error)
