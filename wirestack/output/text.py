"""The report as text, drawn with rich. Returns strings; printing is the CLI's business.

The traceback is drawn as Python prints it (ExceptionGroups too), each entry tagged with its layer and the
packets produced below it; under the frame where the failing call was made comes the kernel layer: the call and
what the kernel returned, its error named in its own namespace, the header's `#define`, and its packets and
kernel events. Then the other failed calls, the other calls that touched the wire, and what the wire shows (the
facts, in words). A capture file without a trace shows its flows, packets and facts.

Every string from the data goes through `sanitize.clean` and into `rich.text.Text`: no control character reaches
the terminal, and no rich markup in data is interpreted.

It is long because the terminal report is drawn in one place: the traceback with its layers, the kernel lines, the
facts.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from io import StringIO

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..core.chains import chain
from ..core.companions import lookup
from ..core.dissect import TcpOptions, arp_sender_mac, tcp_options, tcp_options_text
from ..core.errnos import key
from ..core.kernel import addr as kernel_addr
from ..core.layers import KERNEL, layer_of
from ..core.pairing import RECVS
from ..core.unseen import unseen_notes
from ..explain.facts import AppExchange, kind_of
from ..explain.rules.calls import is_wait
from ..explain.rules.udp import meaning
from ..explain.wording import QUIET, Words, addr, count, duration, endpoint, sentence
from ..model import EAI, ERRNO, HERRNO, OPENSSL, TIMEOUT, Call, ExceptionInfo, Frame, KernelEvent, Packet
from ..report import Report
from .sanitize import clean

LAYER_STYLE = {"program": "green", "application module": "cyan", "transport interface": "magenta",
               KERNEL: "bold red"}
_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"
MAX_PACKETS_SHOWN = 40
MAX_FAILED_SHOWN = 5
MAX_ALIKE_SHOWN = 3
MAX_ROWS_SHOWN = 20
SHOW_ALL_PACKETS = 100  # a file without a trace shows every packet up to this many


def T(text: object, style: str = "") -> Text:  # noqa: N802  (a Text of data, always sanitised)
    return Text(clean(text), style=style)


def ids(packets: Sequence[int]) -> str:
    """'#1 #2 #3' or '#1-#40' for long runs of consecutive ids."""
    if not packets:
        return ""
    if len(packets) > 4 and list(packets) == list(range(packets[0], packets[0] + len(packets))):
        return f"#{packets[0]}-#{packets[-1]}"
    if len(packets) > 8:
        return " ".join(f"#{p}" for p in packets[:6]) + f" … ({len(packets)})"
    return " ".join(f"#{p}" for p in packets)


def address(a: tuple[str, int] | None) -> str:
    return endpoint(*a) if a else "?"


def _target(c: Call) -> str:
    target = c.args.get("address")
    if c.op == "getaddrinfo":
        return f"{c.args.get('host')!r}, {c.args.get('port')!r}"
    if c.op in ("getsockopt", "setsockopt"):
        return str(c.args.get("option", ""))
    if isinstance(target, list) and len(target) >= 2 and isinstance(target[1], int):
        return endpoint(str(target[0]), target[1])
    if "bytes" in c.args:
        return f"{c.args['bytes']} bytes"
    if "bufsize" in c.args:
        return str(c.args["bufsize"])
    return ""


def outcome(c: Call) -> str:
    """What a call returned or raised, in the error's own namespace."""
    f = c.fault
    if f is not None:
        if f.namespace == ERRNO:
            return f"{f.name or 'errno'} ({f.code})"
        if f.namespace in (EAI, HERRNO):
            return f"{f.name} ({f.code})"
        if f.namespace == OPENSSL:
            return f"OpenSSL {f.name} ({f.code})" + (f" [{f.reason}]" if f.reason else "")
        if f.namespace == TIMEOUT:
            return f"{f.type} (no errno)"
        return f.type
    if c.op in RECVS:
        return f"{c.result} bytes" + (" (EOF)" if c.result == 0 else "")
    if c.op in ("send", "sendto", "sendmsg", "write") and isinstance(c.result, int):
        return f"{c.result} bytes"
    if c.op == "getaddrinfo" and isinstance(c.result, list):
        return ", ".join(endpoint(str(r[2][0]), int(r[2][1])) for r in c.result if isinstance(r, list) and len(r) == 3
                         and isinstance(r[2], list) and len(r[2]) == 2 and isinstance(r[2][1], int)) or "[]"
    if c.op == "getsockopt" or c.op == "connect_ex":
        import errno

        value = c.result if isinstance(c.result, int) else 0
        return (f"SO_ERROR = {value}" if c.op == "getsockopt" else str(value)) + (
            f" ({errno.errorcode.get(value, '?')})" if value else "")
    return "ok"


