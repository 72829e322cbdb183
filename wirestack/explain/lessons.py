"""Scenario-level findings (retransmit spacing, resets, EOF, TLS, ICMP, reply codes). Pure, like explanation.

`explanation.explain` appends what `lessons()` returns. Each lesson looks for its pattern in the capture and the
recorded calls and describes what it finds there; none assumes which scenario ran. When the data departs from
the usual story (SYN waits that do not double, a reply where an ICMP error was expected, a peer that does speak
TLS), the text describes the data. A lesson whose pattern is absent says nothing.

The lessons, in the order they appear:

- `syn_spacing`: a SYN sent more than once: the waits between copies, whether they stayed equal or doubled,
  and what ended the wait (an answer, the kernel giving up, or the program's own timeout).
- `tried_addresses`: one `create_connection` that tried several addresses, and which error it raised.
- `ip_version`: a flow over IPv6, with its frame sizes.
- `icmp_errors`: an ICMP error quoting a datagram of the program; which call learned of it, and when.
- `udp_replies`: datagrams that came back, or silence after a datagram.
- `tls_mismatch`: a TLS ClientHello that met bytes which are not a TLS record, decoded as ssl decodes them.
- `resets`: RST on an established connection (not the answer to a SYN), from either side.
- `peer_closes`: the peer's FIN before the program's, and what the program's read returned for it.
- `conversation`: each data segment of a text protocol, its first line, and the call and library functions
  that sent or read it; then the commands and the replies (SMTP reply codes, HTTP status lines) on the wire.
- `unpaired_data`: data segments that no recorded call sent or read.
- `layers_crossed`: the failing call's packets under the frames of several library modules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..core import errnos
from ..core.layers import is_library, is_transport
from ..core.pairing import CONNECTS, RECVS, SENDS, Alignment, chain, origin_call
from ..model import Call, ExceptionInfo, Frame, Packet, Trace
from .explanation import Finding, duration, endpoint, flag_name

MAX_SEGMENTS = 24  # conversation lines before the rest is summarised


def lessons(trace: Trace, alignment: Alignment) -> list[Finding]:
    flows = socket_flows(trace, alignment)
    found: list[Finding] = []
    found += syn_spacing(trace)
    found += tried_addresses(trace.calls)
    found += ip_version(trace, flows)
    found += icmp_errors(trace, alignment)
    found += udp_replies(trace, flows)
    found += tls_mismatch(trace, flows)
    found += resets(trace, flows)
    found += peer_closes(trace, flows)
    found += conversation(trace, flows)
    found += unpaired_data(flows)
    found += layers_crossed(trace, alignment)
    return found


# -- flows: a socket's packets, each with its direction ------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """One connection's packets in time order, each marked "out" (sent by the traced side) or "in", with its
    call. A connection can pass from socket object to socket object (ssl's wrap_socket detaches the plain
    socket): `sockets` lists them, `socket` is the first."""

    socket: int
    packets: tuple[tuple[Packet, str, Call | None], ...]
    sockets: tuple[int, ...] = ()

    def tcp(self) -> list[tuple[Packet, str, Call | None]]:
        return [x for x in self.packets if x[0].proto == "TCP"]

    @property
    def all_sockets(self) -> tuple[int, ...]:
        return self.sockets or (self.socket,)


def socket_flows(trace: Trace, alignment: Alignment) -> list[Flow]:
    by_id = {p.id: p for p in trace.packets}
    calls = {c.id: c for c in trace.calls}
    rows: dict[int, list[tuple[Packet, str, Call | None]]] = {}
    for pair in alignment.pairs:
        p = by_id.get(pair.packet)
        if p is None:
            continue
        rows.setdefault(pair.socket, []).append((p, pair.side, calls.get(pair.call) if pair.call else None))
    # sockets that carried one TCP connection one after the other (same 4-tuple, no new SYN) are one flow
    merged: dict[int, int] = {}
    last_of_tuple: dict[tuple[str, frozenset[tuple[str, int]]], int] = {}
    for sock, r in sorted(rows.items(), key=lambda kv: min(x[0].time_ns for x in kv[1])):
        first = min(r, key=lambda x: (x[0].time_ns, x[0].id))[0]
        key = (first.proto, frozenset({(first.src, first.sport), (first.dst, first.dport)}))
        opens = first.proto == "TCP" and "S" in first.flags and "A" not in first.flags
        if first.proto == "TCP" and not opens and key in last_of_tuple:
            merged[sock] = merged.get(last_of_tuple[key], last_of_tuple[key])
        last_of_tuple[key] = sock
    groups: dict[int, list[int]] = {}
    for sock in rows:
        groups.setdefault(merged.get(sock, sock), []).append(sock)
    out = []
    for head, socks in groups.items():
        packets = [x for s in socks for x in rows[s]]
        out.append(Flow(head, tuple(sorted(packets, key=lambda x: (x[0].time_ns, x[0].id))), tuple(sorted(socks))))
    return out


def _ids(packets: Iterable[Packet]) -> tuple[int, ...]:
    return tuple(p.id for p in packets)


def _refs(packets: Sequence[Packet]) -> str:
    return " ".join(f"#{p.id}" for p in packets)


def preview(payload: bytes, width: int = 40) -> str | None:
    """The first line of a text payload, quoted and shortened; None when it is not text."""
    line = payload.split(b"\n", 1)[0].rstrip(b"\r")
    if not line or any(b < 0x20 or b > 0x7E for b in line):
        return None
    text = line.decode("ascii")
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def _module(path: str) -> str:
    """'smtplib.py', 'http/client.py', 'urllib/request.py' (a package's module keeps its package)."""
    parent, base = os.path.split(path.replace("\\", "/"))
    package = os.path.basename(parent)
    if package and is_library(path) and not re.match(r"python\d|site-packages|dist-packages|lib$", package):
        return f"{package}/{base}"
    return base


def _library_path(frames: Sequence[Frame]) -> str:
    """The library functions a call was made under, outermost first: 'smtplib.py ehlo() → getreply()'."""
    lib = [f for f in frames if is_library(f.file) and not is_transport(f.file)]
    if not lib:
        return ""
    names = [f"{f.function}()" for f in lib]
    if len(names) > 2:
        names = [names[0], "…", names[-1]]
    return f"{_module(lib[0].file)} {' → '.join(names)}"


def _call_text(c: Call) -> str:
    where = _library_path(c.frames)
    return f"{c.op}()" + (f" under {where}" if where else "")


# -- SYN retransmissions ---------------------------------------------------------------------------------------


def _ratio_word(r: float) -> str:
    if 0.8 <= r <= 1.25:
        return "same"
    if 1.6 <= r <= 2.5:
        return "doubled"
    return f"×{r:.1f}"


def syn_spacing(trace: Trace) -> list[Finding]:
    """Copies of one SYN (same 4-tuple and ISN): the waits between them, measured, and what ended them."""
    groups: dict[tuple[str, int, str, int, int], list[Packet]] = {}
    for p in trace.packets:
        if p.proto == "TCP" and "S" in p.flags and "A" not in p.flags:
            groups.setdefault((p.src, p.sport, p.dst, p.dport, p.seq), []).append(p)
    found = []
    for (src, sport, dst, dport, _), syns in groups.items():
        if len(syns) < 2:
            continue
        gaps = [b.time_ns - a.time_ns for a, b in zip(syns, syns[1:], strict=False)]
        text = (f"the waits between the {len(syns)} copies of the SYN to {endpoint(dst, dport)} were "
                + ", ".join(duration(g) for g in gaps))
        if len(gaps) >= 2:
            words = [_ratio_word(b / a) for a, b in zip(gaps, gaps[1:], strict=False) if a > 0]
            if all(w == "same" for w in words):
                text += (": each the same as the one before, not doubling (Linux 6.7 and later keep the first "
                         "waits equal: net.ipv4.tcp_syn_linear_timeouts, 4 by default)")
            elif all(w == "doubled" for w in words):
                text += ": each twice the one before (exponential backoff)"
            else:
                text += ": from one wait to the next: " + ", ".join(words)
        last = syns[-1]
        replies = [p for p in trace.packets if p.proto == "TCP" and (p.src, p.sport) == (dst, dport)
                   and (p.dst, p.dport) == (src, sport) and p.time_ns >= syns[0].time_ns
                   and ("R" in p.flags or "S" in p.flags)]
        connect = next((c for c in trace.calls if c.op in CONNECTS and c.local is not None
                        and c.local[1] == sport and c.start_ns <= syns[0].time_ns <= c.end_ns + 100_000_000), None)
        if replies:
            r = replies[0]
            text += f"; {flag_name(r.flags)} (#{r.id}) answered after SYN #{len(syns)}"
        elif connect is not None and connect.failed:
            after = connect.end_ns - last.time_ns
            if connect.errno is None and "Timeout" in connect.error:
                text += (f"; nothing came back, and {connect.op}() gave up after "
                         f"{duration(connect.end_ns - connect.start_ns)} ({duration(after)} after the last SYN) "
                         f"with {connect.error}, without an errno: the program's own timeout ended the wait, "
                         "not the kernel")
            elif connect.errno is not None:
                text += (f"; nothing came back, and the kernel gave up: {connect.op}() failed with "
                         f"{errnos.name(connect.errno)} ({connect.errno}) {duration(after)} after the last SYN")
        else:
            text += "; nothing came back"
        found.append(Finding(text, _ids(syns)))
    return found


def tried_addresses(calls: Sequence[Call]) -> list[Finding]:
    """create_connection tries each address getaddrinfo returned, and raises the first error when all fail."""
    groups: dict[int, list[Call]] = {}
    for c in calls:
        frame = next((f for f in reversed(c.frames) if f.function == "create_connection"), None)
        if c.op in CONNECTS and frame is not None and c.remote is not None:
            groups.setdefault(frame.instance, []).append(c)
    found = []
    for group in groups.values():
        if len(group) < 2:
            continue
        tries = ", ".join(f"{endpoint(*c.remote)} → " + (f"{errnos.name(c.errno)} ({c.errno})" if c.errno is not None
                                                          else (c.error or "connected"))
                          for c in group if c.remote is not None)
        text = f"create_connection tried {len(group)} addresses in turn: {tries}"
        if all(c.failed for c in group):
            text += "; when all had failed it raised the first error"
        found.append(Finding(text))
    return found


def ip_version(trace: Trace, flows: Sequence[Flow]) -> list[Finding]:
    found = []
    for flow in flows:
        six = [p for p, _, _ in flow.packets if p.proto in ("TCP", "UDP") and ":" in p.src]
        if not six:
            continue
        first = six[0]
        sizes = ", ".join(f"#{p.id} {p.length}" for p in six[:4]) + (" …" if len(six) > 4 else "")
        found.append(Finding(f"this flow ran over IPv6, {endpoint(first.src, first.sport)} → "
                             f"{endpoint(first.dst, first.dport)}: frame sizes {sizes} bytes (an IPv6 header "
                             "is 40 bytes, an IPv4 header 20)", _ids(six[:4])))
    return found


# -- UDP and ICMP ---------------------------------------------------------------------------------------------

_ICMP4 = {(3, 0): "network unreachable", (3, 1): "host unreachable", (3, 3): "port unreachable",
          (3, 4): "fragmentation needed", (3, 13): "administratively prohibited", (11, 0): "TTL exceeded"}
_ICMP6 = {(1, 0): "no route to destination", (1, 1): "administratively prohibited",
          (1, 3): "address unreachable", (1, 4): "port unreachable", (2, 0): "packet too big",
          (3, 0): "hop limit exceeded"}


def icmp_errors(trace: Trace, alignment: Alignment) -> list[Finding]:
    calls = {c.id: c for c in trace.calls}
    found = []
    for icmp in trace.packets:
        q = icmp.quoted
        if q is None or icmp.icmp is None:
            continue
        name = (_ICMP4 if icmp.proto == "ICMP" else _ICMP6).get(icmp.icmp, "error")
        what = f"{icmp.proto} {name} (type {icmp.icmp[0]} code {icmp.icmp[1]}, #{icmp.id}) from {icmp.src}"
        sent = [p for p in trace.packets if p.proto == q.proto and (p.src, p.sport, p.dst, p.dport)
                == (q.src, q.sport, q.dst, q.dport) and p.time_ns <= icmp.time_ns]
        ids = [icmp.id]
        if sent:
            d = sent[-1]
            body = preview(d.payload)
            text = (f"{what} came back {duration(icmp.time_ns - d.time_ns)} after the datagram #{d.id} "
                    f"({len(d.payload)} bytes{', ' + body if body else ''}), quoting it "
                    f"({q.proto} {endpoint(q.src, q.sport)} → {endpoint(q.dst, q.dport)})")
            ids.insert(0, d.id)
            if name == "port unreachable":
                text += f": no socket was bound to {q.proto} port {q.dport} there"
            sender = next((calls[x.call] for x in alignment.pairs_of(d.id) if x.call in calls), None)
            if sender is not None and not sender.failed:
                when = ("though the error came while it was still running"
                        if sender.start_ns <= icmp.time_ns <= sender.end_ns else "before the error came")
                text += (f"; {sender.op}() returned {sender.result} bytes, {when}: sending a datagram waits for "
                         "no answer")
        else:
            text = (f"{what} quotes a datagram {endpoint(q.src, q.sport)} → {endpoint(q.dst, q.dport)} that the "
                    "capture did not see leave")
        found.append(Finding(text, tuple(ids)))
        learner = next((calls[x.call] for x in alignment.pairs_of(icmp.id) if x.call in calls), None)
        if learner is not None and learner.errno is not None:
            text = (f"the program learned of it when {learner.op}() failed with "
                    f"{errnos.name(learner.errno)} ({learner.errno})")
            if learner.errno == 111:
                text += ", the errno a TCP refusal gives, carried here by ICMP instead of RST"
            found.append(Finding(text, (icmp.id,)))
    return found


def udp_replies(trace: Trace, flows: Sequence[Flow]) -> list[Finding]:
    found = []
    for flow in flows:
        udp = [(p, side, c) for p, side, c in flow.packets if p.proto == "UDP"]
        out = [p for p, side, _ in udp if side == "out"]
        back = [p for p, side, _ in udp if side == "in"]
        if not out:
            continue
        if back:
            body = preview(back[0].payload)
            found.append(Finding(f"{len(back)} datagram(s) came back from {endpoint(back[0].src, back[0].sport)}: "
                                 f"#{back[0].id}, {len(back[0].payload)} bytes{', ' + body if body else ''}: "
                                 "a socket there received and answered", _ids(back)))
            continue
        quoted = any(p.quoted is not None and (p.quoted.src, p.quoted.sport) == (out[0].src, out[0].sport)
                     for p in trace.packets)
        if not quoted:
            failed = [c for _, side, c in udp if c is not None and c.failed]
            text = f"no reply and no ICMP error came back for the {len(out)} datagram(s) sent ({_refs(out)})"
            recvs = [c for c in trace.calls if c.op in RECVS and c.failed and c.start_ns >= out[0].time_ns]
            if recvs or failed:
                c = (recvs or failed)[0]
                text += f"; {c.op}() gave up after {duration(c.end_ns - c.start_ns)} with {c.error}"
            found.append(Finding(text, _ids(out)))
    return found


# -- TLS ------------------------------------------------------------------------------------------------------

_TLS_TYPES = {0x14: "change_cipher_spec", 0x15: "alert", 0x16: "handshake", 0x17: "application_data",
              0x18: "heartbeat"}


def is_tls_record(data: bytes) -> bool:
    return len(data) >= 5 and data[0] in _TLS_TYPES and data[1] == 3 and data[2] <= 4


def is_client_hello(data: bytes) -> bool:
    return is_tls_record(data) and data[0] == 0x16 and len(data) > 5 and data[5] == 0x01


def tls_mismatch(trace: Trace, flows: Sequence[Flow]) -> list[Finding]:
    found = []
    for flow in flows:
        tcp = flow.tcp()
        hello = next((p for p, side, _ in tcp if side == "out" and is_client_hello(p.payload)), None)
        if hello is None:
            continue
        text = (f"a TLS ClientHello went out (#{hello.id}, {len(hello.payload)} bytes: a handshake record, "
                f"0x16 0x{hello.payload[1]:02x} 0x{hello.payload[2]:02x} …)")
        covering = [c for c in trace.calls if c.start_ns <= hello.time_ns <= c.end_ns and c.socket in flow.all_sockets]
        if not covering:
            text += ("; no recorded socket call was running when it left: the ssl module writes from C (OpenSSL), "
                     "below the socket methods the probe records")
        reply = next((p for p, side, _ in tcp if side == "in" and p.payload), None)
        if reply is None:
            found.append(Finding(text + "; no data came back", (hello.id,)))
        elif is_tls_record(reply.payload):
            kind = _TLS_TYPES[reply.payload[0]]
            found.append(Finding(text + f"; the peer answered in TLS: #{reply.id} is a {kind} record",
                                 (hello.id, reply.id)))
        else:
            found.append(Finding(text, (hello.id,)))
            d = reply.payload
            order = (f"{duration(hello.time_ns - reply.time_ns)} before the ClientHello left: the peer spoke first"
                     if reply.time_ns < hello.time_ns else f"{duration(reply.time_ns - hello.time_ns)} after it")
            body = preview(d)
            text = (f"the peer's first bytes (#{reply.id}, {len(d)} bytes) came {order}, and they are "
                    f"{'clear text: ' + body if body else 'not a TLS record'}")
            if len(d) >= 5:
                text += (f"; read as a TLS record header they give content type 0x{d[0]:02x}, version "
                         f"0x{d[1]:02x}{d[2]:02x}, length {int.from_bytes(d[3:5], 'big')}: no TLS version is "
                         f"0x{d[1]:02x}{d[2]:02x}")
            exc = next((e for e in chain(trace.exception) if e.type.startswith("ssl.")), None)
            if exc is not None:
                text += f"; ssl raised {exc.type}: {exc.message}"
            found.append(Finding(text, (reply.id,)))
    return found


# -- ends of connections -------------------------------------------------------------------------------------


def _established(tcp: Sequence[tuple[Packet, str, Call | None]], before: int) -> bool:
    return any("S" in p.flags and "A" in p.flags and p.time_ns <= before for p, _, _ in tcp)


def resets(trace: Trace, flows: Sequence[Flow]) -> list[Finding]:
    """RST on a connection whose handshake completed: an abort, not a refusal."""
    found = []
    for flow in flows:
        tcp = flow.tcp()
        for i, (rst, side, call) in enumerate(tcp):
            if "R" not in rst.flags or not _established(tcp, rst.time_ns):
                continue
            if side == "in":
                sent = [p for p, s, _ in tcp[:i] if s == "out" and p.payload]
                got = sum(len(p.payload) for p, s, _ in tcp[:i] if s == "in")
                text = f"the peer reset the established connection: {flag_name(rst.flags)} (#{rst.id})"
                ids = [rst.id]
                if sent:
                    last = sent[-1]
                    body = preview(last.payload)
                    text += (f" came {duration(rst.time_ns - last.time_ns)} after the program's last data "
                             f"(#{last.id}, {len(last.payload)} bytes{', ' + body if body else ''})")
                    end = (last.seq + len(last.payload)) % (1 << 32)
                    acked = next((p for p, s, _ in tcp[:i] if s == "in" and "A" in p.flags and p.ack == end
                                  and p.time_ns >= last.time_ns), None)
                    if acked is not None:
                        text += f", which the peer's kernel had acknowledged (#{acked.id})"
                        ids.append(acked.id)
                    ids.insert(0, last.id)
                text += f"; before it the peer had sent {got} bytes"
                if call is not None and call.errno is not None:
                    text += f"; {call.op}() met it: {errnos.name(call.errno)} ({call.errno})"
                    if rst.time_ns < call.start_ns:
                        text += (f", though the RST had come {duration(call.start_ns - rst.time_ns)} before the "
                                 "call: the error waited on the socket")
                found.append(Finding(text, tuple(ids)))
            else:
                got = sum(len(p.payload) for p, s, _ in tcp[:i] if s == "in")
                read = sum(c.result for c in trace.calls if c.socket in flow.all_sockets and c.op in RECVS
                           and isinstance(c.result, int))
                text = f"the program's side ended the connection with {flag_name(rst.flags)} (#{rst.id}), not FIN"
                if got > read:
                    text += (f"; {got} bytes had come from the peer and recorded recv calls read {read} of them: "
                             "a kernel answers close() with RST when received data is left unread")
                found.append(Finding(text, (rst.id,)))
    return found


def peer_closes(trace: Trace, flows: Sequence[Flow]) -> list[Finding]:
    """The peer's FIN before the program's: the program reads end-of-file."""
    found = []
    for flow in flows:
        tcp = flow.tcp()
        fins = [(p, s, c) for p, s, c in tcp if "F" in p.flags]
        if not fins or fins[0][1] != "in":
            continue
        fin, _, call = fins[0]
        synack = next((p for p, _, _ in tcp if "S" in p.flags and "A" in p.flags), None)
        got = sum(len(p.payload) for p, s, _ in tcp if s == "in" and p.time_ns <= fin.time_ns)
        text = f"the peer closed its side first: {flag_name(fin.flags)} (#{fin.id})"
        if synack is not None:
            text += f" {duration(fin.time_ns - synack.time_ns)} after its SYN/ACK"
        text += f", having sent {got} bytes" if got else ", having sent no data at all"
        ids = [fin.id]
        eof = next((c for c in trace.calls if c.socket in flow.all_sockets and c.op in RECVS and c.result == 0
                    and c.end_ns >= fin.time_ns), None)
        if eof is not None:
            text += f"; {eof.op}() returned 0 bytes for it: end of file"
            raiser = _raised_above(trace.exception, eof)
            if raiser is not None:
                exc, frame = raiser
                text += f", and {_module(frame.file)} {frame.function}() then raised {exc.type}"
                if exc.message:
                    text += f": {exc.message}"
        elif call is not None and call.failed:
            text += f"; {call.op}() met it and failed with {call.error}"
        own = next((p for p, s, _ in fins[1:] if s == "out"), None)
        if own is not None:
            text += f"; the program's FIN (#{own.id}) followed {duration(own.time_ns - fin.time_ns)} later"
            ids.append(own.id)
        else:
            text += "; no FIN from the program's side was captured"
        found.append(Finding(text, tuple(ids)))
    return found


def _raised_above(exc: ExceptionInfo | None, call: Call) -> tuple[ExceptionInfo, Frame] | None:
    """The exception raised in a frame that `call` was made under, and that frame (innermost such frame)."""
    if exc is None or exc.call is not None:
        return None
    instances = {f.instance for f in call.frames}
    for e in reversed(chain(exc)):
        frame = e.frames[-1] if e.frames else None
        if frame is not None and frame.instance in instances:
            return e, frame
    return None


# -- conversations ---------------------------------------------------------------------------------------------

_SMTP_REPLY = re.compile(rb"^(\d{3})[ -]")  # SMTP, FTP
_STATUS_REPLY = re.compile(rb"^(\+OK|-ERR|\* OK|\* NO|\* BAD|\* BYE|\* PREAUTH)\b")  # POP3, IMAP greetings


def _reply_text(data: bytes) -> str | None:
    m = _SMTP_REPLY.match(data) or _STATUS_REPLY.match(data)
    if m:
        return m.group(1).decode()
    if data.startswith(b"HTTP/"):
        line = preview(data, 60)
        return line.strip("'\"") if line else None
    return None


def _command_text(data: bytes) -> str:
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if line.startswith((b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ")):
        return line.decode("ascii", "replace")
    word = line.split(b" ", 1)[0].split(b":", 1)[0]
    return word.decode("ascii", "replace").upper() if word.isalpha() and len(word) <= 10 else "(data)"


def _text_turns(data: Sequence[tuple[Packet, str, Call | None]]) -> bool:
    """Every segment that starts a turn (the other side's segment came before it) opens with a text line."""
    previous = ""
    for p, side, _ in data:
        if side != previous and preview(p.payload) is None:
            return False
        previous = side
    return True


def conversation(trace: Trace, flows: Sequence[Flow]) -> list[Finding]:
    """Each data segment of a text conversation with the call that sent or read it; then commands and replies."""
    found = []
    for flow in flows:
        data = [(p, s, c) for p, s, c in flow.tcp() if p.payload]
        if not data or not _text_turns(data):
            continue
        read_by = readers(trace.calls, flow)
        for p, side, call in data[:MAX_SEGMENTS]:
            if side == "in":
                call = read_by.get(p.id, call)
            arrow = "→" if side == "out" else "←"
            body = preview(p.payload) or "(continued)"
            who = ": paired with no call"
            if call is not None:
                expected = SENDS if side == "out" else RECVS
                verb = "sent" if side == "out" else "read"
                who = (f": {verb} by {_call_text(call)}" if call.op in expected
                       else f": {'left' if side == 'out' else 'arrived'} while {_call_text(call)} ran")
            found.append(Finding(f"#{p.id} {arrow} {body} ({len(p.payload)} bytes){who}", (p.id,)))
        if len(data) > MAX_SEGMENTS:
            found.append(Finding(f"… and {len(data) - MAX_SEGMENTS} more data segments"))
        exchange = _exchanges(data)
        if exchange:
            found.append(Finding("commands and replies on the wire: " + ", ".join(t for t, _ in exchange),
                                 tuple(i for _, ids in exchange for i in ids)))
    return found


def readers(calls: Sequence[Call], flow: Flow) -> dict[int, Call]:
    """Which call read each incoming data segment, by counting bytes: a socket's reads take its incoming stream in
    order, so the segment that starts at byte offset o was read by the read whose bytes cover o, whatever call
    was running when the segment arrived. A segment that no recorded read covers is left out (never read, or
    read from C as the ssl module does)."""
    tcp = flow.tcp()
    incoming = [p for p, side, _ in tcp if side == "in" and p.payload]
    if not incoming:
        return {}
    synack = next((p for p, side, _ in tcp if side == "in" and "S" in p.flags), None)
    base = synack.seq + 1 if synack is not None else incoming[0].seq
    reads = sorted((c for c in calls if c.socket in flow.all_sockets and c.op in RECVS and not c.failed
                    and isinstance(c.result, int) and c.result > 0), key=lambda c: (c.start_ns, c.id))
    spans: list[tuple[int, int, Call]] = []
    total = 0
    for c in reads:
        spans.append((total, total + int(c.result), c))
        total += int(c.result)
    out = {}
    for p in incoming:
        offset = (p.seq - base) % (1 << 32)
        hit = next((c for lo, hi, c in spans if lo <= offset < hi), None)
        if hit is not None:
            out[p.id] = hit
    return out


def _exchanges(data: Sequence[tuple[Packet, str, Call | None]]) -> list[tuple[str, tuple[int, ...]]]:
    """'(connection) → 220', 'EHLO → 250', ...: the first reply line after each command of the program."""
    out: list[tuple[str, tuple[int, ...]]] = []
    pending: tuple[str, int] | None = ("(on connecting)", 0)  # a server that speaks first answers the connection
    last_reply = ""
    for p, side, _ in data:
        if side == "out":
            if pending is None or not pending[1]:  # a new command; more of one still unanswered keeps the first
                pending = ("(message)" if last_reply == "354" else _command_text(p.payload), p.id)
            continue
        reply = _reply_text(p.payload)
        if pending is None or reply is None:
            continue
        label, cid = pending
        out.append((f"{label}{f' #{cid}' if cid else ''} → {reply} #{p.id}", ((cid,) if cid else ()) + (p.id,)))
        last_reply, pending = reply, None
    return out


def unpaired_data(flows: Sequence[Flow]) -> list[Finding]:
    loose = [p for flow in flows for p, _, c in flow.tcp() if p.payload and c is None]
    if not loose:
        return []
    return [Finding(f"{len(loose)} data segment(s) were paired with no recorded call: {_refs(loose[:12])}"
                    + (" …" if len(loose) > 12 else ""), _ids(loose))]


# -- layers -----------------------------------------------------------------------------------------------------


def layers_crossed(trace: Trace, alignment: Alignment) -> list[Finding]:
    """The failing call's packets under the frames of more than one library module (e.g. urllib over
    http.client): the path from the program down to the syscall, across the exception chain."""
    origin = origin_call(trace.exception, trace.calls)
    if origin is None or trace.exception is None:
        return []
    pids = alignment.packets_of_call(origin.id)
    if not pids:
        return []
    seen: set[int] = set()
    path: list[list[str | int]] = []  # [module, frames]
    apps: set[str] = set()
    for exc in reversed(chain(trace.exception)):  # the outermost exception's traceback starts at the program
        for f in exc.frames:
            if f.instance in seen or not set(pids) & set(alignment.packets_below(f.instance)):
                continue
            seen.add(f.instance)
            name = _module(f.file)
            if is_library(f.file) and not is_transport(f.file):
                apps.add(name)
            if path and path[-1][0] == name:
                path[-1][1] = int(path[-1][1]) + 1
            else:
                path.append([name, 1])
    if len(apps) < 2:
        return []
    frames = sum(int(n) for _, n in path)
    steps = " → ".join(f"{m} ({n})" for m, n in path)
    return [Finding(f"the packets of {origin.op}() ({' '.join(f'#{i}' for i in pids)}) lie under {frames} "
                    f"traceback frames: {steps} → {origin.op}() in the kernel", pids)]
