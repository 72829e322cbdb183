"""A run's raw recording (frames, the probe's items, the kernel's trace text) as one `Trace`.

Call ids are given in time order (1, 2, ...) and sockets in order of appearance; packet ids are frame numbers of
the file wirestack writes. Only the packets of the traced program's flows are kept (`core.pairing`): other
traffic on the interface is read, counted in `seen`, and left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..core import admission, paths, unseen
from ..core import kernel as kernel_events
from ..core.chains import linked
from ..core.dissect import dissect
from ..core.pairing import Alignment, align, endpoints, index_endpoints, nearby
from ..model import Call, CaptureInfo, ExceptionInfo, KernelEvent, Packet, Process, Trace
from . import tracefs
from .capture import Frames
from .headers import defines
from .loader import BadItem, Loader, exception_from
from .runner import Client, Recording


def renumber(p: Packet, n: int) -> Packet:
    return Packet(n, p.time_ns, p.proto, p.src, p.dst, p.sport, p.dport, p.flags, p.seq, p.ack, p.length,
                  p.payload, p.icmp, p.quoted, p.raw, p.app, p.window, p.ttl, p.link, p.interface)


def select_packets(calls: Sequence[Call], frames: Frames, linktype: int) -> tuple[tuple[Packet, ...], Alignment]:
    """The traced flows' packets, decoded, with ids 1..N in capture order, and their alignment with the calls.
    The packets on the traced sockets' ports are numbered first and aligned once; only when some of them pair
    with no traced socket (another program's traffic on the same ports) are the rest renumbered and aligned
    again."""
    decoded = [dissect(i + 1, t, d, linktype, n)
               for i, (t, n, d) in enumerate(zip(frames.times, frames.lengths, frames.data, strict=True))]
    index = index_endpoints(endpoints(calls))
    near = [renumber(p, n) for n, p in enumerate(nearby(calls, decoded, index), 1)]
    alignment = align(calls, near, index=index)
    if len(alignment.packet_pairs) == len(near):
        return tuple(near), alignment
    kept = [renumber(p, n) for n, p in enumerate((p for p in near if p.id in alignment.packet_pairs), 1)]
    return tuple(kept), align(calls, kept, index=index)


def select_on_links(calls: Sequence[Call], frames: Frames, linktype: int) -> tuple[tuple[Packet, ...], Alignment]:
    """As `select_packets`, for a capture on several links (`frames.ifaces`): the program's own link (interface 0)
    is selected and paired; the other links add the copies of its packets and their flows (`core.paths`)."""
    ifaces = frames.ifaces or [0] * len(frames)
    decoded = [replace(dissect(i + 1, t, d, linktype, n), interface=k) for i, (t, n, d, k) in
               enumerate(zip(frames.times, frames.lengths, frames.data, ifaces, strict=True))]
    own = [p for p in decoded if not p.interface]
    index = index_endpoints(endpoints(calls))
    near = nearby(calls, own, index)
    kept = align(calls, near, index=index).packet_pairs
    packets = tuple(paths.select(kept, decoded))
    return packets, align(calls, [p for p in packets if not p.interface], index=index)


def build_trace(rec: Recording) -> Trace:
    return assemble(rec)[0]


def assemble(rec: Recording) -> tuple[Trace, Alignment]:
    """The trace of a recording, and its packets' alignment with its calls (for `report.build_report`, so that
    the pairing runs once)."""
    calls, new_id = rec.loader.calls()
    notes = list(rec.notes)
    exception = _exception(rec.loader, rec.pid, new_id, notes)
    notes += _probe_notes(rec.loader)
    if rec.links:
        packets, alignment = select_on_links(calls, rec.frames, rec.linktype)
    else:
        packets, alignment = select_packets(calls, rec.frames, rec.linktype)
    kernel: tuple[Any, ...] = ()
    if rec.kernel_text:
        events = tracefs.parse(rec.kernel_text)
        if rec.guarded:
            packets, alignment = _admitted(calls, rec, events, packets, alignment, notes)
        if unseen.unseen_notes(notes):  # calls the probe could not see: their flows as the kernel tells them
            more = _with_kernel_flows(calls, rec, events, packets)
            if more is not packets:
                packets, alignment = more, align(calls, more)
        kernel = tuple(kernel_events.select(events, calls, packets))
        if rec.links:  # where a packet died on its way: kfree_skb by time (see core.paths)
            have = {(e.time_ns, e.fields.get("skbaddr")) for e in kernel if e.event == "kfree_skb"}
            extra = [e for e in paths.drops(events, packets) if (e.time_ns, e.fields.get("skbaddr")) not in have]
            kernel = tuple(KernelEvent(i, e.time_ns, e.event, e.tid, e.fields, e.pid) for i, e in enumerate(
                sorted([*kernel, *extra], key=lambda e: e.time_ns), 1))
    elif rec.guarded and packets:
        notes.append("without the kernel layer, which connections are the program's rests on its own records "
                     "(a program could name another's; see docs/trust.md)")
    faults = {(c.fault.namespace, c.fault.code) for c in calls if c.fault is not None and c.fault.code is not None}
    faults |= {(e.fault.namespace, e.fault.code) for e in linked(exception)
               if e.fault is not None and e.fault.code is not None}
    faults |= {("errno", c.reported) for c in calls if c.reported}
    processes = _processes(rec.loader, calls, rec.pid)
    notes += _process_notes(processes, calls)
    info = CaptureInfo(rec.interface, None, len(packets), rec.seen, rec.dropped, rec.linktype, links=rec.links)
    return Trace(rec.client.title, rec.client.shown, packets, calls, exception, info, rec.started_ns,
                 _exit_code(rec.returncode), tuple(notes), defines(faults), kernel, rec.kernel_off,
                 tuple(processes), True, rec.python, rec.network), alignment


def _admitted(calls: Sequence[Call], rec: Recording, events: Sequence[Any], packets: tuple[Packet, ...],
              alignment: Alignment, notes: list[str]) -> tuple[tuple[Packet, ...], Alignment]:
    """The packets without the TCP connections the kernel shows none of the program's processes opening or
    accepting (`core.admission`), and their alignment."""
    evidence = admission.Evidence.of(events, admission.program_tasks(events, rec.pid))
    refused = set(admission.refused_flows(alignment.flows, alignment, packets, evidence))
    if any(f.proto == "UDP" for f in alignment.flows.flows):
        notes.append("UDP conversations are the program's by its own records: the kernel layer does not see "
                     "datagram calls (see docs/trust.md)")
    if not refused:
        return packets, alignment
    shown = sorted(f"{f.a[0]}:{f.a[1]} → {f.b[0]}:{f.b[1]}" for f in alignment.flows.flows if f.id in refused)
    notes.append(f"{len(refused)} TCP connection{'s' if len(refused) > 1 else ''} that the program's records "
                 f"name were left out, with their packets: the kernel saw none of its processes open or accept "
                 f"{'them' if len(refused) > 1 else 'it'} ({', '.join(shown[:5])}{' …' if len(shown) > 5 else ''})")
    kept = [renumber(p, n) for n, p in enumerate((p for p in packets if alignment.flows.of_packet.get(p.id)
                                                  not in refused), 1)]
    return tuple(kept), align(calls, kept)


def _probe_notes(loader: Loader) -> list[str]:
    """What the traced processes' probes noted (a runtime whose calls they cannot see), each once."""
    out: list[str] = []
    for r in loader.other:
        text = r.get("text")
        if r.get("kind") == "note" and isinstance(text, str) and text[:300] not in out and len(out) < 16:
            out.append(text[:300])
    return out