def call_line(c: Call) -> str:
    """connect(127.0.0.1:464) → ECONNREFUSED (111)"""
    return f"{c.op}({_target(c)}) → {outcome(c)}"


def offset(ns: int) -> str:
    """+14 µs after, or -230 µs before, the reference time."""
    return ("+" if ns >= 0 else "-") + duration(abs(ns))


def flow_text(p: Packet) -> str:
    if p.proto == "ARP":
        return f"{p.src} → {p.dst}"
    return f"{endpoint(p.src, p.sport)} → {endpoint(p.dst, p.dport)}" if p.sport or p.dport else f"{p.src} → {p.dst}"


_ICMP4_INFO = {0: "echo reply", 8: "echo request", 5: "redirect", 9: "router advertisement",
               10: "router solicitation"}
_ICMP6_INFO = {128: "echo request", 129: "echo reply", 133: "router solicitation", 134: "router advertisement",
               135: "neighbor solicitation", 136: "neighbor advertisement", 137: "redirect"}


def icmp_name(p: Packet) -> str:
    """What an ICMP or ICMPv6 message is, with the field that matters: 'fragmentation needed, MTU 1000',
    'neighbor solicitation for fe80::1'; '' for a type without a name here."""
    assert p.icmp is not None
    kind, body = p.icmp[0], p.payload  # body: what follows type, code and checksum
    info = (_ICMP6_INFO if p.proto == "ICMPv6" else _ICMP4_INFO).get(kind)
    if info is not None:
        found = lookup(p)  # neighbour discovery: the address asked for, or answered for
        return f"{info} for {found.target if found.request else found.asker}" if found else info
    named = meaning(p)
    if named.startswith("type "):
        return ""
    if p.proto == "ICMP" and p.icmp == (3, 4) and len(body) >= 4:
        named += f", MTU {int.from_bytes(body[2:4], 'big')}"
    elif p.proto == "ICMPv6" and kind == 2 and len(body) >= 4:
        named += f", MTU {int.from_bytes(body[0:4], 'big')}"
    return named


def _options(p: Packet) -> str:
    """A SYN's options (what each end announces: MSS, window scale, SACK, timestamps), and the SACK blocks of any
    segment; not the timestamps every Linux segment carries."""
    o = tcp_options(p)
    if not o:
        return ""
    if "S" not in p.flags:
        o = TcpOptions(sack=o.sack, malformed=o.malformed)
    return tcp_options_text(o)


