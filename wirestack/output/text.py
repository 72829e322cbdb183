"""Rendering a report as text with rich. Returns strings; printing is the CLI's business.

The traceback is drawn as Python prints it, each entry tagged with its layer and the packets produced below
it; under the frame where the failing call was made comes the kernel layer: the syscall with its result, the
errno's `#define`, and its packets. Then the other socket calls that touched the wire, then the explanation.
"""

from __future__ import annotations

import re
import signal
from io import StringIO

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..core import errnos
from ..core.kernel import describe
from ..core.layers import KERNEL, layer_of
from ..core.pairing import chain
from ..explain.explanation import duration, endpoint
from ..model import Call, ExceptionInfo, Frame, Packet
from ..report import Report

_LAYER_STYLE = {"program": "green", "application module": "cyan", "transport interface": "magenta",
                KERNEL: "bold red"}
_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"
MAX_PACKETS_SHOWN = 40


def ids(packets: tuple[int, ...] | list[int]) -> str:
    """'#1 #2 #3' or '#1-#40' for long runs of consecutive ids."""
    if not packets:
        return ""
    if len(packets) > 4 and list(packets) == list(range(packets[0], packets[0] + len(packets))):
        return f"#{packets[0]}-#{packets[-1]}"
    if len(packets) > 8:
        return " ".join(f"#{p}" for p in packets[:6]) + f" … ({len(packets)})"
    return " ".join(f"#{p}" for p in packets)


def address(addr: tuple[str, int] | None) -> str:
    return endpoint(*addr) if addr else "?"


def call_line(c: Call) -> str:
    """connect(127.0.0.1:464) → ECONNREFUSED (111)"""
    target = c.args.get("address")
    if c.op == "getaddrinfo":
        inside = f"{c.args.get('host')!r}, {c.args.get('port')!r}"
    elif c.op == "getsockopt":
        inside = str(c.args.get("option", ""))
    elif isinstance(target, list) and len(target) >= 2:  # IPv6: [host, port, flowinfo, scope_id]
        inside = endpoint(str(target[0]), int(target[1]))
    elif "bytes" in c.args:
        inside = f"{c.args['bytes']} bytes"
    elif "bufsize" in c.args:
        inside = str(c.args["bufsize"])
    else:
        inside = ""
    if c.errno is not None:
        outcome = f"{errnos.name(c.errno)} ({c.errno})"
    elif c.failed:
        outcome = c.error
    elif c.op in ("recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg"):
        outcome = f"{c.result} bytes" + (" (EOF)" if c.result == 0 else "")
    elif c.op in ("send", "sendto", "sendmsg") and isinstance(c.result, int):
        outcome = f"{c.result} bytes"
    elif c.op == "getaddrinfo" and isinstance(c.result, list):
        outcome = ", ".join(endpoint(str(r[2][0]), int(r[2][1])) for r in c.result if isinstance(r[2], list)) or "[]"
    elif c.op == "getsockopt":
        outcome = f"SO_ERROR = {c.result}" + (f" ({errnos.name(c.result)})" if c.result else "")
    else:
        outcome = "ok"
    return f"{c.op}({inside}) → {outcome}"


def offset(ns: int) -> str:
    """+14 µs after, or -230 µs before, the reference time."""
    return ("+" if ns >= 0 else "-") + duration(abs(ns))


def _flow_text(p: Packet) -> str:
    return f"{endpoint(p.src, p.sport)} → {endpoint(p.dst, p.dport)}" if p.sport or p.dport else f"{p.src} → {p.dst}"


def packet_text(p: Packet, flow_width: int = 0) -> str:
    """'127.0.0.1:40000 → 127.0.0.1:464  TCP S   seq=1000 len=0'"""
    if p.proto == "TCP":
        detail = f"{p.flags or '.':<3} seq={p.seq}" + (f" ack={p.ack}" if "A" in p.flags else "")
    elif p.icmp:
        detail = f"type {p.icmp[0]} code {p.icmp[1]}"
        if p.quoted:
            detail += f" quoting {p.quoted.proto} {endpoint(p.quoted.src, p.quoted.sport)} → " \
                      f"{endpoint(p.quoted.dst, p.quoted.dport)}"
    else:
        detail = ""
    app = f"  {p.app}" if p.app else ""
    return f"{_flow_text(p):<{flow_width}}  {p.proto:<4} {detail} len={len(p.payload)}{app}"


