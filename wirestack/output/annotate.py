"""The pcapng a user opens in Wireshark: every packet with a comment per call it is paired with. Pure.

A comment is the sentence a person reads, then the same facts as key=value pairs in `[wirestack ...]` (the form
the Lua post-dissector `wirestack/data/wirestack.lua` turns into fields; see docs/pcapng.md):

    sent by connect() → ECONNREFUSED (111) at socket.py:836 create_connection ← smtplib.py:312 _get_socket
      [wirestack call=2 op=connect role=sent namespace=errno error=ECONNREFUSED errno=111 errname=ECONNREFUSED
       socket=1 thread=MainThread frame="socket.py:836 create_connection" ...]

Values are bare (no space, quote, bracket or equals sign) or double-quoted with backslash escapes, brackets
escaped too; `frame` repeats, innermost first; `errno`/`errname` only for a kernel errno. Text from the trace
is sanitised in both parts, and the sentence part carries no bracket of the data's: the marker is wirestack's.
Comments are built once per (call, role, socket) and shared, from parts built once per distinct outcome and
stack: a loop's 100,000 calls cost one formatting of their common stack.
"""

from __future__ import annotations

from collections.abc import Iterator

from .._version import __version__
from ..formats import archive, pcapng
from ..model import ERRNO, Call, Trace
from ..report import Linked, Report
from .sanitize import clean
from .text import describe_event, outcome


def quote(value: str) -> str:
    """A key=value value: bare when plain, else double-quoted with backslash escapes (brackets included)."""
    value = clean(value, 400)
    if value and not any(ch in value for ch in ' "\\[]=') and value.isprintable():
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("[", "\\[").replace("]", "\\]")
    return f'"{escaped}"'


def fields(**pairs: object) -> str:
    """' [wirestack key=value ...]': lists repeat their key; None is left out."""
    out = []
    for key, value in pairs.items():
        for v in (value if isinstance(value, list) else [value]):
            if v is not None:
                out.append(f"{key}={quote(str(v))}")
    return " [wirestack " + " ".join(out) + "]"


def _plain(text: str) -> str:
    """Data in the sentence part: sanitised, with its brackets made parentheses (no marker can be forged)."""
    return clean(text, 400).replace("[", "(").replace("]", ")")


def frame_labels(call: Call) -> list[str]:
    return [f"{f.file.replace(chr(92), '/').rsplit('/', 1)[-1]}:{f.line} {f.function}" for f in reversed(call.frames)]


def comment(call: Call, role: str, socket: int | None = None, cache: dict[object, str] | None = None) -> str:
    """The comment for one pairing. Its parts that repeat across a loop's calls (the outcome, the stack) are
    built once per distinct value when `cache` is given."""
    memo: dict[object, str] = cache if cache is not None else {}
    result = _plain(outcome(call))
    f = call.fault
    key = (call.op, role, f, result)
    head = memo.get(key)
    if head is None:
        verb = "sent by" if role == "sent" else "received by"
        head = memo[key] = f"{verb} {call.op}() → {result}"
        memo[("fields", *key)] = fields(
            op=call.op, role=role, namespace=f.namespace if f else None, error=(f.name or f.type) if f else None,
            errno=f.code if f and f.namespace == ERRNO else None,
            errname=f.name if f and f.namespace == ERRNO and f.name else None)[len(" [wirestack "):-1]
    where_key = ("at", call.frames, call.thread)
    where = memo.get(where_key)
    if where is None:
        frames = frame_labels(call)
        thread = f" (thread {_plain(call.thread)})" if call.thread and call.thread != "MainThread" else ""
        where = memo[where_key] = f" at {' ← '.join(_plain(x) for x in frames)}{thread}"
        memo[("stack", *where_key[1:])] = fields(thread=call.thread or None, frame=frames)[len(" [wirestack "):-1]
    sock = socket if socket else (call.socket or None)
    own = f"call={call.id} " + memo[("fields", *key)] + (f" socket={sock}" if sock is not None else "")
    stack = memo[("stack", call.frames, call.thread)]
    return f"{head}{where} [wirestack {own}{' ' + stack if stack else ''}]"


def interfaces(trace: Trace) -> list[tuple[str, str]]:
    """(if_name, if_description) of each interface block: one per link of a capture on several links (the
    network lab's taps name the link they sit on), else the one interface."""
    if not trace.capture.links:
        return [(trace.capture.interface or "capture", "")]
    about = {t.get("name"): t for t in trace.network.get("taps", []) if isinstance(t, dict)}
    out = []
    for i, name in enumerate(trace.capture.links):
        tap = about.get(name, {})
        ends = tap.get("link") or []
        where = f"{tap.get('interface')} of {tap.get('host')}, on the {'–'.join(map(str, ends))} link" if ends else ""
        out.append((name, where + (" (the traced program's own link)" if i == 0 and where else "")))
    return out


def blocks(report: Linked, snaplen: int = 262144) -> Iterator[bytes]:
    """The annotated pcapng, block by block: section header (carrying the trace, see `formats.archive`),
    interface, then one enhanced packet block per packet with its comments."""
    trace = report.trace
    calls = {c.id: c for c in trace.calls}
    cache: dict[tuple[int, str, int], str] = {}
    parts: dict[object, str] = {}
    yield pcapng.section_header(f"wirestack {__version__}", archive.option_values(trace))
    for name, about in interfaces(trace):
        yield pcapng.interface_description(trace.capture.linktype, snaplen, name, about)
    kernel = report.kernel
    for p in trace.packets:
        texts = []
        for pair in report.alignment.pairs_of(p.id):
            if pair.call is not None and pair.call in calls:
                k = (pair.call, pair.role, pair.socket)
                text = cache.get(k)
                if text is None:
                    text = cache[k] = comment(calls[pair.call], pair.role, pair.socket, parts)
                texts.append(text)
            else:
                texts.append(f"{'sent' if pair.side == 'out' else 'received'} by the kernel, no call of the program "
                             f"involved (socket {pair.socket})" + fields(role="kernel", socket=pair.socket))
        for kid in kernel.for_packet(p.id):
            texts.append("kernel: " + _plain(describe_event(report.event(kid))))
        yield pcapng.enhanced_packet(p.time_ns, p.raw, p.length, texts, p.interface)


class PcapngRenderer:
    name: str = "pcapng"
    extensions: tuple[str, ...] = (".pcapng",)

    def render(self, report: Report) -> bytes:
        return b"".join(blocks(report))