def packet_text(p: Packet, flow_width: int = 0) -> str:
    """'127.0.0.1:40000 → 127.0.0.1:464  TCP S   seq=1000 len=0'"""
    if p.proto == "TCP":
        detail = f"{p.flags or '.':<3} seq={p.seq}" + (f" ack={p.ack}" if "A" in p.flags else "")
        if p.window == 0 and "A" in p.flags and "R" not in p.flags:
            detail += " win=0"
        if options := _options(p):
            detail += " " + options
    elif p.proto == "ARP" and p.icmp:
        mac = arp_sender_mac(p)
        detail = (f"who-has {p.dst} tell {p.src}" if p.icmp[0] == 1 else
                  f"{p.src} is-at {mac}" if p.icmp[0] == 2 and mac else
                  "is-at" if p.icmp[0] == 2 else f"op {p.icmp[0]}")
    elif p.icmp:
        detail = f"type {p.icmp[0]} code {p.icmp[1]}" + (f" ({named})" if (named := icmp_name(p)) else "")
        if p.quoted:
            detail += f" quoting {p.quoted.proto} {endpoint(p.quoted.src, p.quoted.sport)} → " \
                      f"{endpoint(p.quoted.dst, p.quoted.dport)}"
    else:
        detail = ""
    app = f"  {p.app}" if p.app else ""
    return f"{flow_text(p):<{flow_width}}  {p.proto:<4} {detail} len={len(p.payload)}{app}"


def describe_event(ev: KernelEvent) -> str:
    """One line for a kernel event, from its own fields."""
    import errno as _errno

    f = ev.fields
    if ev.event.startswith("sys_enter_"):
        fd = f" (fd {f['fd']})" if "fd" in f else ""
        return f"syscall {ev.event[10:]}{fd} enters the kernel"
    if ev.event.startswith("sys_exit_"):
        try:
            ret = int(f.get("ret", "0"))
        except ValueError:
            ret = 0
        name = ev.event[9:]
        if ret < 0:
            return f"syscall {name} returns {ret} (-{_errno.errorcode.get(-ret, '?')})"
        return f"syscall {name} returns {ret}"
    if ev.event == "inet_sock_set_state":  # an AF_INET6 socket's addresses are in saddrv6/daddrv6
        (sh, sp), (dh, dp) = kernel_addr(f, "s"), kernel_addr(f, "d")
        return f"socket state {f.get('oldstate', '?')} → {f.get('newstate', '?')} ({endpoint(sh or '?', sp)} ↔ " \
               f"{endpoint(dh or '?', dp)})"
    if ev.event == "tcp_send_reset":
        return f"tcp_send_reset: RST from {f.get('src', '?')}, reason {f.get('reason', '?')}" + (
            f", state {f['state']}" if f.get("state") not in (None, "", "UNKNOWN") else "")
    if ev.event == "kfree_skb":
        return f"kfree_skb: packet dropped, reason {f.get('reason', '?')} at {f.get('location', '?')}"
    if ev.event == "tcp_receive_reset":
        return "tcp_receive_reset: the RST reaches the socket"
    if ev.event == "inet_sk_error_report":
        try:
            err = int(f.get("error", "0"))
        except ValueError:
            err = 0
        return f"inet_sk_error_report: error {err} ({_errno.errorcode.get(err, '?')}) set on the socket"
    if ev.event in ("tcp_retransmit_skb", "tcp_retransmit_synack"):
        return f"{ev.event}: sent again" + (f", state {f['state']}" if "state" in f else "")
    if ev.event == "icmp_send":
        return f"icmp_send: type {f.get('type')} code {f.get('code')} for the datagram " \
               f"{f.get('src')}:{f.get('sport')} → {f.get('dst')}:{f.get('dport')}"
    return f"{ev.event} " + " ".join(f"{k}={v}" for k, v in list(f.items())[:8])


class TextRenderer:
    """The report as text, `width` columns wide, with ANSI colours only when `color`; a large run is
    summarised unless `show_all`."""

    name: str = "text"
    extensions: tuple[str, ...] = (".txt",)

    def __init__(self, width: int = 100, color: bool = False, show_all: bool = False) -> None:
        self.width, self.color, self.show_all = width, color, show_all

    def render(self, report: Report) -> str:
        console = Console(file=StringIO(), width=self.width, color_system="standard" if self.color else None,
                          force_terminal=self.color, no_color=not self.color, highlight=False, emoji=False,
                          markup=False, force_jupyter=False)  # text, even when rendered inside a notebook
        console.print(renderable(report, self.show_all))
        text = str(console.file.getvalue())  # type: ignore[attr-defined]
        return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def render_text(report: Report, width: int = 100, color: bool = False, show_all: bool = False) -> str:
    return TextRenderer(width, color, show_all).render(report)