def _packet_table(report: Report, pids: tuple[int, ...], t0: int, call: Call) -> Table:
    """The call's packets and kernel events in time order: id, time from the call's start, direction, what."""
    table = Table.grid(padding=(0, 1))
    for _ in range(3):
        table.add_column(no_wrap=True, justify="right")
    table.add_column()
    shown = [report.packet(pid) for pid in pids[:MAX_PACKETS_SHOWN]]
    width = max((len(_flow_text(p)) for p in shown), default=0)
    rows: list[tuple[int, list[Text]]] = []
    for p in shown:
        incoming = any(x.side == "in" and x.call == call.id for x in report.alignment.pairs_of(p.id))
        style = "yellow" if "R" in p.flags or p.quoted else ""
        rows.append((p.time_ns, [Text(f"#{p.id}", style="bold"), Text(offset(p.time_ns - t0)),
                                 Text("←" if incoming else "→"), Text(packet_text(p, width), style=style)]))
    events = {e.id: e for e in report.trace.kernel}
    for kid in report.alignment.kernel_of_call(call.id):
        ev = events[kid]
        about = report.alignment.kernel[kid].packets
        text = describe(ev) + (f" [{ids(about)}]" if about else "")
        rows.append((ev.time_ns, [Text(f"k{kid}", style="dim"), Text(offset(ev.time_ns - t0)), Text("·"),
                                  Text(text, style="magenta")]))
    for _, row in sorted(rows, key=lambda r: r[0]):
        table.add_row(*row)
    if len(pids) > MAX_PACKETS_SHOWN:
        table.add_row(Text(""), Text(""), Text(""), Text(f"… {len(pids) - MAX_PACKETS_SHOWN} more packets",
                                                          style="dim"))
    return table


def _kernel_block(report: Report, call: Call) -> RenderableType:
    lines: list[RenderableType] = [Text.assemble(("  kernel  ", _LAYER_STYLE[KERNEL]), call_line(call),
                                                 (f"   in {duration(call.end_ns - call.start_ns)}", "dim"))]
    if call.errno is not None and call.errno in report.trace.errno_defines:
        lines.append(Text("          " + report.trace.errno_defines[call.errno], style="dim"))
    pids = report.alignment.packets_of_call(call.id)
    if pids or report.alignment.kernel_of_call(call.id):
        lines.append(Padding(_packet_table(report, pids, call.start_ns, call), (0, 0, 0, 10)))
    if not pids:
        lines.append(Text("          no packet of this call was captured", style="dim"))
    return Group(*lines)


def _exception_block(report: Report, exc: ExceptionInfo, origin: Call | None) -> RenderableType:
    rows: list[RenderableType] = [Text("Traceback (most recent call last):")]
    for f in exc.frames:
        layer = layer_of(f.file)
        rows.append(Text(f'  File "{f.file}", line {f.line}, in {f.function}'))
        line = Table.grid(padding=(0, 2), expand=True)
        line.add_column(ratio=1, overflow="ellipsis", no_wrap=True)
        line.add_column(no_wrap=True, justify="right")
        tag = Text.assemble((layer, _LAYER_STYLE.get(layer, "")), "  ",
                            (ids(report.alignment.packets_below(f.instance)) or "-", "bold"))
        line.add_row(Text(f"    {f.code}"), tag)
        rows.append(line)
    if origin is not None and exc.call == origin.id:
        rows.append(_kernel_block(report, origin))
    rows.append(Text(f"{exc.type}: {exc.message}" if exc.message else exc.type, style="bold red"))
    return Group(*rows)


WAITS = {11, 114, 115}  # EAGAIN, EALREADY, EINPROGRESS: a non-blocking socket waiting, not failing


def _stack_lines(frames: tuple[Frame, ...]) -> list[RenderableType]:
    rows: list[RenderableType] = []
    for f in frames:
        rows.append(Text(f'  File "{f.file}", line {f.line}, in {f.function}'))
        layer = layer_of(f.file)
        line = Table.grid(padding=(0, 2), expand=True)
        line.add_column(ratio=1, overflow="ellipsis", no_wrap=True)
        line.add_column(no_wrap=True, justify="right")
        line.add_row(Text(f"    {f.code}"), Text(layer, style=_LAYER_STYLE.get(layer, "")))
        rows.append(line)
    return rows