def _with_kernel_flows(calls: Sequence[Call], rec: Recording, events: Sequence[Any],
                       packets: tuple[Packet, ...]) -> tuple[Packet, ...]:
    """The packets kept, and those of the flows the kernel shows the traced processes' threads open (for calls the
    probe could not see), renumbered in capture order (`packets` itself when there are none)."""
    tids = {p for p in (rec.pid, *(r.get("pid") for r in rec.loader.other if r.get("kind") == "process"))
            if isinstance(p, int)} | {c.tid for c in calls}
    flows, listening, opening = unseen.kernel_flows(events, tids)
    if not flows and not listening and not opening:
        return packets
    decoded = [dissect(i + 1, t, d, rec.linktype, n)
               for i, (t, n, d) in enumerate(zip(rec.frames.times, rec.frames.lengths, rec.frames.data, strict=True))]
    extra = {p.id for p in unseen.of_flows(decoded, flows, listening, opening)}
    kept = {(p.time_ns, p.raw) for p in packets}
    chosen = [p for p in decoded if p.id in extra or (p.time_ns, p.raw) in kept]
    if len(chosen) == len(packets):
        return packets
    return tuple(renumber(p, n) for n, p in enumerate(chosen, 1))


def _exit_code(code: int | None) -> int | None:
    return code