# -- the kernel layer under a call -----------------------------------------------------------------------------


def kernel_line(report: Report, c: Call) -> str:
    """What the kernel returned for the call, each error in its own namespace."""
    f = c.fault
    target = f"{c.op}({_target(c)})"
    ret = next((_int(report.event(k).fields.get("ret")) for k in report.kernel.for_call(c.id)
                if report.event(k).event.startswith("sys_exit_")), None)
    if f is None:
        return call_line(c)
    timeout = c.args.get("timeout")
    if f.namespace == ERRNO:
        if c.op == "connect" and isinstance(timeout, float):
            import errno

            if ret is not None and ret < 0 and -ret != f.code:
                return (f"{target} → {errno.errorcode.get(-ret, '?')} ({-ret}) from the syscall; then "
                        f"{f.name} ({f.code}) read through SO_ERROR (CPython runs a connect with a timeout "
                        "non-blocking)")
            if ret is not None and -ret == f.code:
                return (f"{target} → {f.name} ({f.code}), returned by the syscall itself: it failed at once, "
                        "with nothing to wait for")
            return (f"{target} → {f.name} ({f.code}) (a connect with a {timeout:g} s timeout: CPython makes the "
                    "syscall non-blocking and reads the error through SO_ERROR after poll())")
        return f"{target} → {f.name or 'errno'} ({f.code})"
    if f.namespace == TIMEOUT:
        limit = f"the socket's {timeout:g} s timeout" if isinstance(timeout, float) else "a Python timeout"
        return (f"{target}: no error from the kernel: {limit} expired in CPython's own wait (poll), and it raised "
                f"{f.type} (no errno)")
    if f.namespace == OPENSSL:
        reason = f" [{f.library}: {f.reason}]" if f.reason else ""
        return f"{target} → OpenSSL {f.name or 'error'} ({f.code}){reason}: an OpenSSL error, not a kernel errno"
    if f.namespace in (EAI, HERRNO):
        return f"{target} → {f.name or f.namespace} ({f.code}): the resolver's error code (netdb.h), not a kernel " \
               "errno"
    return f"{target} → {f.line} (not an OS error)"


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _packet_table(report: Report, pids: Sequence[int], t0: int, call: Call) -> Group:
    """The call's packets and kernel events in time order: id, time from the call's start, direction, what."""
    shown = [report.packet(pid) for pid in pids[:MAX_PACKETS_SHOWN]]
    width = max((len(flow_text(p)) for p in shown), default=0)
    rows: list[tuple[int, str, Text, str, Text]] = []
    for p in shown:
        incoming = any(x.side == "in" and x.call == call.id for x in report.alignment.pairs_of(p.id))
        style = "yellow" if "R" in p.flags or p.quoted else ""
        rows.append((p.time_ns, f"#{p.id}", Text(f"#{p.id}", style="bold"), "←" if incoming else "→",
                     T(packet_text(p, width), style)))
    for kid in report.kernel.for_call(call.id):
        ev = report.event(kid)
        about = report.kernel.links[kid].packets
        text = describe_event(ev) + (f" [{ids(about)}]" if about else "")
        rows.append((ev.time_ns, f"k{kid}", Text(f"k{kid}", style="dim"), "·", T(text, "magenta")))
    rows.sort(key=lambda r: r[0])
    digits = max((len(r[1]) for r in rows), default=2)
    times = [offset(r[0] - t0) for r in rows]
    tw = max((len(x) for x in times), default=6)
    lines: list[RenderableType] = []
    for (_, label, styled, arrow, what), at in zip(rows, times, strict=True):
        pad = " " * (digits - len(label))
        lines.append(_line(Text(pad), styled, Text(f" {at:>{tw}} {arrow} "), what))
    if len(pids) > MAX_PACKETS_SHOWN:
        lines.append(Text(f"… {len(pids) - MAX_PACKETS_SHOWN} more packets", "dim"))
    return Group(*lines)