MAX_FAILED_SHOWN = 5
MAX_ALIKE_SHOWN = 3
MAX_ROWS_SHOWN = 20


def _failed_calls(report: Report, shown: Call | None, show_all: bool) -> list[RenderableType]:
    """Every failed call the traceback does not already show: its stack, the syscall and its packets; in a
    large run the first few in full and the rest counted."""
    failed = [c for c in report.trace.calls if c.failed and c.errno not in WAITS and c is not shown
              and c.op != "spawn"]
    parts: list[RenderableType] = []
    detailed = failed if show_all else failed[:MAX_FAILED_SHOWN]
    if len(detailed) < len(failed):
        counts: dict[str, int] = {}
        for c in failed[len(detailed):]:
            key = f"{c.op}() → {errnos.name(c.errno) if c.errno is not None else c.error}"
            counts[key] = counts.get(key, 0) + 1
        summary = ", ".join(f"{k} ×{n}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        parts += [Text(""), Text(f"{len(failed)} socket calls failed; the first {len(detailed)} follow, then "
                                 f"{summary} (--all shows each)", style="bold")]
    for c in detailed:
        pid = f", pid {c.pid}" if c.pid and report.trace.calls and c.pid != report.trace.calls[0].pid else ""
        parts += [Text(""), Text(f"{c.op}() failed (call {c.id}, thread {c.thread}{pid}), made from:", style="bold")]
        parts += _stack_lines(c.frames)
        parts.append(_kernel_block(report, c))
    return parts


def _other_calls(report: Report, skip: set[int], show_all: bool) -> RenderableType | None:
    shown = [c for c in report.trace.calls if c.id not in skip and report.alignment.packets_of_call(c.id)]
    if not shown:
        return None
    more = 0 if show_all else max(0, len(shown) - MAX_ROWS_SHOWN)
    if more:
        shown = shown[:MAX_ROWS_SHOWN]
    table = Table(title="Other socket calls that touched the wire", title_justify="left", box=None, padding=(0, 1),
                  show_header=True, header_style="bold")
    for name in ("call", "thread", "at", "packets"):
        table.add_column(name)
    for c in shown:
        where = c.frames[-1] if c.frames else None
        table.add_row(Text(call_line(c)), c.thread,
                      f"{where.file.rsplit('/', 1)[-1]}:{where.line} {where.function}" if where else "",
                      ids(report.alignment.packets_of_call(c.id)))
    if more:
        table.add_row(Text(f"… {more} more calls (--all shows each)", style="dim"), "", "", "")
    return table


def _flows(report: Report) -> RenderableType | None:
    """A large run in counts: packets and calls per socket, failing sockets first."""
    t = report.trace
    if len(t.packets) <= MAX_ROWS_SHOWN * 5:
        return None
    failed = {c.socket for c in t.calls if c.failed and c.errno not in WAITS}
    calls_of: dict[int, int] = {}
    for c in t.calls:
        calls_of[c.socket] = calls_of.get(c.socket, 0) + 1
    rows = []
    for sock, pids in report.alignment.socket_packets.items():
        first = report.packet(pids[0])
        rows.append((sock not in failed, -len(pids), sock, first, len(pids)))
    rows.sort()
    table = Table(title=f"{len(rows)} sockets, {len(t.packets)} packets, {len(t.calls)} calls: the busiest and "
                  "the failing", title_justify="left", box=None, padding=(0, 1), header_style="bold")
    for name in ("socket", "first packet's flow", "packets", "calls", "failed"):
        table.add_column(name)
    for ok, _, sock, first, n in rows[:MAX_ROWS_SHOWN]:
        table.add_row(str(sock), f"{first.proto} {endpoint(first.src, first.sport)} → "
                      f"{endpoint(first.dst, first.dport)}", str(n), str(calls_of.get(sock, 0)), "" if ok else "yes")
    if len(rows) > MAX_ROWS_SHOWN:
        table.add_row(Text(f"… {len(rows) - MAX_ROWS_SHOWN} more sockets", style="dim"), "", "", "", "")
    return table


