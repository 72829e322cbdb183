"""The sentences: one function per fact kind, and the shared phrasing (durations, ends, errors). Pure.

A sentence says what its fact holds and no more. Ends are named by their role in the flow (client: the side that
sent the SYN or the first datagram; server: the other) and address, and "(traced: socket N)" where a traced
socket sat there; never "the program" or "the peer" by assumption, since either end or both may be traced.
Errors are named in their own namespace: "ECONNREFUSED (111)" for a kernel errno, "EAI_NONAME (-2), a resolver
error" for getaddrinfo, "OpenSSL SSL_ERROR_SSL (1) [WRONG_VERSION_NUMBER]", "a Python timeout (no errno)".

It is long on purpose: one short function per kind of fact, so that all the report's phrasing is in one module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..model import EAI, ERRNO, HERRNO, OPENSSL, TIMEOUT, Addr, Call, Fault
from . import facts as F
from .scene import End


def duration(ns: int) -> str:
    """A human duration: 14 µs, 3.2 ms, 1.02 s."""
    ns = abs(ns)
    if ns < 10_000_000:
        return f"{round(ns / 1000)} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.2f} s"


def endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def addr(a: Addr | None) -> str:
    return endpoint(*a) if a else "?"


def flag_name(flags: str) -> str:
    """'RA' -> 'RST/ACK', 'S' -> 'SYN', 'SA' -> 'SYN/ACK', 'FA' -> 'FIN/ACK', 'PA' -> 'PSH/ACK'."""
    names = {"S": "SYN", "F": "FIN", "R": "RST", "P": "PSH", "U": "URG", "E": "ECE", "C": "CWR", "N": "NS"}
    main = [names[f] for f in flags if f in names]
    return "/".join(main + (["ACK"] if "A" in flags else [])) or "none"


def count(n: int, word: str, plural: str = "") -> str:
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def fault_text(f: Fault) -> str:
    """An error in its own namespace."""
    if f.namespace == ERRNO:
        return f"{f.name or 'errno'} ({f.code})"
    if f.namespace == EAI:
        return f"{f.name or 'EAI'} ({f.code}), a resolver error (netdb.h), not a kernel errno"
    if f.namespace == HERRNO:
        return f"{f.name or 'h_errno'} ({f.code}), a resolver error (netdb.h h_errno)"
    if f.namespace == OPENSSL:
        reason = f" [{f.library + ': ' if f.library else ''}{f.reason}]" if f.reason else ""
        return f"OpenSSL {f.name or 'error'} ({f.code}){reason}, not a kernel errno"
    if f.namespace == TIMEOUT:
        return f"{f.type} (a Python timeout: no errno)"
    return f.line


def short_fault(f: Fault | None) -> str:
    if f is None:
        return "?"
    if f.namespace == ERRNO:
        return f"{f.name or 'errno'} ({f.code})"
    if f.namespace in (EAI, HERRNO):
        return f"{f.name} ({f.code})"
    if f.namespace == OPENSSL:
        return f"OpenSSL {f.reason or f.name}"
    if f.namespace == TIMEOUT:
        return f"{f.type} (no errno)"
    return f.type


@dataclass
class Words:
    """What sentences need beyond their fact: the calls (for operation names and errors)."""

    calls: Mapping[int, Call]
    many_pids: bool = False

    def end(self, e: End, role: str) -> str:
        text = f"the {role} {addr(e.addr)}"
        if e.traced:
            socks = ", ".join(str(s) for s in e.sockets)
            pid = f", pid {', '.join(map(str, e.pids))}" if self.many_pids and e.pids else ""
            text += f" (traced: socket {socks}{pid})"
        return text

    def op(self, call_id: int | None) -> str:
        c = self.calls.get(call_id) if call_id is not None else None
        return f"{c.op}()" if c is not None else "a call"

    def error(self, call_id: int | None) -> str:
        c = self.calls.get(call_id) if call_id is not None else None
        if c is None:
            return "?"
        if c.fault is not None:
            return short_fault(c.fault)
        if c.reported:
            import errno

            return f"{errno.errorcode.get(c.reported, 'errno')} ({c.reported})"
        return "?"


def _refused(f: F.Refused, w: Words) -> str:
    copies = f" (after {count(f.copies, 'SYN')})" if f.copies > 1 else ""
    text = (f"{w.end(f.client, 'client')} → {w.end(f.server, 'server')}: the SYN (#{f.syn}) was answered with "
            f"RST/ACK (#{f.rst}) after {duration(f.delay_ns)}{copies}: ")
    if f.reason == "NO_SOCKET":
        text += f"no socket was listening on {addr(f.server.addr)} (the kernel's tcp_send_reset reason NO_SOCKET)"
    elif f.reason:
        text += f"the kernel reset it (tcp_send_reset reason {f.reason})"
    else:
        text += f"nothing accepted connections on {addr(f.server.addr)} (no listening socket there, or a firewall " \
                "that rejects with RST)"
    if f.pending is not None:
        text += f"; the non-blocking {w.op(f.pending)} had returned EINPROGRESS (in progress, not an error)"
    if f.call is not None:
        call = w.calls.get(f.call)
        verb = "failed with" if call is not None and call.fault is not None else "returned"
        text += f"{', then' if f.pending is not None else ';'} {w.op(f.call)} {verb} {w.error(f.call)}"
    return text


def _unanswered(f: F.Unanswered, w: Words) -> str:
    text = (f"no answer to the SYN from {w.end(f.client, 'client')} to {w.end(f.server, 'server')} was captured "
            f"({count(f.copies, 'copy', 'copies')} sent)")
    if f.ended_by == "timeout":
        text += (f"; after {duration(f.waited_ns)} ({duration(f.after_last_ns)} after the last SYN) the client's "
                 f"own timeout ended the wait with {f.error or 'TimeoutError'}, which has no errno: the kernel had "
                 "not given up")
    elif f.ended_by == "closed":
        text += f"; after {duration(f.waited_ns)} the client closed its socket while it still waited"
    elif f.ended_by == "errno":
        text += f"; the kernel gave up after {duration(f.waited_ns)}: {w.op(f.calls[-1])} gave " \
                f"{w.error(f.calls[-1])}" if f.calls else f"; the kernel gave up after {duration(f.waited_ns)}"
    else:
        text += "; the capture ended while it waited"
    return text


def _syn_retransmits(f: F.SynRetransmits, w: Words) -> str:
    waits = ", ".join(duration(x) for x in f.waits_ns)
    text = (f"the SYN from {w.end(f.client, 'client')} to {addr(f.server.addr)} was sent "
            f"{len(f.waits_ns) + 1} times; the waits between the copies were {waits}")
    return text + {
        "equal": ": each the same as the one before, not doubling (Linux 6.7 and later keep the first waits "
                 "equal: net.ipv4.tcp_syn_linear_timeouts)",
        "doubling": ": each twice the one before (exponential backoff)",
        "mixed": ": neither equal nor each twice the one before",
    }.get(f.pattern, "")


def _established(f: F.Established, w: Words) -> str:
    text = (f"{w.end(f.client, 'client')} → {w.end(f.server, 'server')}: SYN/ACK (#{f.synack}) came back after "
            f"{duration(f.delay_ns)}: the handshake completed")
    if f.accepted_by is not None:
        text += f"; the server's accept() (call {f.accepted_by}) took the connection"
    elif f.listener_traced:
        text += "; the server's kernel completed it in the accept queue, and no recorded accept() took it"
    return text


def _closed(f: F.Closed, w: Words) -> str:
    second_role = "server" if f.first_role == "client" else "client"
    text = (f"{w.end(f.first, f.first_role)} closed its side first: FIN (#{f.fin}) {duration(f.after_ns)} into the "
            f"connection, having sent {count(f.sent_first, 'byte')}; the {second_role} had sent "
            f"{count(f.sent_second, 'byte')} by then")
    if f.eof_call is not None:
        text += f"; {f.eof_op}() at the {second_role} returned 0 bytes for it: end of file"
        if f.raised:
            text += f", and {f.raised_where} then raised {f.raised}, not a socket call"
    if f.other_fin is not None:
        text += f"; the {second_role}'s FIN (#{f.other_fin}) followed {duration(f.gap_ns)} later"
    else:
        text += f"; no FIN from the {second_role} was captured"
    return text


_RESET_REASONS = {
    "TCP_ABORT_ON_CLOSE": "its close() found received data it had not read (tcp_send_reset reason TCP_ABORT_ON_CLOSE)",
    "TCP_ABORT_ON_LINGER": "it closed with SO_LINGER 0 (tcp_send_reset reason TCP_ABORT_ON_LINGER)",
    "TCP_ABORT_ON_DATA": "data arrived after it had closed for reading (tcp_send_reset reason TCP_ABORT_ON_DATA)",
    "TCP_TIMEWAIT_SOCKET": "its socket was already in TIME_WAIT (tcp_send_reset reason TCP_TIMEWAIT_SOCKET)",
    "NO_SOCKET": "no socket matched the segment any more (tcp_send_reset reason NO_SOCKET)",
    "TCP_STATE": "the kernel aborted the connection from the socket's state (tcp_send_reset reason TCP_STATE, the "
                 "reason of an abortive close or disconnect, such as close() with SO_LINGER 0)",
}


def _reset(f: F.Reset, w: Words) -> str:
    receiver_role = "server" if f.sender_role == "client" else "client"
    text = f"{w.end(f.sender, f.sender_role)} ended the connection with RST (#{f.rst}), not FIN"
    if f.after_fin is not None:
        text += f": it had already closed (FIN #{f.after_fin})"
        if f.answered is not None:
            text += f", and the reset answers data that came after that (#{f.answered})"
        if f.reason:
            text += f" (tcp_send_reset reason {f.reason}{', state ' + f.state if f.state else ''})"
    elif f.reason:
        text += ": " + _RESET_REASONS.get(f.reason, f"tcp_send_reset reason {f.reason}"
                                          + (f", state {f.state}" if f.state else ""))
        if f.linger0 is not None:
            text += f"; it had set SO_LINGER 0 (call {f.linger0})"
    elif f.linger0 is not None:
        text += f": it had set SO_LINGER 0 (call {f.linger0}), so its close() sends RST instead of FIN"
    elif f.unread:
        text += (f": {count(f.unread, 'byte')} of the {count(f.received, 'byte')} it had received were never read "
                 "by a recorded call, and a kernel answers close() with RST when received data is left unread")
    if f.last_data is not None:
        text += f"; it came after the {receiver_role}'s last data (#{f.last_data})"
        if f.acked is not None:
            text += f", which the {f.sender_role}'s kernel had acknowledged (#{f.acked})"
    if f.met_by is not None:
        text += f"; {w.op(f.met_by)} at the {receiver_role} met it: {w.error(f.met_by)}"
        if f.waited_ns > 0:
            text += f", though the RST had come {duration(f.waited_ns)} before the call: the error waited on the socket"
    return text


def _zero_window(f: F.ZeroWindow, w: Words) -> str:
    return (f"{w.end(f.side, 'side')} advertised a zero window {count(f.count, 'time')} over "
            f"{duration(f.lasted_ns)}: its receive buffer was full, what it received was not being read")


def _unsent(f: F.Unsent, w: Words) -> str:
    when = {"RST": f"the RST (#{f.ended})", "FIN": f"the FIN (#{f.ended})"}.get(f.ended_by, "the capture ended")
    return (f"the send calls of {w.end(f.sender, 'sender')} reported {count(f.written, 'byte')} written, but only "
            f"{count(f.left, 'byte')} left it on the wire before {when}: {count(f.written - f.left, 'byte')} were "
            "still in its kernel's send buffer (a send call returns once the kernel has the bytes, not once they "
            "are delivered)")


def _read_timeout(f: F.ReadTimeout, w: Words) -> str:
    text = f"{w.end(f.waiter, 'waiting side')} sent its request"
    if f.request is not None:
        text += f" (#{f.request})"
    if f.ack is not None:
        text += f", which the other side's kernel acknowledged (#{f.ack})"
    timeout = f" of {f.timeout_s:g} s" if f.timeout_s else ""
    if f.call is None:
        return text + (f"; then nothing came back for {duration(f.silent_ns)}, until it closed the connection: its "
                       f"own timeout ({f.raised}, no errno) ended the wait, the request had arrived, the answer "
                       "had not")
    return text + (f"; then nothing came back for {duration(f.silent_ns)}, and its own timeout{timeout} ended "
                   f"{w.op(f.call)} with {w.error(f.call)}: the request had arrived, the answer had not")


def _stale(f: F.Stale, w: Words) -> str:
    text = (f"{w.end(f.sender, 'side')} sent data (#{f.data}) into a connection that {w.end(f.closer, 'other side')} "
            f"had closed {duration(f.gap_ns)} earlier (its FIN #{f.fin} had arrived)")
    if f.answer is not None:
        text += f"; the other side answered it with RST (#{f.answer})"
    return text


def _retransmits(f: F.Retransmits, w: Words) -> str:
    return f"{count(f.count, 'data segment')} from {addr(f.side.addr)} were sent again (retransmissions; " \
           f"first: #{f.packets[0]})"


def _bytes(f: F.Bytes, w: Words) -> str:
    return (f"on the wire {addr(f.client.addr)} sent {count(f.from_client, 'byte')} and {addr(f.server.addr)} "
            f"sent {count(f.from_server, 'byte')}")


def _icmp(f: F.IcmpError, w: Words) -> str:
    what = f"the {f.proto} datagram" if f.proto == "UDP" else "the segment"
    head = f"{what} (#{f.datagram}) " if f.datagram is not None else f"a {f.proto} packet "
    text = (f"{head}from {w.end(f.sender, 'sender')} to {addr(f.target)} was answered "
            + (f"{duration(f.delay_ns)} later " if f.datagram is not None else "")
            + f"by ICMP {f.meaning} (type {f.icmp_type} code {f.icmp_code}, #{f.icmp}) from {f.reporter}")
    if f.meaning == "port unreachable":
        text += f": no socket was bound to {f.proto} port {f.target[1]} there"
    if f.sent_by is not None and f.sent_returned is not None:
        text += f"; {w.op(f.sent_by)} had returned {f.sent_returned}: sending a datagram waits for no answer"
    if f.told == "call":
        text += f"; the socket was connected, so the kernel told it: {w.op(f.learner)} failed with " \
                f"{w.error(f.learner)}"
        if f.error == "ECONNREFUSED":
            text += ", the errno of a TCP refusal, carried by ICMP instead of RST"
    elif f.told == "unconnected":
        text += "; the socket was not connected, and an unconnected socket is never told of ICMP errors"
        if f.timed_out is not None:
            text += f": its {w.op(f.timed_out)} waited until it failed with {w.error(f.timed_out)}"
    return text


def _datagrams(f: F.Datagrams, w: Words) -> str:
    text = (f"{w.end(f.first, 'sender')} sent {count(f.sent, 'datagram')} ({count(f.bytes_sent, 'byte')}) to "
            f"{w.end(f.second, 'receiver')}")
    if f.back:
        text += f", and {count(f.back, 'datagram')} ({count(f.bytes_back, 'byte')}) came back"
    else:
        text += "; no datagram came back"
        if f.waited_by is not None:
            text += f", and {w.op(f.waited_by)} gave up with {w.error(f.waited_by)}"
    return text


def _lone_icmp(f: F.LoneIcmp, w: Words) -> str:
    proto, src, dst = f.quoted
    return (f"ICMP {f.meaning} (type {f.icmp_type} code {f.icmp_code}, #{f.icmp}) from {f.reporter} quotes a "
            f"{proto} packet {addr(src)} → {addr(dst)} that the capture did not see")


def _resolve_failed(f: F.ResolveFailed, w: Words) -> str:
    call = w.calls.get(f.call)
    err = fault_text(call.fault) if call is not None and call.fault is not None else f.error
    text = f"getaddrinfo({f.host!r}, {f.port}) failed with {err}"
    if f.queries:
        servers = ", ".join(addr(s) for s in f.servers[:3])
        text += f"; during it the resolver sent {count(f.queries, 'DNS query', 'DNS queries')} to {servers}"
        if f.answers:
            text += ", answered " + ", ".join(sorted(set(f.answers)))
        if f.icmp:
            text += (f"; {count(f.icmp, 'query', 'queries')} came back as ICMP errors (nothing listened for DNS "
                     "there)")
        if not f.answers and not f.icmp:
            text += ", and no answer came back"
    else:
        text += "; no DNS packet was captured during it"
    return text


def _port_wrap(f: F.PortWrap, w: Words) -> str:
    if f.asked > 65535 and f.given == f.asked % 65536:
        text = f"port {f.asked} does not fit in 16 bits: getaddrinfo turned it into {f.given} ({f.asked} mod 65536)"
    else:
        text = f"getaddrinfo turned port {f.asked} into {f.given}"
    if f.first is not None:
        text += f", and the {f.first_what} (#{f.first}) went to {addr(f.first_to)}"
        if not f.carried:
            text += f"; no packet carried port {f.asked}"
    return text


def _dns(f: F.DnsExchange, w: Words) -> str:
    names = ", ".join(f.names) or "?"
    inside = f" (inside {w.op(f.call)}, call {f.call})" if f.call else ""
    text = (f"{addr(f.client.addr)} asked {addr(f.server.addr)} for {names}{inside}: "
            f"{count(f.queries, 'query', 'queries')}")
    if f.answers:
        text += ", answered " + ", ".join(f.answers[:6])
    elif f.icmp:
        text += f", answered by {count(f.icmp, 'ICMP error')}"
    else:
        text += ", no answer captured"
    return text


def _tls_hello(f: F.TlsHello, w: Words) -> str:
    text = f"{w.end(f.client, 'client')} sent a TLS ClientHello (#{f.hello}, {count(f.hello_bytes, 'byte')})"
    if f.reply == "none":
        text += "; no data came back"
    elif f.reply == "tls":
        text += f"; {w.end(f.server, 'server')} answered in TLS: #{f.reply_packet} is {f.reply_what}"
    else:
        order = (f"{duration(f.reply_gap_ns)} before the ClientHello left: the server spoke first" if f.reply_first
                 else f"{duration(f.reply_gap_ns)} after it")
        body = f"clear text: '{f.reply_what}'" if f.reply_what else "not a TLS record"
        text += f"; the server's first bytes (#{f.reply_packet}) came {order}, and they are {body}"
        t, version, length = f.header
        if version:
            text += (f"; read as a TLS record header they give content type 0x{t:02x}, version 0x{version:04x}, "
                     f"length {length}: no TLS version is 0x{version:04x}")
    if f.fault:
        text += f"; the client's handshake failed: OpenSSL {f.fault}"
    return text


def _tls_alert(f: F.TlsAlert, w: Words) -> str:
    what = f"{f.level} alert {f.description}" if f.description else "an encrypted alert (its level and reason " \
                                                                     "cannot be read)"
    return f"{w.end(f.sender, f.sender_role)} sent a TLS {what} (#{f.packet})"


def _rejected(f: F.CertificateRejected, w: Words) -> str:
    records = " ".join(f"#{p}" for p in f.server_records[:6])
    text = (f"{w.end(f.client, 'client')} rejected the certificate of {w.end(f.server, 'server')}: its own verdict "
            f"(OpenSSL {f.reason}{': ' + f.detail if f.detail else ''}), after the server had sent its part of the "
            f"handshake ({records or 'records'}); nothing on the wire shows a fault of the server's")
    if f.ended_by is not None:
        text += f"; the client then ended the connection (#{f.ended_by})"
    return text


def _no_starttls(f: F.NoStartTls, w: Words) -> str:
    exts = ", ".join(f.extensions) or "no extensions"
    text = f"{w.end(f.server, 'server')}'s EHLO reply (#{f.reply}) lists {exts}: no STARTTLS"
    if f.raised:
        text += f", and the client raised {f.raised} without sending STARTTLS (smtplib checks the reply itself)"
    return text


def _short_body(f: F.ShortBody, w: Words) -> str:
    text = (f"{w.end(f.server, 'server')} promised Content-Length {f.promised:,} in its {f.status} response "
            f"(#{f.response}) and sent {count(f.delivered, 'byte')} of body before its {f.ended_by} (#{f.end_packet})")
    if f.raised:
        text += f"; the client raised {f.raised}"
    return text


def _exchange(f: F.AppExchange, w: Words) -> str:
    turns = ", ".join(f"{cmd}{f' #{c}' if c else ''} → {reply} #{r}" for cmd, reply, c, r in f.turns[:12])
    more = " …" if len(f.turns) > 12 else ""
    return f"{f.protocol} commands and replies on the wire: {turns}{more}" if turns else \
        f"{f.protocol} data on the wire, with no reply code"


def _call_failed(f: F.CallFailed, w: Words) -> str:
    call = w.calls.get(f.call)
    return f"{f.op}() failed with {fault_text(call.fault)}" if call is not None and call.fault is not None else \
        f"{f.op}() reported {f.name} ({f.code})"


def _some(items: Sequence[str], first: int = 6, last: int = 2) -> str:
    """A long list told by its ends: "a, b, c, d, e, f, …, y, z" (every item when there are few)."""
    if len(items) <= first + last + 1:
        return ", ".join(items)
    return ", ".join([*items[:first], "…", *items[-last:]])


def _runs(items: Sequence[str]) -> str:
    """Repeated neighbours counted: "refused × 9,999, established"."""
    out: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j < len(items) and items[j] == items[i]:
            j += 1
        out.append(items[i] if j - i == 1 else f"{items[i]} × {j - i:,}")
        i = j
    return _some(out)


def _attempts(f: F.Attempts, w: Words) -> str:
    tries = _some([f"{addr(a)} → {outcome}" for _, a, outcome in f.tries])
    text = f"{f.function}() tried {count(len(f.tries), 'address', 'addresses')} in turn: {tries}"
    if f.raised is not None:
        index = next((i for i, (c, _, _) in enumerate(f.tries, 1) if c == f.raised), 0)
        text += f"; the error that escaped is that of attempt {index} of {len(f.tries)} (call {f.raised})"
    return text


def _retries(f: F.Retries, w: Words) -> str:
    at = _some([f"+{duration(t)}" if t else "+0" for _, t, _ in f.attempts])
    outcomes = _runs([o for _, _, o in f.attempts])
    lib = f" under {f.module}" if f.module else ""
    text = (f"{count(len(f.attempts), 'connection attempt')} to {addr(f.server)}{lib}, one after the other "
            f"(at {at}): {outcomes}")
    if f.gaps_ns:
        text += "; each began " + _some([duration(g) for g in f.gaps_ns]) + " after the one before had failed"
    return text


def _origin(f: F.Origin, w: Words) -> str:
    call = w.calls.get(f.call)
    err = fault_text(call.fault) if call is not None and call.fault is not None else f.error
    text = f"{f.op}() failed with {err}"
    if f.raised_in:
        text += f"; {f.raised_in} raised it as {f.raised_as}"
    if f.wrapper:
        text += f"; {f.wrapped_in} turned it into {f.wrapper} ({f.how})"
    elif f.through:
        text += f"; {', '.join(f.through)} let it through"
    return text


def _built(f: F.Built, w: Words) -> str:
    where = f" ({addr(f.address)})" if f.address else ""
    text = (f"{f.exception} was not raised by a socket call: {f.made_in or 'Python code'} built it from errno "
            f"{f.errno} ({f.name}), which getsockopt(SO_ERROR) read on socket {f.socket}{where}")
    if f.connect is not None:
        text += (f"; that socket's {w.op(f.connect)} had returned at once (non-blocking), and "
                 f"{duration(f.delay_ns)} later getsockopt(SO_ERROR) read the error")
    return text


def _python(f: F.NotFromSocket, w: Words) -> str:
    text = f"{f.exception} was raised in {f.where or 'Python code'}, not by a socket call"
    if f.last_call is not None:
        text += f"; the last socket call below that frame, {f.last_op}(), {f.last_outcome}"
    return text


def _layers(f: F.Layers, w: Words) -> str:
    ids = " ".join(f"#{p}" for p in f.packets[:8])
    steps = " → ".join(f"{m} ({n})" for m, n in f.path)
    return f"the packets of {f.op}() ({ids}) lie under {f.frames} traceback frames: {steps} → {f.op}() in the kernel"


def _group(f: F.Group, w: Words) -> str:
    members = "; ".join(f"{t}" + (f" from {w.op(c)} (call {c})" if c is not None else "") + (f": {e}" if e else "")
                        for t, c, e in f.members[:8])
    return f"{f.exception} holds {count(len(f.members), 'exception')}: {members}"


def _drop(f: F.Drop, w: Words) -> str:
    what = f" (#{f.packets[0]})" if f.packets else ""
    caused = f", and answered it with {f.caused}" if f.caused else ""
    return f"the kernel dropped the incoming packet{what} with reason {f.reason} at {f.location}{caused}"


def _states(f: F.States, w: Words) -> str:
    return f"the kernel moved socket {f.socket} through " + " → ".join(f.states)


def _note(f: F.Note, w: Words) -> str:
    if f.what == "run.no_calls":
        return "the probe saw no socket call and the capture no packet: there is nothing on the wire to line up"
    if f.what == "run.unseen":
        return (f"the capture saw {f.count:,} packets on {f.detail} while the program ran; without the kernel layer "
                "(root, no --no-kernel) wirestack cannot tell which are the program's, since the probe did not "
                "see the calls that made them")
    if f.what == "run.unseen_kernel":
        return (f"the capture saw {f.count:,} packets on {f.detail} while the program ran; the kernel layer showed "
                "no TCP connection opened by the program's threads, and the probe did not see the calls")
    if f.what == "capture.empty":
        return f"no packet of the traced program's flows was captured on {f.detail}"
    if f.what == "capture.dropped":
        return f"the kernel dropped {f.count:,} packets during the capture: pairings may be incomplete"
    if f.what == "ip.v6":
        return (f"this flow ran over IPv6 ({addr(f.addr)}): frame sizes {f.detail} bytes (an IPv6 header is 40 "
                "bytes, an IPv4 header 20)")
    if f.what == "arp.unanswered":
        host = f.addr[0] if f.addr else "?"
        return (f"{count(f.count, 'ARP request')} asked who has {host}, over {f.detail} s, and none was answered: "
                "no host on the link owns that address, so no packet to it could leave")
    return f.what


SENTENCES: dict[type, Callable[..., str]] = {
    F.Refused: _refused, F.Unanswered: _unanswered, F.SynRetransmits: _syn_retransmits, F.Established: _established,
    F.Closed: _closed, F.Reset: _reset, F.ZeroWindow: _zero_window, F.Unsent: _unsent, F.ReadTimeout: _read_timeout,
    F.Stale: _stale, F.Retransmits: _retransmits, F.Bytes: _bytes, F.IcmpError: _icmp, F.Datagrams: _datagrams,
    F.LoneIcmp: _lone_icmp, F.ResolveFailed: _resolve_failed, F.PortWrap: _port_wrap, F.DnsExchange: _dns,
    F.TlsHello: _tls_hello, F.TlsAlert: _tls_alert, F.CertificateRejected: _rejected, F.NoStartTls: _no_starttls,
    F.ShortBody: _short_body, F.AppExchange: _exchange, F.CallFailed: _call_failed, F.Attempts: _attempts,
    F.Retries: _retries, F.Origin: _origin, F.Built: _built, F.NotFromSocket: _python, F.Group: _group,
    F.Layers: _layers,
    F.Drop: _drop, F.States: _states, F.Note: _note,
}

# kinds the text report leaves to the JSON (shown elsewhere in the report, or detail for machines)
QUIET = frozenset({"tcp.bytes", "call.failed", "kernel.states"})


def sentence(fact: F.Fact, words: Words) -> str:
    return SENTENCES[type(fact)](fact, words)


# -- networks ---------------------------------------------------------------------------------------------------


def _forwarded(f: F.Forwarded, w: Words) -> str:
    text = (f"the {f.what} (#{f.packet}) from {addr(f.source)} to {addr(f.target)}, seen on {f.seen_on} with TTL "
            f"{f.ttl_before}, crossed to {f.then_on}: #{f.copy} is the same packet {duration(f.delay_ns)} later, "
            f"with TTL {f.ttl_after}" + (": the router lowered it by one" if f.ttl_before - f.ttl_after == 1 else ""))
    if f.crossed > 1:
        text += f"; {count(f.crossed, 'packet')} of its flow crossed the router"
    return text


def _nat(f: F.NatRewrite, w: Words) -> str:
    (a, b), (c, d) = f.inside, f.outside
    kept = ", keeping the port" if f.port_kept else ", and the port"
    text = (f"NAT: on {f.inside_link} the connection is {addr(a)} → {addr(b)}, on {f.outside_link} it is "
            f"{addr(c)} → {addr(d)}: #{f.packet} and #{f.copy} are the same packet (IP id, sequence number and "
            f"payload agree), and the router rewrote its {f.rewritten}{kept}")
    if f.reply is not None and f.reply_copy is not None:
        text += f"; the answers are rewritten back (#{f.reply} on {f.outside_link} is #{f.reply_copy} on " \
                f"{f.inside_link})"
    return text


def _stopped(f: F.Stopped, w: Words) -> str:
    size = f", up to {f.largest} bytes" if f.what == "segment" else ""
    what = f"the {f.what} (#{f.first})" if f.count == 1 else f"{count(f.count, f.what)} (#{f.first} first{size})"
    one = f.count == 1
    here, there = f.seen_on.split("/", 1)[0], f.missing_on.split("/", 1)[0]
    text = f"{what} from {addr(f.source)} to {addr(f.target)} {'was' if one else 'were'} seen on {f.seen_on} and " \
           f"never on {f.missing_on}"
    if here == there and "/" in f.seen_on:  # both captured inside one host: it took them in and never sent them on
        text += f": the {here} received {'it' if one else 'them'} and did not pass {'it' if one else 'them'} on"
    else:
        text += f": {'it' if one else 'they'} ended on the way between"
    if f.answered_by is not None:
        text += f"; {f.answer} (#{f.answered_by}) came back instead"
    if f.drop is not None:
        text += (f"; {duration(f.drop_after_ns)} after {'it' if one else 'one of them'} the kernel dropped a packet "
                 f"(k{f.drop}: kfree_skb, reason {f.drop_reason} at {f.drop_location}; a time join, since kfree_skb "
                 "names no address)")
    if f.rule:
        text += f"; the {f.rule_host}'s firewall rule `{f.rule}` counted {count(f.rule_packets, 'packet')}"
    return text


def _ttl_origin(f: F.TtlOrigin, w: Words) -> str:
    hops = "it crossed no router" if f.hops == 0 else f"{count(f.hops, 'router')} lowered it on the way"
    text = (f"the {f.what} (#{f.packet}) from {f.sender} arrived with TTL {f.ttl}, and its maker starts from "
            f"{f.initial}: {hops}")
    if f.crossed:
        text += f"; it was seen on {f.crossed} before: it came from beyond the router"
    elif f.maker:
        text += f"; it was seen on no other link: the {f.maker} made it"
        if f.what == "RST":
            text += f", in {f.sender}'s name"
    if f.reference is not None:
        text += f"; packets that do come from {f.sender} arrive with TTL {f.reference_ttl} (#{f.reference})"
    return text


def _path_mtu(f: F.PathMtu, w: Words) -> str:
    df = " with Don't Fragment set" if f.df else ""
    text = (f"path MTU discovery: {addr(f.sender)} sent {count(f.big, 'segment')} of up to {f.largest} bytes{df}, "
            f"and {f.reporter} answered ICMP fragmentation needed, next-hop MTU {f.mtu} "
            f"({count(len(f.icmp), 'time')}, #{f.icmp[0]} first)")
    if f.after is not None:
        text += f"; from #{f.after} on its segments were at most {f.after_largest} bytes: the sender lowered its " \
                "segment size to fit the path"
    if f.beyond_largest:
        text += f"; the far link carried nothing of it above {f.beyond_largest} bytes"
    return text + _mss_text(f.mss, ":" in f.sender[0], f.mtu + 1)


def _mss_text(mss: Sequence[tuple[int, str, int]], v6: bool, too_big: int) -> str:
    """'; the handshake announced MSS 1460 (SYN #3) and 1460 (SYN/ACK #6): ...', when the smaller of them allows
    IP packets of `too_big` bytes or more (the MSS counts the data; IP and TCP headers add at least 40 bytes, 60
    over IPv6)."""
    allows = min((m for _, _, m in mss), default=0) + (60 if v6 else 40)
    if not mss or allows < too_big:
        return ""
    said = " and ".join(f"{m} ({name} #{p})" for p, name, m in mss)
    return (f"; the handshake announced MSS {said}, which allows IP packets of {allows} bytes: an MSS says what "
            "an end will receive, and nothing in the handshake tells of a smaller MTU on the path")


def _unseen(f: F.PeerUnseen, w: Words) -> str:
    who = ", ".join(f.senders)
    if f.direction == "to the peer":
        shown = " ".join(f"#{p}" for p in f.packets[:8]) + (" …" if f.count > 8 else "")
        text = (f"{count(f.count, 'packet')} sent from {who} ({shown}) never appeared in the peer's capture "
                f"({f.peer}), which holds the same conversation: lost between the two")
    else:
        shown = " ".join(f"#{p}" for p in f.peer_frames[:8]) + (" …" if f.count > 8 else "")
        text = (f"{count(f.count, 'packet')} the peer's capture ({f.peer}) shows sent from {who} (its frames "
                f"{shown}) never arrived in this one, which holds the same conversation")
    if f.late:
        text += (f"; {f.late} of them came after the other file's last packet, and a capture file does not say "
                 "when its capture stopped")
    return text


def _doubling(waits: Sequence[int]) -> str:
    """', each wait doubling: ...' only when the recorded waits do double (within 30%)."""
    if len(waits) >= 2 and all(a > 0 and 1.7 <= b / a <= 2.3 for a, b in zip(waits, waits[1:], strict=False)):
        return ", each wait doubling: TCP's retransmission timeout backing off"
    return ""


def _black_hole(f: F.BlackHole, w: Words) -> str:
    waits = ", ".join(duration(x) for x in f.waits_ns)
    text = (f"a path MTU black hole: {count(f.count, 'segment')} of {f.size} bytes from {addr(f.sender)} never "
            f"appeared on {f.missing_on}, while its packets up to {f.crossed_largest} bytes did; "
            f"the first (#{f.first}) was sent {f.sent} times ({waits} apart{_doubling(f.waits_ns)}), and no ICMP "
            "fragmentation needed came back to say why")
    if f.rule:
        text += f"; the firewall rule {f.rule} counted {count(f.rule_packets, 'packet')}: the router did say, " \
                "and its own firewall threw the message away"
    return text + _mss_text(f.mss, ":" in f.sender[0], f.size)


def _fragments(f: F.Fragments, w: Words) -> str:
    who = f"{w.op(f.call)} sent" if f.call is not None else f"{addr(f.source)} sent"
    sizes = ", ".join(map(str, f.sizes))
    offsets = ", ".join(map(str, f.offsets))
    target = addr(f.target) if f.target[1] else f.target[0]
    ids = " #".join(map(str, f.packets[:len(f.sizes)]))
    df = ", Don't Fragment clear" if not f.df else ""
    text = (f"{who} one {f.proto} datagram of {count(f.size, 'byte')} ({f.proto} header included) to {target}: "
            f"larger than the link's MTU, it left as {len(f.sizes)} IP fragments of {sizes} bytes (#{ids}; "
            f"IP id {f.ident}, offsets {offsets}, more-fragments set on all but the last{df}); only the first "
            f"carries the {f.proto} header")
    if f.crossed:
        text += f"; {count(f.crossed, 'fragment')} crossed the router to {f.then_on}: the receiver's kernel puts " \
                "them together"
    return text


def _no_route(f: F.NoRoute, w: Words) -> str:
    links = ", ".join(f.links)
    text = (f"{f.op}() to {addr(f.target)} failed with ENETUNREACH (101) before anything was sent: not one packet "
            f"was captured on {links}")
    if f.routes:
        text += (f"; the {f.host}'s routing table (as its kernel listed it at the start) has "
                 f"{'; '.join(f.routes)}")
        text += f", and {f.covering} would cover {f.target[0]}" if f.covering else \
            f": no default route, and no route covers {f.target[0]}"
    else:
        text += "; the kernel found no route for it (ENETUNREACH is decided before any packet leaves)"
    return text


def _neighbour(f: F.NeighbourUnanswered, w: Words) -> str:
    ask = "ARP request" if f.protocol == "ARP" else "neighbour solicitation"
    many = len(f.requests) > 1
    gaps = f", {', '.join(duration(g) for g in f.gaps_ns)} apart" if f.gaps_ns else ""
    text = (f"{f.asker} asked {count(len(f.requests), 'time')} who has {f.target} ({ask}{'s' if many else ''} "
            f"#{' #'.join(map(str, f.requests[:8]))}{gaps}), and nobody on the link answered")
    if f.call is not None:
        text += f"; {'they were' if many else 'it was'} made for {w.op(f.call)}, which waited {duration(f.waited_ns)}"
        if not f.sent:
            text += ": none of its own packets left, since a packet on a link needs the next hop's hardware " \
                    "address"
        if f.error:
            text += f"; then it failed with {w.error(f.call)}"
    return text


_RCODE_MEANING = {"NXDOMAIN": "the name does not exist", "SERVFAIL": "the server could not answer",
                  "REFUSED": "the server will not answer", "NOERROR": "an answer", "FORMERR": "it misread the query"}


def _dns_tries(f: F.DnsTries, w: Words) -> str:
    names = ", ".join(f.names)
    text = (f"the resolver asked {addr(f.server)} for {names} ({' and '.join(f.types)}"
            f"{', at once' if len(f.types) > 1 else ''}): {count(f.queries, 'query', 'queries')} in "
            f"{count(f.tries, 'try', 'tries')}")
    if f.gaps_ns:
        text += f", {', '.join(duration(g) for g in f.gaps_ns)} apart"
    if f.rcodes:
        kinds = sorted(set(f.rcodes))
        text += "; answered " + ", ".join(f"{k} ({_RCODE_MEANING.get(k, 'rcode')})" for k in kinds) + \
            f", the first after {duration(f.answer_ns)}"
        if f.tries == 1 and "NXDOMAIN" in kinds:
            text += ": an answer is final, so no retry"
        elif f.tries > 1:
            text += ": the resolver tried again, as for no answer"
    else:
        text += "; no answer came"
        if f.tries > 1:
            text += ": the resolver asked again after its timeout"
    if f.error:
        text += f"; {duration(f.after_last_ns)} after the last query getaddrinfo() gave up with {w.error(f.call)}"
    return text


def _counted(f: F.Counted, w: Words) -> str:
    return (f"the {f.host}'s firewall rule `{f.rule}` (chain {f.chain}) matched {count(f.matched, 'packet')} "
            f"({count(f.size, 'byte')}) during the run, by its own counter")


def _clock(f: F.ClockOffset, w: Words) -> str:
    ahead = "ahead of" if f.offset_ns >= 0 else "behind"
    text = (f"{f.peer}'s clock runs {duration(abs(f.offset_ns))} {ahead} {f.this}'s, estimated from "
            f"{count(f.matched, 'packet')} both captures hold (matched by IP id, sequence numbers and payload, not "
            "by time)")
    if f.both_ways:
        text += f": the mean of the two directions' offsets, with a one-way delay of about {duration(f.delay_ns)}"
    else:
        text += ": packets went one way only, so the offset includes the one-way delay"
    return text


SENTENCES.update({
    F.Forwarded: _forwarded, F.NatRewrite: _nat, F.Stopped: _stopped, F.TtlOrigin: _ttl_origin,
    F.PathMtu: _path_mtu, F.BlackHole: _black_hole, F.Fragments: _fragments, F.NoRoute: _no_route,
    F.NeighbourUnanswered: _neighbour, F.DnsTries: _dns_tries, F.Counted: _counted, F.ClockOffset: _clock,
    F.PeerUnseen: _unseen,
})

QUIET = QUIET | {"firewall.counted"}  # told with what it stopped (path.stopped); the JSON has every rule's count