def _kernel_block(report: Report, call: Call) -> RenderableType:
    lines: list[RenderableType] = [Text.assemble(("  kernel  ", LAYER_STYLE[KERNEL]), T(kernel_line(report, call)),
                                                 (f"   in {duration(call.end_ns - call.start_ns)}", "dim"))]
    f = call.fault
    if f is not None and f.code is not None:
        define = report.trace.defines.get(key(f.namespace, f.code))
        if define:
            lines.append(T("          " + define, "dim"))
    pids = report.alignment.packets_of_call(call.id)
    if pids or report.kernel.for_call(call.id):
        lines.append(Padding(_packet_table(report, pids, call.start_ns, call), (0, 0, 0, 10)))
    if not pids:
        lines.append(Text("          no packet of this call was captured", style="dim"))
    return Group(*lines)


# -- tracebacks ------------------------------------------------------------------------------------------------


def _frame_rows(report: Report, frames: Sequence[Frame], prefix: str = "", tags: bool = True) -> list[RenderableType]:
    rows: list[RenderableType] = []
    for f in frames:
        layer = layer_of(f.file)
        rows.append(T(f'{prefix}  File "{f.file}", line {f.line}, in {f.function}'))
        line = Table.grid(padding=(0, 2), expand=True)
        line.add_column(ratio=1, overflow="ellipsis", no_wrap=True)
        line.add_column(no_wrap=True, justify="right")
        tag = Text.assemble((layer, LAYER_STYLE.get(layer, "")))
        if tags:
            tag.append("  ")
            tag.append(ids(report.alignment.packets_below(f.instance)) or "-", style="bold")
        line.add_row(T(f"{prefix}    {f.code}"), tag)
        rows.append(line)
    return rows


def _exception_line(e: ExceptionInfo, prefix: str = "") -> Text:
    text = f"{e.type}: {e.message}" if e.message else e.type
    count = f"({len(e.group)} sub-exception{'s' if len(e.group) != 1 else ''})"
    if e.group and not e.message.endswith(count):  # a group's str() says it already, as Python prints it
        text += f" {count}"
    return T(prefix + text, "bold red")


def _exception_block(report: Report, exc: ExceptionInfo, origin: Call | None, prefix: str = "",
                     depth: int = 0) -> list[RenderableType]:
    """One exception as Python prints it (its chain first); an ExceptionGroup with its members, indented with
    Python's margins (traceback.TracebackException.format): `prefix` is the margin of the group member this is
    ("    | "), "" at the top."""
    rows: list[RenderableType] = []
    exceptions = chain(exc)
    blank = T(prefix) if prefix else Text("")
    for i, e in enumerate(exceptions):
        if i:
            rows += [blank, T(prefix + (_CAUSE if e.cause is exceptions[i - 1] else _CONTEXT)), blank]
        if e.group and depth < 4:
            margin = prefix or "  | "  # a group's own lines: at the top, Python indents them one level
            indent = margin[:-2]
            if e.frames:
                rows.append(T(f"{indent}+ Exception Group Traceback (most recent call last):" if not prefix else
                              f"{margin}Exception Group Traceback (most recent call last):"))
            rows += _frame_rows(report, e.frames, margin)
            rows.append(_exception_line(e, margin))
            for n, member in enumerate(e.group[:15], 1):
                head = "+-+" if n == 1 else "  +"
                rows.append(T(f"{indent}{head}---------------- {n} ----------------"))
                rows += _exception_block(report, member, origin, indent + "  | ", depth + 1)
            if len(e.group) > 15:
                rows += [T(f"{indent}  +---------------- ... ----------------"),
                         T(f"{indent}  | and {len(e.group) - 15} more exceptions")]
            rows.append(T(f"{indent}  +------------------------------------"))
            continue
        if e.frames or not prefix:  # a member that was never raised has no traceback, and Python shows none
            rows.append(T(f"{prefix}Traceback (most recent call last):"))
        rows += _frame_rows(report, e.frames, prefix)
        calls = {c.id: c for c in report.trace.calls}
        if e.call is not None and e.call in calls:
            rows.append(_kernel_block(report, calls[e.call]))
        rows.append(_exception_line(e, prefix))
    return rows