def _exception(loader: Loader, pid: int, new_id: dict[int, int], notes: list[str]) -> ExceptionInfo | None:
    """The exception that escaped the main process (a child's is told in the notes)."""
    records = [r for r in loader.other if r.get("kind") == "exception"]
    main = next((r for r in records if r.get("pid") == pid), None)
    for r in records:
        if r is not main:
            notes.append(f"process {r.get('pid')} ended with an exception of its own: {str(r.get('type'))[:100]}")
    try:
        return exception_from(main, new_id)
    except (BadItem, KeyError, TypeError, ValueError):
        notes.append("the traced program's record of its exception was malformed and is left out")
        return None


def _processes(loader: Loader, calls: Sequence[Call], main: int) -> list[Process]:
    """The traced processes (each told the probe it runs), and the children started that never did."""
    out: dict[int, Process] = {}
    for r in loader.other:
        if r.get("kind") != "process":
            continue
        pid, parent = r.get("pid"), r.get("parent")
        if not isinstance(pid, int) or pid in out:
            continue
        raw = r.get("argv")
        argv = tuple(str(a)[:200] for a in raw[:32]) if isinstance(raw, list) else ()
        how = "main" if pid == main else str(r.get("how", ""))[:20]
        out[pid] = Process(pid, True, argv, parent if isinstance(parent, int) else 0, how)
    for c in calls:
        if c.op == "spawn" and isinstance(c.result, int) and c.result not in out:
            spawned = c.args.get("argv")
            shown = tuple(str(a)[:200] for a in spawned[:32]) if isinstance(spawned, list) else ()
            out[c.result] = Process(c.result, False, shown, c.pid, "subprocess")
    return sorted(out.values(), key=lambda p: (p.pid != main, p.pid))


def _process_notes(processes: Sequence[Process], calls: Sequence[Call]) -> list[str]:
    notes = []
    traced = [p for p in processes if p.traced and p.how != "main"]
    if traced:
        notes.append(f"{len(traced)} child process{'es' if len(traced) > 1 else ''} traced as well: "
                     + ", ".join(f"{p.pid} ({p.how})" for p in traced[:10]) + (" …" if len(traced) > 10 else ""))
    for p in processes:
        if not p.traced:
            shown = " ".join(" ".join(p.argv).split())[:120]  # one line: an argv may hold newlines (-c code)
            notes.append(f"child process {p.pid} (`{shown}`) was not traced: its socket calls are "
                         "not recorded and its packets are left out")
    for c in calls:
        if c.op == "spawn" and c.fault is not None:
            argv = c.args.get("argv")
            shown = " ".join(map(str, argv)) if isinstance(argv, list) else str(argv)
            notes.append(f"the program failed to start `{' '.join(shown.split())[:120]}`: {c.fault.line[:200]}")
    return notes


__all__ = ["Client", "assemble", "build_trace", "select_packets"]