def _application_layer(report: Report) -> RenderableType | None:
    """Packets with an application-layer meaning (tshark's), one line each."""
    labelled = [p for p in report.trace.packets if p.app]
    if not labelled:
        return None
    table = Table.grid(padding=(0, 1))
    for _ in range(3):
        table.add_column(no_wrap=True)
    for p in labelled[:MAX_PACKETS_SHOWN]:
        table.add_row(Text(f"  #{p.id}", style="bold"), f"{endpoint(p.src, p.sport)} → {endpoint(p.dst, p.dport)}",
                      Text(p.app, style="cyan"))
    if len(labelled) > MAX_PACKETS_SHOWN:
        table.add_row(Text(f"  … {len(labelled) - MAX_PACKETS_SHOWN} more", style="dim"), "", "")
    return Group(Text("Application layer (as tshark dissects it)", style="bold"), table)


def exit_line(code: int | None) -> str | None:
    if code is None:
        return None
    if code < 0:
        try:
            name = f" ({signal.Signals(-code).name})"
        except ValueError:
            name = ""
        return f"the program was killed by signal {-code}{name}"
    return f"the program exited with status {code}"


def report_renderable(report: Report, show_all: bool = False) -> RenderableType:
    t = report.trace
    cap = t.capture
    head = t.client.strip().splitlines()[-1] if t.client else ""
    parts: list[RenderableType] = [
        Text.assemble((f"wirestack {t.title}", "bold"), ": ", head),
        Text(f"captured on {cap.interface}: {cap.packets} packets of the program's flows "
             f"({cap.seen} seen, {cap.dropped} dropped by the kernel)", style="dim"),
    ]
    if t.kernel_off:
        parts.append(Text(t.kernel_off, style="dim"))
    status = exit_line(t.exit_code)
    usual = 1 if t.exception is not None else 0  # what python exits with anyway: not worth a line
    if status and t.exit_code != usual:
        parts.append(Text(status, style="dim"))
    parts.append(Text(""))
    origin = report.origin
    in_traceback: Call | None = None
    if t.exception is not None:
        exceptions = chain(t.exception)
        for i, e in enumerate(exceptions):
            if i:
                parts += [Text(""), Text(_CAUSE if e.cause is exceptions[i - 1] else _CONTEXT), Text("")]
            parts.append(_exception_block(report, e, origin))
        if origin is not None and any(e.call == origin.id for e in exceptions):
            in_traceback = origin
    else:
        parts.append(Text("no exception escaped"))
    parts += _failed_calls(report, in_traceback, show_all)
    skip = {c.id for c in t.calls if c.failed and c.errno not in WAITS}
    other = _other_calls(report, skip, show_all)
    if other is not None:
        parts += [Text(""), other]
    flows = None if show_all else _flows(report)
    if flows is not None:
        parts += [Text(""), flows]
    app = _application_layer(report)
    if app is not None:
        parts += [Text(""), app]
    if report.findings:
        bullets = Table.grid(padding=(0, 1))
        bullets.add_column(no_wrap=True)
        bullets.add_column(ratio=1)
        alike: dict[str, int] = {}
        for f in report.findings:
            shape = re.sub(r"\d+(\.\d+)?", "#", f.text)
            alike[shape] = alike.get(shape, 0) + 1
            if show_all or alike[shape] <= MAX_ALIKE_SHOWN:
                bullets.add_row("  •", f.text)
        for shape, n in alike.items():
            if not show_all and n > MAX_ALIKE_SHOWN:
                bullets.add_row("  •", Text(f"… and {n - MAX_ALIKE_SHOWN} more like “{shape[:60]}…” (--all shows "
                                            "each)", style="dim"))
        parts += [Text(""), Text("What the wire shows", style="bold"), bullets]
    for note in t.notes:
        parts.append(Text(f"note: {note}", style="dim"))
    return Group(*parts)


def render_text(report: Report, width: int = 100, color: bool = False, show_all: bool = False) -> str:
    """The report as text, `width` columns wide, with ANSI colours only when `color`; a large run is
    summarised unless `show_all`."""
    console = Console(file=StringIO(), width=width, color_system="standard" if color else None,
                      force_terminal=color, no_color=not color, highlight=False, emoji=False)
    console.print(report_renderable(report, show_all))
    text = str(console.file.getvalue())  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