def _failed_calls(report: Report, shown: set[int], show_all: bool) -> list[RenderableType]:
    """Every failed call the traceback does not already show: its stack, the kernel layer and its packets; in a
    large run the first few in full and the rest counted."""
    failed = [c for c in report.trace.calls if c.failed and not is_wait(c) and c.id not in shown and c.op != "spawn"]
    parts: list[RenderableType] = []
    detailed = failed if show_all else failed[:MAX_FAILED_SHOWN]
    if len(detailed) < len(failed):
        counts: dict[str, int] = {}
        for c in failed[len(detailed):]:
            k = f"{c.op}() → {outcome(c)}"
            counts[k] = counts.get(k, 0) + 1
        summary = ", ".join(f"{k} ×{n:,}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])[:6])
        parts += [Text(""), T(f"{len(failed):,} socket calls failed; the first {len(detailed)} follow, then "
                              f"{summary} (--all shows each)", "bold")]
    t = report.trace
    main = t.processes[0].pid if t.processes else (t.calls[0].pid if t.calls else 0)
    for c in detailed:
        pid = f", pid {c.pid}" if c.pid and c.pid != main else ""
        parts += [Text(""), T(f"{c.op}() failed (call {c.id}, thread {c.thread}{pid}), made from:", "bold")]
        parts += _frame_rows(report, c.frames, tags=False)
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
        table.add_row(T(call_line(c)), T(c.thread),
                      T(f"{where.file.rsplit('/', 1)[-1]}:{where.line} {where.function}") if where else Text(""),
                      Text(ids(report.alignment.packets_of_call(c.id))))
    if more:
        table.add_row(Text(f"… {more:,} more calls (--all shows each)", style="dim"), "", "", "")
    return table


def _flows(report: Report, always: bool = False) -> RenderableType | None:
    """A large run (or a file without a trace) in counts: each flow, failing ones first."""
    t = report.trace
    scene = report.explanation.scene
    if not always and len(t.packets) <= MAX_ROWS_SHOWN * 5:
        return None
    rows = []
    for c in scene.connections:
        bad = c.outcome in ("refused", "unanswered", "icmp") or c.a.rst is not None or c.b.rst is not None
        what = c.outcome if c.outcome != "established" else ("reset" if c.a.rst or c.b.rst else "")
        rows.append((not bad, c.flow.packets[0], f"TCP {address(c.flow.a)} → {address(c.flow.b)}",
                     len(c.packets), what, c.client.sockets + c.server.sockets))
    for v in scene.conversations:
        bad = bool(v.icmp)
        rows.append((not bad, v.flow.packets[0], f"UDP {address(v.flow.a)} → {address(v.flow.b)}",
                     len(v.datagrams) + len(v.icmp), "ICMP error" if v.icmp else "",
                     v.first.sockets + v.second.sockets))
    if not rows:
        return None
    rows.sort()
    failing = sum(1 for r in rows if not r[0])
    title = (f"{count(len(rows), 'flow')}, {count(len(t.packets), 'packet')}"
             + (f", {count(len(t.calls), 'call')}" if t.traced else "")
             + (f"; {failing:,} with failures, listed first" if failing else ""))
    table = Table(title=title, title_justify="left", box=None, padding=(0, 1), header_style="bold")
    for name in ("flow", "packets", "what", "sockets"):
        table.add_column(name)
    for ok, _, flow, n, what, sockets in rows[:MAX_ROWS_SHOWN]:
        table.add_row(T(flow, "" if ok else "yellow"), str(n), T(what), " ".join(map(str, sockets)))
    if len(rows) > MAX_ROWS_SHOWN:
        table.add_row(Text(f"… {len(rows) - MAX_ROWS_SHOWN:,} more flows", style="dim"), "", "", "")
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
        table.add_row(Text(f"  #{p.id}", style="bold"), T(flow_text(p)), T(p.app, "cyan"))
    if len(labelled) > MAX_PACKETS_SHOWN:
        table.add_row(Text(f"  … {len(labelled) - MAX_PACKETS_SHOWN:,} more", style="dim"), "", "")
    return Group(Text("Application layer (as tshark dissects it)", style="bold"), table)


def _packets(report: Report) -> RenderableType | None:
    """For a file without a trace: the packets (all of a small file; else those the facts rest on)."""
    t = report.trace
    if len(t.packets) <= SHOW_ALL_PACKETS:
        shown = list(t.packets)
        what = ""
    else:
        wanted: set[int] = set()
        for f in report.facts:
            if kind_of(f) not in QUIET:
                wanted.update(f.packets[:4])
        shown = [report.packet(i) for i in sorted(wanted)[:MAX_PACKETS_SHOWN + 20]]
        what = f" ({len(shown):,} of {len(t.packets):,}: those the facts below rest on)"
    if not shown:
        return None
    width = max((len(flow_text(p)) for p in shown), default=0)
    digits = len(str(shown[-1].id)) + 1
    t0 = t.packets[0].time_ns if t.packets else 0
    lines: list[RenderableType] = [Text("Packets" + what, style="bold")]
    for p in shown:
        style = "yellow" if "R" in p.flags or p.quoted else ""
        lines.append(_line(Text(f"  {'#' + str(p.id):>{digits}}", style="bold"), Text(f" {offset(p.time_ns - t0):>9} "),
                           T(packet_text(p, width), style)))
    return Group(*lines)


def _line(*parts: Text) -> Text:
    """One row of fixed columns, cut (not wrapped) at the right edge."""
    line = Text.assemble(*parts)
    line.no_wrap, line.overflow = True, "ellipsis"
    return line


def _facts(report: Report, show_all: bool) -> RenderableType | None:
    words = Words({c.id: c for c in report.trace.calls}, many_pids=len({c.pid for c in report.trace.calls}) > 1)
    bullets = Table.grid(padding=(0, 1))
    bullets.add_column(no_wrap=True)
    bullets.add_column(ratio=1)
    told: dict[tuple[object, ...], int] = {}
    rows = 0
    for f in report.facts:
        if kind_of(f) in QUIET:
            continue
        group = f.group()
        told[group] = told.get(group, 0) + 1
        if not show_all and told[group] > MAX_ALIKE_SHOWN:
            continue
        bullets.add_row("  •", T(sentence(f, words)))
        rows += 1
        if isinstance(f, AppExchange):
            for pid, line, n, _call, how in f.segments:
                p = report.packet(pid)
                arrow = "→" if (p.src, p.sport) == f.client.addr else "←"
                body = f"'{line}'" if line != "(continued)" else line
                bullets.add_row("", T(f"#{pid} {arrow} {body} ({n} bytes)" + (f": {how}" if how else
                                                                             ": paired with no call"), "dim"))
    for group, n in told.items():
        if not show_all and n > MAX_ALIKE_SHOWN:
            bullets.add_row("  •", Text(f"… and {n - MAX_ALIKE_SHOWN:,} more the same ({_group_label(group)}; "
                                        "--all shows each)", style="dim"))
    if not rows:
        return None
    return Group(Text("What the wire shows", style="bold"), bullets)


def _group_label(group: tuple[object, ...]) -> str:
    kind = str(group[0])
    rest = [clean(addr(x)) if isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], int) else clean(x)
            for x in group[1:] if x not in ("", None, False, True, ())]
    return kind + (" " + " ".join(rest[:3]) if rest else "")


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


