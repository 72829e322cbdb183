"""Pictures of a report: SVG and HTML. Pure: each function returns the document as a string.

Both show the report as the terminal does (the same lines, coloured by layer), then a **ladder diagram**: a
lifeline for the client (the traced program, or the side that opened the flow when the file has no trace) and
one for each peer, each packet an arrow with its number, TCP flags (or protocol), time since the first packet
and application-layer meaning; beside each arrow, the Python frame and the call that produced or received it
(for a file without a trace: nothing, since the wire alone cannot tell).

    render_svg(report) -> str     a standalone SVG (valid XML)
    render_html(report) -> str    an HTML page: the text report and the ladder as inline SVG
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape as html_escape
from io import StringIO
from xml.sax.saxutils import escape

from rich.console import Console, RenderableType
from rich.segment import Segment

from ..explain.wording import duration, endpoint, flag_name
from ..model import Packet
from ..report import Report
from .sanitize import clean

MAX_ARROWS = 200
MAX_PEERS = 4
CHAR_W, LINE_H, ROW_H = 7.2, 16, 38
FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
_COLOURS = {"green": "#2e7d32", "cyan": "#00838f", "magenta": "#8e24aa", "red": "#c62828", "yellow": "#a66a00",
            "blue": "#1565c0", "white": "#222222", "black": "#222222", "default": "#222222"}


@dataclass(frozen=True)
class Arrow:
    packet: int
    left_to_right: bool
    peer: int  # index of the peer lifeline (1..)
    label: str  # "#1 SYN  +41 µs"
    app: str
    frame: str  # "socket.py:836 create_connection" or ""
    call: str  # "connect(127.0.0.1:464) → ECONNREFUSED (111)" or ""
    origin: int = 0  # the other lifeline it joins (a network's hosts: the link's other end)


@dataclass(frozen=True)
class Ladder:
    lifelines: tuple[str, ...]  # client first
    arrows: tuple[Arrow, ...]
    left_out: int = 0  # packets not drawn (past MAX_ARROWS)


def _clean(text: str) -> str:
    """Only characters XML 1.0 allows, and no control character (labels from data can hold anything)."""
    return clean(text)


def _what(p: Packet) -> str:
    if p.proto == "TCP":
        return flag_name(p.flags) if p.flags else "TCP"
    if p.icmp is not None:
        return f"{p.proto} {p.icmp[0]}/{p.icmp[1]}"
    return p.proto + (f" {len(p.payload)} B" if p.payload else "")


def _ep(host: str, port: int) -> str:
    return endpoint(host, port) if port else host


def ladder(report: Report) -> Ladder:
    """Who talks to whom, packet by packet. Pure. A capture on several links of a network lab: one lifeline per
    host, each packet drawn on the link it was seen on (`host_ladder`)."""
    by_host = host_ladder(report)
    if by_host is not None:
        return by_host
    packets = list(report.trace.packets)
    calls = {c.id: c for c in report.trace.calls}
    traced = report.trace.traced
    if not packets:
        return Ladder(("client",), ())
    t0 = packets[0].time_ns
    client_eps: list[str] = []
    peers: list[str] = []
    rows: list[tuple[Packet, bool, str, str, str]] = []
    starters = _initiators(packets)
    for p in packets[:MAX_ARROWS]:
        src, dst = _ep(p.src, p.sport), _ep(p.dst, p.dport)
        frame = call_text = ""
        if traced:
            pairs = report.alignment.pairs_of(p.id)
            out = next((x for x in pairs if x.side == "out"), None)
            outgoing = out is not None or not pairs
            pair = out or (pairs[0] if pairs else None)
            if pair is not None and pair.call is not None and pair.call in calls:
                from .text import call_line

                c = calls[pair.call]
                inner = c.frames[-1] if c.frames else None
                frame = f"{inner.file.rsplit('/', 1)[-1]}:{inner.line} {inner.function}" if inner else ""
                call_text = call_line(c)
            elif pair is not None:
                call_text = "the kernel, no call of the program"
        else:
            outgoing = p.quoted is None and ((p.src, p.sport) in starters or (p.dst, p.dport) not in starters)
        mine, theirs = (src, dst) if outgoing else (dst, src)
        if p.quoted is not None and not outgoing:
            mine = _ep(p.quoted.src, p.quoted.sport)
            theirs = p.src
        if mine not in client_eps:
            client_eps.append(mine)
        if theirs not in peers:
            peers.append(theirs)
        rows.append((p, outgoing, theirs, frame, call_text))
    shown_peers = peers[: MAX_PEERS - 1] if len(peers) > MAX_PEERS else peers
    lifelines = [_client_label(client_eps, traced)] + [f"peer {x}" for x in shown_peers]
    if len(peers) > len(shown_peers):
        lifelines.append(f"{len(peers) - len(shown_peers)} other peers")
    arrows = []
    for p, outgoing, theirs, frame, call_text in rows:
        peer = shown_peers.index(theirs) + 1 if theirs in shown_peers else len(lifelines) - 1
        label = f"#{p.id} {_what(p)}  +{duration(p.time_ns - t0)}"
        arrows.append(Arrow(p.id, outgoing, peer, _clean(label), _clean(p.app), _clean(frame), _clean(call_text)))
    return Ladder(tuple(_clean(x) for x in lifelines), tuple(arrows), max(0, len(packets) - MAX_ARROWS))


def host_ladder(report: Report) -> Ladder | None:
    """The hosts of a network lab as lifelines, in path order (client, router, server), each packet an arrow
    between the two ends of the link it was captured on, from the end whose MAC address sent it: a packet the
    router forwarded is drawn twice, once per link, and one it stopped ends at the router. None when the capture
    is not of a network whose links and MACs the trace recorded."""
    t = report.trace
    taps = [x for x in t.network.get("taps", []) if isinstance(x, dict)] if t.capture.links else []
    links = [x for x in t.network.get("links", []) if isinstance(x, dict)]
    if not taps or not links or len(taps) != len(t.capture.links):
        return None
    order: list[str] = []
    for tap in taps:
        for host in tap.get("link") or []:
            if isinstance(host, str) and host not in order:
                order.append(host)
    macs: dict[tuple[str, str], str] = {}  # (host, peer host on the link) -> MAC of host's end
    for link in links:
        ends = [e for e in link.get("ends", []) if isinstance(e, dict)]
        if len(ends) == 2:
            for a, b in (ends, ends[::-1]):
                macs[(str(a.get("host")), str(b.get("host")))] = str(a.get("mac", "")).lower()
    if len(order) < 2:
        return None
    calls = {c.id: c for c in t.calls}
    packets = list(t.packets)
    t0 = packets[0].time_ns if packets else 0
    arrows = []
    for p in packets[:MAX_ARROWS]:
        tap = taps[p.interface] if p.interface < len(taps) else taps[0]
        hosts = [str(h) for h in tap.get("link") or [] if h in order]
        if len(hosts) != 2:
            continue
        src_mac = ":".join(f"{b:02x}" for b in p.raw[6:12]) if len(p.raw) >= 14 else ""
        sender, receiver = hosts if macs.get((hosts[0], hosts[1])) == src_mac or \
            macs.get((hosts[1], hosts[0])) != src_mac else hosts[::-1]
        ia, ib = order.index(sender), order.index(receiver)
        frame = call_text = ""
        pair = next((x for x in report.alignment.pairs_of(p.id) if x.call is not None and x.call in calls), None)
        if pair is not None and pair.call is not None:
            from .text import call_line

            c = calls[pair.call]
            inner = c.frames[-1] if c.frames else None
            frame = f"{inner.file.rsplit('/', 1)[-1]}:{inner.line} {inner.function}" if inner else ""
            call_text = call_line(c)
        label = f"#{p.id} {_what(p)}  +{duration(p.time_ns - t0)}"
        arrows.append(Arrow(p.id, ia < ib, max(ia, ib), _clean(label), _clean(p.app), _clean(frame),
                            _clean(call_text), origin=min(ia, ib)))
    client = str(t.network.get("client", ""))
    names = [f"{h} (traced)" if h == client else h for h in order]
    return Ladder(tuple(_clean(x) for x in names), tuple(arrows), max(0, len(packets) - MAX_ARROWS))


def _initiators(packets: Sequence[Packet]) -> set[tuple[str, int]]:
    """Endpoints that opened a flow: sent a SYN, or the first datagram of a flow. For files without a trace."""
    out: set[tuple[str, int]] = set()
    seen: set[frozenset[tuple[str, int]]] = set()
    for p in packets:
        if p.proto not in ("TCP", "UDP"):
            continue
        key = frozenset({(p.src, p.sport), (p.dst, p.dport)})
        if p.proto == "TCP" and "S" in p.flags and "A" not in p.flags:
            out.add((p.src, p.sport))
            seen.add(key)
        elif key not in seen:
            seen.add(key)
            if p.proto == "TCP" and "S" in p.flags:  # SYN/ACK first: the other side opened it
                out.add((p.dst, p.dport))
            else:
                out.add((p.src, p.sport))
    return out


def _client_label(eps: list[str], traced: bool) -> str:
    who = "traced" if traced else "client"
    if len(eps) == 1:
        return f"{who} {eps[0]}"
    hosts = sorted({e.rsplit(":", 1)[0] for e in eps})
    return f"{who} {', '.join(hosts)} ({len(eps)} endpoints)" if eps else who


# --- drawing ---------------------------------------------------------------------------------------------------

def _renderable(report: Report) -> RenderableType:
    from .text import renderable

    return renderable(report)


def styled_lines(report: Report, width: int = 100) -> list[list[tuple[str, str, bool]]]:
    """The terminal report as lines of (text, colour, bold) runs."""
    console = Console(file=StringIO(), width=width, color_system="standard", force_terminal=True, highlight=False,
                      markup=False, emoji=False, force_jupyter=False)
    lines = console.render_lines(_renderable(report), console.options.update(width=width), pad=False)
    out: list[list[tuple[str, str, bool]]] = []
    for line in lines:
        runs: list[tuple[str, str, bool]] = []
        for seg in Segment.simplify(line):
            if not seg.text:
                continue
            style = seg.style
            colour = style.color.name if style is not None and style.color is not None else "default"
            if style is not None and style.dim:
                colour = "dim"
            runs.append((seg.text, colour, bool(style and style.bold)))
        while runs and not runs[-1][0].strip():
            runs.pop()
        out.append(runs)
    while out and not out[-1]:
        out.pop()
    return out


def _fill(colour: str) -> str:
    if colour == "dim":
        return "#777777"
    return _COLOURS.get(colour.replace("bright_", ""), "#222222")


def _text_block(lines: list[list[tuple[str, str, bool]]], x: float, y: float) -> tuple[list[str], float]:
    out = []
    for line in lines:
        spans = []
        for text, colour, bold in line:
            weight = ' font-weight="bold"' if bold else ""
            spans.append(f'<tspan fill="{_fill(colour)}"{weight}>{escape(_clean(text))}</tspan>')
        out.append(f'<text x="{x:.0f}" y="{y:.0f}" xml:space="preserve">{"".join(spans)}</text>')
        y += LINE_H
    return out, y


def ladder_svg(lad: Ladder, x0: float = 20, y0: float = 0, traced: bool = True) -> tuple[list[str], float, float]:
    """SVG elements of the ladder (from y0), its height and width."""
    left_w = 360 if traced else 0
    gap = 230
    first = x0 + left_w + max(90.0, len(lad.lifelines[0]) * CHAR_W / 2 + 10) if lad.lifelines else x0
    xs = [first + i * gap for i in range(len(lad.lifelines))]
    width = (xs[-1] if xs else x0) + 150
    top = y0 + 10
    bottom = top + 40 + ROW_H * max(1, len(lad.arrows)) + (LINE_H if lad.left_out else 0)
    el = [f'<g class="ladder" font-family="{FONT}" font-size="12">']
    if traced:
        el.append(f'<text x="{x0:.0f}" y="{top + 14:.0f}" font-weight="bold">Python frame and call</text>')
    for i, (x, name) in enumerate(zip(xs, lad.lifelines, strict=True)):
        el.append(f'<text x="{x:.0f}" y="{top + 14:.0f}" text-anchor="middle" font-weight="bold" '
                  f'fill="{"#2e7d32" if i == 0 else "#1565c0"}">{escape(name)}</text>')
        el.append(f'<line x1="{x:.0f}" y1="{top + 22:.0f}" x2="{x:.0f}" y2="{bottom:.0f}" stroke="#999999" '
                  'stroke-dasharray="4 3"/>')
    y = top + 40
    for a in lad.arrows:
        xa, xb = (xs[a.origin], xs[a.peer]) if a.left_to_right else (xs[a.peer], xs[a.origin])
        colour = "#c62828" if "RST" in a.label or "ICMP" in a.label else "#222222"
        tip = -8 if xb > xa else 8
        el.append(f'<g class="arrow" data-packet="{a.packet}">')
        el.append(f'<line x1="{xa:.0f}" y1="{y + 14:.0f}" x2="{xb:.0f}" y2="{y + 14:.0f}" stroke="{colour}" '
                  'stroke-width="1.5"/>')
        el.append(f'<path d="M{xb:.0f},{y + 14:.0f} l{tip},-4 l0,8 z" fill="{colour}"/>')
        mid = (xa + xb) / 2
        el.append(f'<text x="{mid:.0f}" y="{y + 9:.0f}" text-anchor="middle" fill="{colour}">{escape(a.label)}'
                  '</text>')
        if a.app:
            el.append(f'<text x="{mid:.0f}" y="{y + 28:.0f}" text-anchor="middle" fill="#00838f">'
                      f'{escape(a.app)}</text>')
        if traced:
            el.append(f'<text x="{x0:.0f}" y="{y + 10:.0f}" fill="#8e24aa">{escape(a.frame)}</text>')
            el.append(f'<text x="{x0:.0f}" y="{y + 25:.0f}" fill="#555555" font-size="11">{escape(a.call)}</text>')
        el.append("</g>")
        y += ROW_H
    if lad.left_out:
        el.append(f'<text x="{x0:.0f}" y="{y + 10:.0f}" fill="#777777">… {lad.left_out} more packets not drawn</text>')
    el.append("</g>")
    return el, bottom - y0 + 10, width


def render_svg(report: Report, width: int = 100) -> str:
    lines = styled_lines(report, width)
    text, y = _text_block(lines, 20, 28)
    traced = report.trace.traced
    lad = ladder(report)
    heading_y = y + 14
    drawing, height, ladder_w = ladder_svg(lad, 20, heading_y + 6, traced)
    total_w = max(40 + width * CHAR_W, ladder_w + 20)
    total_h = heading_y + height + 20
    title = escape(_title(report))
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0f}" height="{total_h:.0f}" '
        f'viewBox="0 0 {total_w:.0f} {total_h:.0f}">',
        f"<title>{title}</title>",
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        f'<g class="report" font-family="{FONT}" font-size="12">',
        *text,
        "</g>",
        f'<text x="20" y="{heading_y:.0f}" font-family="{FONT}" font-size="13" font-weight="bold">'
        f"{_ladder_heading(report)}</text>",
        *drawing,
        "</svg>",
    ]) + "\n"


def _ladder_heading(report: Report) -> str:
    if report.trace.capture.links and report.trace.network.get("taps"):
        return "Ladder: each packet between the hosts of the link it was seen on"
    return "Ladder: each packet between client and peer"


def _title(report: Report) -> str:
    if report.trace.traced:
        return _clean(f"wirestack {report.trace.title}")
    return _clean(f"wirestack read {report.trace.capture.file}")


def render_html(report: Report, width: int = 100) -> str:
    lines = styled_lines(report, width)
    body = []
    for line in lines:
        spans = []
        for text, colour, bold in line:
            style = f"color:{_fill(colour)}" + (";font-weight:bold" if bold else "")
            spans.append(f'<span style="{style}">{html_escape(_clean(text))}</span>')
        body.append("".join(spans))
    traced = report.trace.traced
    drawing, height, ladder_w = ladder_svg(ladder(report), 10, 0, traced)
    title = html_escape(_title(report))
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{title}</title>",
        "<style>",
        f"body {{ font-family: {FONT}; font-size: 13px; margin: 2em; color: #222222; background: #ffffff; }}",
        "pre.report { line-height: 1.35; }",
        "h2 { font-size: 15px; }",
        "</style>",
        "</head>",
        "<body>",
        f"<h1>{title}</h1>",
        '<pre class="report">' + "\n".join(body) + "</pre>",
        f"<h2>{_ladder_heading(report)}</h2>",
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{ladder_w + 20:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {ladder_w + 20:.0f} {height:.0f}">',
        *drawing,
        "</svg>",
        "</body>",
        "</html>",
    ]) + "\n"


class SvgRenderer:
    name: str = "svg"
    extensions: tuple[str, ...] = (".svg",)

    def render(self, report: Report) -> str:
        return render_svg(report)


class HtmlRenderer:
    name: str = "html"
    extensions: tuple[str, ...] = (".html", ".htm")

    def render(self, report: Report) -> str:
        return render_html(report)
