"""The report of a capture without a wirestack trace: its flows, the packets worth showing, and what the wire
alone shows. Building is pure; `render_text` returns text and `to_json` plain data (layout in README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from io import StringIO
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from .. import __version__
from ..core.pairing import Alignment
from ..explain.wire_only import MAX_FLOWS_SHOWN, Flow, Summary, flow_line
from ..model import Packet
from ..report import SCHEMA, _packet
from .text import _flow_text, offset, packet_text

LINKTYPES = {0: "BSD loopback", 1: "Ethernet", 101: "raw IP", 108: "OpenBSD loopback", 113: "Linux cooked",
             228: "IPv4", 229: "IPv6", 276: "Linux cooked v2"}
NO_TRACE = "no wirestack trace in this file: packets and what the wire alone shows, nothing about calls or frames"


@dataclass(frozen=True)
class WireReport:
    file: str
    format: str  # "pcap" or "pcapng"
    linktypes: tuple[int, ...]
    summary: Summary
    packets: tuple[Packet, ...]  # the shown ones, decoded
    notes: tuple[str, ...] = ()
    application: str = ""  # the program that wrote the file, when it says


def linktype_name(link: int) -> str:
    return LINKTYPES.get(link, f"link type {link}")


def _flow(f: Flow) -> dict[str, Any]:
    return {"proto": f.proto, "client": list(f.client), "server": list(f.server), "packets": f.packets,
            "bytes": f.bytes, "first": f.first, "last": f.last, "start_ns": f.start_ns, "end_ns": f.end_ns,
            "attempts": f.attempts, "refused": f.refused, "reset": f.reset, "unanswered": f.unanswered,
            "retransmits": f.retransmits, "icmp_errors": f.icmp_errors, "outcome": f.outcome or None}


def to_json(w: WireReport) -> dict[str, Any]:
    s = w.summary
    empty = Alignment(())
    return {
        "wirestack": __version__, "schema": SCHEMA, "kind": "wire", "title": w.file, "client": None,
        "exit_code": None,
        "capture": {"interface": None, "file": w.file, "format": w.format, "writer": w.application or None,
                    "linktypes": list(w.linktypes), "packets": s.packets, "shown": len(w.packets),
                    "flows": len(s.flows), "other": dict(s.other)},
        "packets": [_packet(p, empty) for p in w.packets],
        "flows": [_flow(f) for f in s.flows],
        "calls": [], "exception": None,
        "explanation": [{"text": f.text, "packets": list(f.packets)} for f in s.findings],
        "notes": list(w.notes),
    }


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def report_renderable(w: WireReport) -> RenderableType:
    s = w.summary
    links = ", ".join(linktype_name(x) for x in w.linktypes) or "no packets"
    parts: list[RenderableType] = [
        Text.assemble(("wirestack read", "bold"), f" {w.file}: {_count(s.packets, 'packet')} ({w.format}, {links})"),
        Text(NO_TRACE, style="dim"),
        Text(""),
    ]
    if s.flows:
        failed = sum(1 for f in s.flows if f.failed)
        head = f"Flows: {s.flows.__len__():,}" + (f", {failed:,} with failures (listed first)" if failed else "")
        parts.append(Text(head, style="bold"))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        for f in s.flows[:MAX_FLOWS_SHOWN]:
            grid.add_row(Text("  " + flow_line(f), style="yellow" if f.failed else ""))
        rest = s.flows[MAX_FLOWS_SHOWN:]
        if rest:
            kinds: dict[str, int] = {}
            for f in rest:
                kinds[f.outcome or "no failure"] = kinds.get(f.outcome or "no failure", 0) + 1
            grid.add_row(Text("  … " + _count(len(rest), "more flow") + ": "
                              + ", ".join(f"{v:,} {k}" for k, v in kinds.items()), style="dim"))
        parts.append(grid)
    if s.other:
        parts.append(Text("  other packets: " + ", ".join(f"{v:,} {k}" for k, v in sorted(s.other.items())),
                          style="dim"))
    if w.packets:
        what = ("" if len(w.packets) == s.packets
                else f" ({len(w.packets):,} of {s.packets:,}: those the findings below rest on)")
        parts += [Text(""), Text("Packets" + what, style="bold")]
        table = Table.grid(padding=(0, 1))
        for i in range(3):
            table.add_column(no_wrap=True, justify="left" if i == 2 else "right")
        width = max((len(_flow_text(p)) for p in w.packets), default=0)
        for p in w.packets:
            style = "yellow" if "R" in p.flags or p.quoted else ""
            table.add_row(Text(f"  #{p.id}", style="bold"), Text(offset(p.time_ns - s.start_ns)),
                          Text(packet_text(p, width), style=style))
        parts.append(table)
    if s.findings:
        bullets = Table.grid(padding=(0, 1))
        bullets.add_column(no_wrap=True)
        bullets.add_column(ratio=1)
        for finding in s.findings:
            bullets.add_row("  •", finding.text)
        parts += [Text(""), Text("What the wire shows", style="bold"), bullets]
    elif s.packets:
        parts += [Text(""), Text("What the wire shows", style="bold"),
                  Text("  no refusal, reset, unanswered SYN, ICMP error or retransmission was captured")]
    for note in w.notes:
        parts.append(Text(f"note: {note}", style="dim"))
    return Group(*parts)


def render_text(w: WireReport, width: int = 100, color: bool = False) -> str:
    console = Console(file=StringIO(), width=width, color_system="standard" if color else None,
                      force_terminal=color, no_color=not color, highlight=False, emoji=False)
    console.print(report_renderable(w))
    text = str(console.file.getvalue())  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