_LINKTYPES = {0: "BSD loopback", 1: "Ethernet", 101: "raw IP", 108: "OpenBSD loopback", 113: "Linux cooked",
              228: "IPv4", 229: "IPv6", 276: "Linux cooked v2"}


def renderable(report: Report, show_all: bool = False) -> RenderableType:
    t = report.trace
    cap = t.capture
    parts: list[RenderableType] = []
    if not t.traced:
        links = ", ".join(sorted({_LINKTYPES.get(p.link, f"link type {p.link}") for p in t.packets})) or "no packets"
        from ..explain.wording import count

        parts += [Text.assemble(("wirestack read", "bold"), T(f" {cap.file}: {count(len(t.packets), 'packet')} "
                                                            f"({cap.format or 'capture'}, {links})")),
                  Text("no wirestack trace in this file: packets and what the wire alone shows, nothing about "
                       "calls or frames", style="dim"), Text("")]
        for part in (_flows(report, always=True), _packets(report), _application_layer(report),
                     _facts(report, show_all)):
            if part is not None:
                parts += [part, Text("")]
        if not any(kind_of(f) not in QUIET for f in report.facts) and t.packets:
            parts += [Text("What the wire shows", style="bold"),
                      Text("  no refusal, reset, unanswered SYN, ICMP error or retransmission was captured"),
                      Text("")]
        for note in t.notes:
            parts.append(T(f"note: {note}", "dim"))
        while parts and isinstance(parts[-1], Text) and not parts[-1].plain:
            parts.pop()
        return Group(*parts)
    head = t.client.strip().splitlines()[-1] if t.client.strip() else ""
    unseen = unseen_notes(t.notes)  # calls the probe could not see: its flows are only those attributed
    # the capture backend, when not the usual raw socket (record.source.capture_note): in the header, once
    backend = [n for n in t.notes if n.startswith("capture: ")][:1]
    parts += [
        Text.assemble((f"wirestack {clean(t.title)}", "bold"), ": ", T(head)),
        T(f"captured on {cap.interface}: {cap.packets:,} packets "
          f"{'attributed to the program' if unseen else 'of the program' + chr(39) + 's flows'} ({cap.seen:,} seen, "
          f"{cap.dropped:,} dropped by the kernel)", "dim"),
        *(T(n, "dim") for n in backend + unseen),
    ]
    if t.kernel_off:
        parts.append(T(t.kernel_off, "dim"))
    status = exit_line(t.exit_code)
    usual = 1 if t.exception is not None else 0  # what python exits with anyway: not worth a line
    if status and t.exit_code != usual:
        parts.append(T(status, "dim"))
    parts.append(Text(""))
    shown: set[int] = set()
    if t.exception is not None:
        parts += _exception_block(report, t.exception, report.origin)
        from ..core.chains import linked

        shown = {e.call for e in linked(t.exception) if e.call is not None}
    else:
        parts.append(Text("no exception escaped"))
    parts += _failed_calls(report, shown, show_all)
    skip = {c.id for c in t.calls if c.failed and not is_wait(c)}
    for part in (_other_calls(report, skip, show_all), None if show_all else _flows(report),
                 _application_layer(report), _facts(report, show_all)):
        if part is not None:
            parts += [Text(""), part]
    for note in t.notes:
        if note not in unseen and note not in backend:
            parts.append(T(f"note: {note}", "dim"))
    return Group(*parts)


__all__ = ["TextRenderer", "call_line", "describe_event", "ids", "kernel_line", "offset", "packet_text",
           "render_text", "renderable"]
