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


def load(path: str | Path, decode_app: bool = True, peer: str | Path | None = None) -> Loaded:
    """`peer`: the other end's capture of the same exchange, lined up with this one (`core.merge`)."""
    from .pipeline import check_facts

    trace, error = load_trace(path, decode_app)
    report = build_report(trace)
    if peer is not None:
        report = with_peer(report, Path(path).name, peer)
    check_facts(report)
    return Loaded(str(path), report, error)


def with_peer(report: Report, name: str, peer: str | Path) -> Report:
    """The report with what the peer's capture adds: the clocks' offset, and the packets one side sent that the
    other never saw. Raises `reader.ReadError` when PEER is no capture."""
    from ..core.merge import merge
    from ..explain.facts import ClockOffset, Fact, PeerUnseen

    cf = reader.load(peer)
    theirs = reader.plain_trace(cf, str(peer)).packets
    peer_name = Path(peer).name
    found = merge(report.trace.packets, theirs)
    new: list[Fact] = []
    if found is None:
        note = (f"the peer's capture {peer_name} holds none of this capture's packets (matched by sequence "
                "numbers, IP ids and payload): nothing to line up")
        trace = replace(report.trace, notes=(*report.trace.notes, note))
        return replace(report, trace=trace)
    here = {p.id: p for p in report.trace.packets}
    there = {p.id: p for p in theirs}
    first = min(found.pairs, key=lambda ab: here[ab[0]].time_ns)
    new.append(ClockOffset(this=name, peer=peer_name, offset_ns=found.offset_ns, delay_ns=found.delay_ns,
                           matched=len(found.pairs), both_ways=found.both_ways, peer_packets=len(theirs),
                           packets=tuple(a for a, _ in found.pairs[:12]), time_ns=here[first[0]].time_ns))
    if found.unseen_there:
        lost = [here[i] for i in found.unseen_there]
        new.append(PeerUnseen(direction="to the peer", peer=peer_name, count=len(lost), late=found.late_there,
                              senders=tuple(sorted({p.src for p in lost})), packets=tuple(p.id for p in lost[:64]),
                              time_ns=lost[0].time_ns))
    if found.unseen_here:
        gone = [there[i] for i in found.unseen_here]
        new.append(PeerUnseen(direction="from the peer", peer=peer_name, count=len(gone), late=found.late_here,
                              senders=tuple(sorted({p.src for p in gone})), peer_frames=tuple(p.id for p in gone[:64]),
                              time_ns=gone[0].time_ns - found.offset_ns))
    facts = tuple(sorted((*report.explanation.facts, *new), key=lambda f: f.time_ns))
    return replace(report, explanation=replace(report.explanation, facts=facts))
