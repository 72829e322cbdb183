"""Facts: what the data shows, as typed records with their evidence. Pure; no wording here (see `wording`).

Every fact carries the ids of its evidence — `packets`, `calls`, `kernel` events — the traced `sockets` it
concerns and the `flow` it is about, and each kind's own fields. Its `kind` is stable (the JSON's "kind"; a
user's CI may assert on it). A fact also states what it claims about each packet it rests on (`claims`: who sent
it, and what it is), so that a test can check that no two facts disagree about one packet.

Ends are `End`s (address and traced sockets, see `scene`): a fact never says "the program" or "the peer" of
its own accord; either end, or both, may be traced.

Kinds, by what they are about:

    connection   tcp.refused  tcp.unanswered  tcp.syn_retransmits  tcp.established  tcp.closed  tcp.reset
                 tcp.zero_window  tcp.unsent  tcp.read_timeout  tcp.stale  tcp.retransmits  tcp.bytes
    datagrams    udp.icmp  udp.exchange  icmp.error
    names        resolve.failed  resolve.port_wrap  dns.exchange
    TLS          tls.hello  tls.alert  tls.rejected_certificate
    application  smtp.no_starttls  http.short_body  app.exchange
    calls        call.failed  connect.attempts  library.retries
    exceptions   exception.origin  exception.built  exception.python  exception.group  exception.layers
    kernel       kernel.drop  kernel.states
    the run      capture.empty  capture.dropped  run.no_calls  ip.v6  arp.unanswered
    networks     path.forwarded  nat.rewrite  path.stopped  ip.ttl_origin  path.mtu  path.black_hole
                 ip.fragments  route.none  neighbour.unanswered  dns.tries  firewall.counted
    two captures merge.clock  merge.unseen

It is long on purpose: one small record per kind of fact, all in one place, since docs/facts.md is generated from
it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from ..model import Addr, quick_init
from .scene import End

Claim = tuple[int, Addr | None, str]  # (packet id, its sender, what it is: "SYN", "RST", "FIN", "TLS alert"...)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fact:
    kind: ClassVar[str] = ""
    packets: tuple[int, ...] = ()
    calls: tuple[int, ...] = ()
    kernel: tuple[int, ...] = ()
    sockets: tuple[int, ...] = ()
    flow: int | None = None
    time_ns: int = 0  # when it happened (its first evidence), for ordering

    def claims(self) -> Iterator[Claim]:
        return iter(())

    def group(self) -> tuple[Any, ...]:
        """Facts of one kind with the same group are told together in a large run ("× 10,000")."""
        return (self.kind,)

    def fields(self) -> dict[str, Any]:
        """The kind's own fields (not the evidence), as plain data."""
        return {name: plain(getattr(self, name)) for name in _own_fields(type(self))}


_EVIDENCE = frozenset({"packets", "calls", "kernel", "sockets", "flow", "time_ns"})
_OWN: dict[type, tuple[str, ...]] = {}


def _own_fields(cls: type) -> tuple[str, ...]:
    names = _OWN.get(cls)
    if names is None:
        names = _OWN[cls] = tuple(f.name for f in fields(cls) if f.name not in _EVIDENCE)
    return names


_SCALARS = (str, int, float, bool, type(None))


def plain(value: Any) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, End):
        return {"addr": list(value.addr), "sockets": list(value.sockets), "pids": list(value.pids)}
    if isinstance(value, tuple):
        return [v if isinstance(v, _SCALARS) else plain(v) for v in value]
    return value


def _ends(*pairs: tuple[int | None, Addr | None, str]) -> Iterator[Claim]:
    for pid, sender, what in pairs:
        if pid:
            yield (pid, sender, what)


# -- connections -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused(Fact):
    """A SYN answered with RST/ACK before any SYN/ACK."""

    kind: ClassVar[str] = "tcp.refused"
    client: End
    server: End
    syn: int  # the SYN the RST answered
    rst: int
    delay_ns: int
    copies: int = 1  # SYNs sent
    reason: str = ""  # the kernel's tcp_send_reset reason, where recorded (NO_SOCKET ...)
    call: int | None = None  # the call that failed with it (or returned it: connect_ex, getsockopt SO_ERROR)
    error: str = ""  # that call's error name
    pending: int | None = None  # a non-blocking connect() that had returned EINPROGRESS (it did not fail)

    def claims(self) -> Iterator[Claim]:
        return _ends((self.syn, self.client.addr, "SYN"), (self.rst, self.server.addr, "RST"))

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.server.addr, self.reason, self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unanswered(Fact):
    """SYNs with no answer captured; what ended the wait."""

    kind: ClassVar[str] = "tcp.unanswered"
    client: End
    server: End
    copies: int
    waits_ns: tuple[int, ...]
    ended_by: str  # "timeout" (the program's own), "errno" (the kernel gave up), "capture" (the run ended)
    error: str = ""
    waited_ns: int = 0  # from the first SYN to the end of the wait
    after_last_ns: int = 0  # from the last SYN to the end

    def claims(self) -> Iterator[Claim]:
        return _ends(*((p, self.client.addr, "SYN") for p in self.packets))

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.server.addr, self.ended_by, self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class SynRetransmits(Fact):
    """One SYN sent more than once: the waits between the copies, measured."""

    kind: ClassVar[str] = "tcp.syn_retransmits"
    client: End
    server: End
    waits_ns: tuple[int, ...]
    pattern: str  # "equal", "doubling", "mixed", "one" (a single wait)

    def claims(self) -> Iterator[Claim]:
        return _ends(*((p, self.client.addr, "SYN") for p in self.packets))

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.server.addr, self.pattern, len(self.waits_ns))


@dataclass(frozen=True, slots=True, kw_only=True)
class Established(Fact):
    """The handshake completed: SYN/ACK came back (from the server's kernel, whether or not a program took it)."""

    kind: ClassVar[str] = "tcp.established"
    client: End
    server: End
    syn: int
    synack: int
    delay_ns: int
    accepted_by: int | None = None  # the accept() call of a traced listener that took it
    listener_traced: bool = False  # a traced socket listened there (so "not accepted" can be said)

    def claims(self) -> Iterator[Claim]:
        return _ends((self.syn, self.client.addr, "SYN"), (self.synack, self.server.addr, "SYN/ACK"))

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.server.addr, self.accepted_by is None, self.listener_traced)


@dataclass(frozen=True, slots=True, kw_only=True)
class Closed(Fact):
    """Who closed first (the first FIN), what each side had sent by then, and what followed."""

    kind: ClassVar[str] = "tcp.closed"
    first: End  # the side whose FIN came first
    second: End
    first_role: str  # "client" or "server"
    fin: int
    other_fin: int | None
    after_ns: int  # from the handshake (or the first packet) to the first FIN
    gap_ns: int  # between the two FINs
    sent_first: int  # bytes the first closer had sent
    sent_second: int  # bytes the other side had sent by then
    eof_call: int | None = None  # the read at the other end that returned 0 for it
    eof_op: str = ""
    raised: str = ""  # the exception a frame above that read raised (not a socket call)
    raised_where: str = ""

    def claims(self) -> Iterator[Claim]:
        return _ends((self.fin, self.first.addr, "FIN"), (self.other_fin, self.second.addr, "FIN"))

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.first_role, self.second.addr if self.first_role == "client" else self.first.addr,
                self.other_fin is None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reset(Fact):
    """A RST after the handshake: who sent it, why (where the kernel says or the data shows), who met it."""

    kind: ClassVar[str] = "tcp.reset"
    sender: End
    receiver: End
    sender_role: str  # "client" or "server"
    rst: int
    reason: str = ""  # tcp_send_reset reason (TCP_ABORT_ON_CLOSE, TCP_TIMEWAIT_SOCKET, NO_SOCKET, ...)
    state: str = ""  # tcp_send_reset state of the sending socket
    after_fin: int | None = None  # the sender had closed with this FIN before: the RST answers data after it
    answered: int | None = None  # the segment the RST answered (data that came after the sender closed)
    unread: int | None = None  # bytes the sender had received and its recorded reads had not taken
    received: int = 0  # bytes the sender had received from the other side
    met_by: int | None = None  # the receiver's call that failed because of it
    error: str = ""
    waited_ns: int = 0  # the RST had come this long before that call began (the error waited on the socket)
    linger0: int | None = None  # the sender's setsockopt(SO_LINGER) to (on, 0 s), where traced
    last_data: int | None = None  # the receiver's last data before the RST
    acked: int | None = None  # the sender's ACK of that data (its kernel had it)

    def claims(self) -> Iterator[Claim]:
        return _ends((self.rst, self.sender.addr, "RST"), (self.after_fin, self.sender.addr, "FIN"),
                     (self.last_data, self.receiver.addr, "data"))

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.sender_role, self.reason, self.after_fin is None, self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class ZeroWindow(Fact):
    """A side advertised a zero window: its receive buffer was full (its program was not reading)."""

    kind: ClassVar[str] = "tcp.zero_window"
    side: End
    other: End
    count: int
    lasted_ns: int

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.side.addr)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsent(Fact):
    """A traced side's send calls returned more bytes than ever left it before the connection ended."""

    kind: ClassVar[str] = "tcp.unsent"
    sender: End
    receiver: End
    written: int  # bytes the send calls reported written
    left: int  # bytes that reached the wire
    ended_by: str  # "RST", "FIN", "capture"
    ended: int | None = None  # that packet

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.receiver.addr)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadTimeout(Fact):
    """A request acknowledged by the other side's kernel, then silence, then the waiting side's own timeout."""

    kind: ClassVar[str] = "tcp.read_timeout"
    waiter: End
    other: End
    request: int | None  # the waiter's last data
    ack: int | None  # the other side's ACK of it
    silent_ns: int  # from that ACK (or the request) to the timeout
    call: int | None  # the read that timed out (None: an event loop waited, no read was made)
    timeout_s: float | None = None
    raised: str = ""  # the timeout exception, where no read call raised it (an event loop's wait_for)

    def claims(self) -> Iterator[Claim]:
        return _ends((self.request or 0, self.waiter.addr, "data"), (self.ack or 0, self.other.addr, "ACK"))

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.other.addr)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stale(Fact):
    """A side sent data into a connection whose other side had already closed (its FIN had arrived)."""

    kind: ClassVar[str] = "tcp.stale"
    sender: End
    closer: End
    fin: int
    data: int
    gap_ns: int
    answer: int | None = None  # the RST that answered it

    def claims(self) -> Iterator[Claim]:
        return _ends((self.fin, self.closer.addr, "FIN"), (self.data, self.sender.addr, "data"),
                     (self.answer or 0, self.closer.addr, "RST"))

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.closer.addr)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retransmits(Fact):
    """Data segments sent again with sequence numbers already sent."""

    kind: ClassVar[str] = "tcp.retransmits"
    side: End
    other: End
    count: int

    def group(self) -> tuple[Any, ...]:
        return (self.kind,)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bytes(Fact):
    """What each side of a connection sent, counted on the wire (not by the calls that read or wrote it)."""

    kind: ClassVar[str] = "tcp.bytes"
    client: End
    server: End
    from_client: int
    from_server: int
    data_segments: int

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.server.addr)


# -- datagrams -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class IcmpError(Fact):
    """An ICMP error quoting a datagram (or segment): from whom, how soon, and whether the sender was told."""

    kind: ClassVar[str] = "udp.icmp"
    sender: End  # the datagram's sender
    target: Addr  # where the datagram went
    icmp: int
    datagram: int | None
    icmp_type: int
    icmp_code: int
    meaning: str  # "port unreachable", ...
    reporter: str  # the address the ICMP came from
    delay_ns: int = 0
    sent_by: int | None = None  # the call that sent the datagram
    sent_returned: int | None = None  # what it returned (bytes)
    told: str = ""  # "call" (a call failed with it), "unconnected" (the socket was never told), "" (unknown)
    learner: int | None = None
    error: str = ""
    timed_out: int | None = None  # for an unconnected socket: the read that waited in vain
    proto: str = "UDP"

    def claims(self) -> Iterator[Claim]:
        return _ends((self.icmp, None, "ICMP"), (self.datagram or 0, self.sender.addr, "datagram"))

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.target, self.meaning, self.told, self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class Datagrams(Fact):
    """The datagrams of one conversation, each way."""

    kind: ClassVar[str] = "udp.exchange"
    first: End
    second: End
    sent: int
    back: int
    bytes_sent: int
    bytes_back: int
    waited_by: int | None = None  # a call that then waited and failed (a timeout)
    error: str = ""

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.second.addr, self.back == 0, self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoneIcmp(Fact):
    """An ICMP error quoting nothing the capture saw leave."""

    kind: ClassVar[str] = "icmp.error"
    icmp: int
    icmp_type: int
    icmp_code: int
    meaning: str
    reporter: str
    quoted: tuple[str, Addr, Addr]

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.quoted[2], self.meaning)


# -- names ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveFailed(Fact):
    """getaddrinfo() failed: its resolver error, and the DNS packets (if any) the resolver exchanged meanwhile."""

    kind: ClassVar[str] = "resolve.failed"
    call: int
    host: str
    port: str
    error: str  # EAI_NONAME ...
    code: int | None
    queries: int = 0
    answers: tuple[str, ...] = ()  # each answer's rcode
    icmp: int = 0  # ICMP errors answering the queries
    servers: tuple[Addr, ...] = ()

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.host, self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class PortWrap(Fact):
    kind: ClassVar[str] = "resolve.port_wrap"
    call: int
    asked: int
    given: int
    first: int | None  # the first packet to the given port
    first_to: Addr | None  # where it went
    first_what: str  # "SYN" or "datagram"
    carried: bool  # some packet carried the asked port


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsExchange(Fact):
    """DNS queries and answers on the wire (the resolver's, inside a getaddrinfo() call, or any)."""

    kind: ClassVar[str] = "dns.exchange"
    client: End
    server: End
    names: tuple[str, ...]
    queries: int
    answers: tuple[str, ...]  # rcodes
    call: int | None = None  # the getaddrinfo() it happened inside
    icmp: int = 0

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.server.addr, self.answers)


# -- TLS -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsHello(Fact):
    """A ClientHello, and what came back: a TLS reply, bytes that are no TLS record, or nothing."""

    kind: ClassVar[str] = "tls.hello"
    client: End
    server: End
    hello: int
    hello_bytes: int
    reply: str  # "tls", "not-tls", "none"
    reply_packet: int | None = None
    reply_what: str = ""  # "ServerHello", "Alert", or the first line of a clear-text reply
    reply_first: bool = False  # the server's bytes came before the ClientHello
    reply_gap_ns: int = 0
    header: tuple[int, int, int] = (0, 0, 0)  # the reply's first 5 bytes read as a record: type, version, length
    fault: str = ""  # the TLS error the client's handshake raised, if any

    def claims(self) -> Iterator[Claim]:
        return _ends((self.hello, self.client.addr, "ClientHello"),
                     (self.reply_packet or 0, self.server.addr, "reply"))

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.server.addr, self.reply, self.fault)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsAlert(Fact):
    kind: ClassVar[str] = "tls.alert"
    sender: End
    receiver: End
    sender_role: str
    packet: int
    level: str  # "fatal", "warning", "" (encrypted: unknown)
    description: str  # "bad_certificate", ... or "" when encrypted

    def claims(self) -> Iterator[Claim]:
        return _ends((self.packet, self.sender.addr, "TLS alert"))

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.sender_role, self.description)


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRejected(Fact):
    """The client's own verdict: its handshake failed verifying the server's certificate, after the server had
    sent its part."""

    kind: ClassVar[str] = "tls.rejected_certificate"
    client: End
    server: End
    call: int
    reason: str
    detail: str
    server_records: tuple[int, ...]  # the server's handshake records before the failure
    ended_by: int | None = None  # the client's FIN/RST/alert after it

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.server.addr, self.detail)


# -- application ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NoStartTls(Fact):
    kind: ClassVar[str] = "smtp.no_starttls"
    server: End
    reply: int  # the EHLO reply
    extensions: tuple[str, ...]
    raised: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ShortBody(Fact):
    """An HTTP response promised Content-Length bytes, and the connection ended before they came."""

    kind: ClassVar[str] = "http.short_body"
    server: End
    client: End
    response: int
    status: str
    promised: int
    delivered: int
    ended_by: str  # "FIN" or "RST"
    end_packet: int | None = None
    raised: str = ""

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.server.addr)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppExchange(Fact):
    """The commands and replies of a text protocol, as they went on the wire."""

    kind: ClassVar[str] = "app.exchange"
    client: End
    server: End
    protocol: str  # "SMTP", "HTTP", "POP3", "IMAP", "FTP", "RESP", "text"
    turns: tuple[tuple[str, str, int, int], ...]  # (command, reply, command packet, reply packet)
    segments: tuple[tuple[int, str, int, int | None, str], ...] = ()  # (packet, first line, bytes, call, how)

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.server.addr, self.turns[:1])


# -- calls ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFailed(Fact):
    """A socket call that failed, its error in its own namespace, and what the kernel says of its syscall."""

    kind: ClassVar[str] = "call.failed"
    call: int
    op: str
    namespace: str
    code: int | None
    name: str
    error: str  # the exception line
    reason: str = ""  # OpenSSL reason
    syscall_ret: int | None = None  # what the kernel's syscall returned (kernel layer)
    timeout_s: float | None = None  # the socket's timeout, when a Python timeout ended the call
    reported: int | None = None  # for getsockopt(SO_ERROR) / connect_ex: the errno returned

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.op, self.namespace, self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempts(Fact):
    """One create_connection() tried several addresses in turn."""

    kind: ClassVar[str] = "connect.attempts"
    function: str
    tries: tuple[tuple[int, Addr, str], ...]  # (call, address, outcome)
    raised: int | None = None  # the attempt whose exception escaped
    all_failed: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Retries(Fact):
    """Several connections to one server from one place of the program, one after the other."""

    kind: ClassVar[str] = "library.retries"
    server: Addr
    attempts: tuple[tuple[int, int, str], ...]  # (call, start offset ns, outcome)
    gaps_ns: tuple[int, ...]
    module: str  # the library whose frames made every attempt


# -- exceptions ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin(Fact):
    """The escaped exception came from a socket call: which, and through which modules."""

    kind: ClassVar[str] = "exception.origin"
    exception: str
    call: int
    op: str
    error: str
    namespace: str
    raised_as: str  # the type it was raised as
    raised_in: str  # the transport module that raised it
    through: tuple[str, ...]  # the library modules it passed through
    wrapper: str = ""  # the exception that wrapped it, when it escaped wrapped
    wrapped_in: str = ""
    how: str = ""  # "raised from it" / "raised while handling it"


@dataclass(frozen=True, slots=True, kw_only=True)
class Built(Fact):
    """An exception built from an errno read elsewhere (asyncio's SO_ERROR), not raised by a socket call."""

    kind: ClassVar[str] = "exception.built"
    exception: str
    errno: int
    name: str
    getsockopt: int  # the call that read it
    socket: int
    address: Addr | None  # the address the exception's message names
    connect: int | None = None  # the non-blocking connect() that sent the SYN
    made_in: str = ""  # the module and function that built it
    delay_ns: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class NotFromSocket(Fact):
    """The exception was raised by Python code, not by a socket call; the last socket call below it."""

    kind: ClassVar[str] = "exception.python"
    exception: str
    where: str
    last_call: int | None = None
    last_op: str = ""
    last_outcome: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Layers(Fact):
    """The failing call's packets lie under the frames of several library modules: the path from the program
    down to the syscall, across the exception chain."""

    kind: ClassVar[str] = "exception.layers"
    call: int
    op: str
    path: tuple[tuple[str, int], ...]  # (module, frames), outermost first
    frames: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Group(Fact):
    """An ExceptionGroup and each of its exceptions, with the call each came from."""

    kind: ClassVar[str] = "exception.group"
    exception: str
    members: tuple[tuple[str, int | None, str], ...]  # (type, call, error)


# -- kernel --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Drop(Fact):
    """The kernel dropped a segment or datagram (kfree_skb), and why."""

    kind: ClassVar[str] = "kernel.drop"
    reason: str
    location: str
    caused: str  # "RST" or "ICMP": what the kernel sent back for it

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.reason, self.location)


@dataclass(frozen=True, slots=True, kw_only=True)
class States(Fact):
    """The states a traced socket went through, as the kernel logged them."""

    kind: ClassVar[str] = "kernel.states"
    socket: int
    states: tuple[str, ...]

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.states)


# -- the run -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Note(Fact):
    """A fact about the run itself: "capture.empty", "capture.dropped", "run.no_calls", "ip.v6",
    "arp.unanswered"."""

    kind: ClassVar[str] = "note"
    what: str
    count: int = 0
    detail: str = ""
    addr: Addr | None = None

    def group(self) -> tuple[Any, ...]:
        return (self.what, self.detail)


def kind_of(fact: Fact) -> str:
    return fact.what if isinstance(fact, Note) else fact.kind


# -- networks: a packet along its path (a network lab's links, a capture merged with the peer's) --------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Forwarded(Fact):
    """A packet seen on one link and again on the next one of its path: it crossed the router, which lowered its
    TTL (and, under NAT, rewrote its addresses: see nat.rewrite)."""

    kind: ClassVar[str] = "path.forwarded"
    packet: int  # as first seen
    copy: int  # the same packet on the next link
    what: str  # "SYN", "segment", "datagram", ...
    seen_on: str  # the link (capture interface) it was first seen on
    then_on: str
    delay_ns: int
    ttl_before: int
    ttl_after: int
    source: Addr
    target: Addr
    crossed: int = 1  # packets of its flow that crossed the same way

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.seen_on, self.then_on)


@dataclass(frozen=True, slots=True, kw_only=True)
class NatRewrite(Fact):
    """The same connection with another 4-tuple on each side of the router: it rewrote the addresses."""

    kind: ClassVar[str] = "nat.rewrite"
    inside: tuple[Addr, Addr]  # (source, destination) of its first packet on the program's link
    outside: tuple[Addr, Addr]  # the same packet on the other link
    inside_link: str
    outside_link: str
    rewritten: str  # "source", "destination" or "source and destination"
    port_kept: bool  # the rewritten side kept its port
    packet: int
    copy: int
    reply: int | None = None  # the first answer on the other link
    reply_copy: int | None = None  # that answer on the program's link, rewritten back
    delay_ns: int = 0

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.outside[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class Stopped(Fact):
    """Packets seen on one link that never appeared on the next link of their way: they ended between."""

    kind: ClassVar[str] = "path.stopped"
    what: str  # "SYN", "segment", "datagram", ...
    source: Addr
    target: Addr
    seen_on: str
    missing_on: str
    first: int
    count: int
    largest: int  # IP length of the largest of them
    answered_by: int | None = None  # an ICMP error or RST that came back for them from the way
    answer: str = ""  # what that was
    drop: int | None = None  # a kfree_skb right after the first (joined by time: it names no addresses)
    drop_reason: str = ""
    drop_location: str = ""
    drop_after_ns: int = 0
    rule: str = ""  # the firewall rule that counted packets meanwhile
    rule_host: str = ""
    rule_packets: int = 0

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.target, self.what, self.missing_on)


@dataclass(frozen=True, slots=True, kw_only=True)
class TtlOrigin(Fact):
    """Where an RST or ICMP error was made, from its TTL: each router on the way lowers it by one from the value
    its maker starts with, and the links it was (or was not) seen on before."""

    kind: ClassVar[str] = "ip.ttl_origin"
    packet: int
    what: str  # "RST", "ICMP time exceeded in transit", ...
    sender: str  # its source address
    ttl: int
    initial: int  # the TTL its maker starts with (that host's default where known, else 64, 128 or 255)
    hops: int  # routers crossed: initial - ttl
    crossed: str = ""  # the link it was seen on before this one, if any
    reference: int | None = None  # another packet from the same address that did come from further away
    reference_ttl: int = 0
    maker: str = ""  # the host that made it, where the lab knows its addresses

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.sender, self.what, self.ttl)


@dataclass(frozen=True, slots=True, kw_only=True)
class PathMtu(Fact):
    """Path MTU discovery: segments too large for a link further on, answered by ICMP fragmentation needed
    (ICMPv6 packet too big) with that link's MTU, and the sender's segments after it."""

    kind: ClassVar[str] = "path.mtu"
    sender: Addr
    target: Addr
    reporter: str
    mtu: int
    icmp: tuple[int, ...]  # the ICMP errors
    big: int  # segments larger than the MTU sent before the first ICMP
    largest: int  # IP length of the largest
    df: bool  # they had Don't Fragment set
    after: int | None = None  # the first segment sent after the first ICMP
    after_largest: int = 0  # IP length of the largest segment from then on
    beyond_largest: int = 0  # the largest packet of the flow on the far link
    mss: tuple[tuple[int, str, int], ...] = ()  # (packet, "SYN" or "SYN/ACK", MSS option) of the handshake

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.reporter, self.mtu)


@dataclass(frozen=True, slots=True, kw_only=True)
class BlackHole(Fact):
    """A path MTU black hole: full-size segments vanish on the way and are sent again and again, smaller packets
    of the same connection get through, and no ICMP fragmentation needed comes back."""

    kind: ClassVar[str] = "path.black_hole"
    sender: Addr
    target: Addr
    size: int  # IP length of the segments that vanished
    count: int
    first: int
    sent: int  # how many times the first of them was sent
    waits_ns: tuple[int, ...]  # between those copies
    crossed_largest: int  # the largest packet of the connection that crossed
    missing_on: str
    rule: str = ""  # a firewall rule that dropped ICMP meanwhile, with its host
    rule_packets: int = 0
    mss: tuple[tuple[int, str, int], ...] = ()  # (packet, "SYN" or "SYN/ACK", MSS option) of the handshake


@dataclass(frozen=True, slots=True, kw_only=True)
class Fragments(Fact):
    """A datagram larger than the link's MTU, sent as IP fragments: each fragment's size, offset and flags."""

    kind: ClassVar[str] = "ip.fragments"
    source: Addr
    target: Addr
    ident: int  # the IP identification they share
    size: int  # the datagram's length (its transport header and payload, without the IP header)
    sizes: tuple[int, ...]  # IP length of each fragment
    offsets: tuple[int, ...]  # in bytes
    more: tuple[bool, ...]  # more-fragments flag of each
    df: bool
    call: int | None = None  # the call that sent the datagram
    crossed: int = 0  # fragments seen again on the next link
    then_on: str = ""
    proto: str = "UDP"  # the transport protocol the IP header names ("UDP", "ICMP", or its number)


@dataclass(frozen=True, slots=True, kw_only=True)
class NoRoute(Fact):
    """A call failed with ENETUNREACH before any packet: the routing table had no route for the address."""

    kind: ClassVar[str] = "route.none"
    call: int
    op: str
    target: Addr
    host: str  # the host whose routing table (a network lab's), "" when unknown
    routes: tuple[str, ...]  # that table, as its kernel listed it at the start of the run
    covering: str  # a route that covers the address ("" none)
    links: tuple[str, ...]  # the links captured, where no packet of the call was seen


@dataclass(frozen=True, slots=True, kw_only=True)
class NeighbourUnanswered(Fact):
    """A call's packet waited for the next hop's link-layer address: ARP requests (IPv6 neighbour
    solicitations) with no answer, so none of the call's own packets left."""

    kind: ClassVar[str] = "neighbour.unanswered"
    protocol: str  # "ARP" or "NDP"
    asker: str
    target: str
    requests: tuple[int, ...]
    gaps_ns: tuple[int, ...]
    call: int | None = None  # the call they were made for
    error: str = ""  # what it failed with
    waited_ns: int = 0  # from the first request to the call's end
    sent: int = 0  # packets of the call's own flow that left

    def group(self) -> tuple[Any, ...]:
        return (self.kind, self.target, self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsTries(Fact):
    """How the resolver asked one server: its tries, the time between them, and the answers (rcodes)."""

    kind: ClassVar[str] = "dns.tries"
    server: Addr
    names: tuple[str, ...]
    types: tuple[str, ...]  # the query types asked ("A", "AAAA")
    queries: int
    tries: int  # rounds of the same questions
    gaps_ns: tuple[int, ...]  # between the rounds
    rcodes: tuple[str, ...]  # the answers' rcodes, in order
    answer_ns: int = 0  # from the first query to the first answer
    after_last_ns: int = 0  # from the last query to the end of the call
    call: int | None = None  # the getaddrinfo() they were made inside
    error: str = ""  # what it failed with


@dataclass(frozen=True, slots=True, kw_only=True)
class Counted(Fact):
    """A firewall rule of a network lab and what it matched during the run (nft's own counter, read after)."""

    kind: ClassVar[str] = "firewall.counted"
    host: str
    chain: str
    rule: str
    matched: int  # packets
    size: int  # bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockOffset(Fact):
    """Two captures of one exchange (this one and the peer's, `read --peer`): their clocks' offset, estimated
    from the packets both saw (matched by IP id, sequence numbers and payload, not by time)."""

    kind: ClassVar[str] = "merge.clock"
    this: str
    peer: str
    offset_ns: int  # the peer's clock minus this one's
    delay_ns: int  # one-way delay, where packets were matched both ways
    matched: int
    both_ways: bool
    peer_packets: int = 0  # packets in the peer's capture


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerUnseen(Fact):
    """Packets one side sent that the other side's capture never saw, while both were capturing (`read --peer`).
    `packets` are this capture's ids (what this side sent); `peer_frames` the peer file's frame numbers."""

    kind: ClassVar[str] = "merge.unseen"
    direction: str  # "to the peer": sent here, never seen there; "from the peer": sent there, never seen here
    peer: str
    count: int
    peer_frames: tuple[int, ...] = ()
    senders: tuple[str, ...] = ()  # their source addresses
    late: int = 0  # of them, after the other file's last packet (a file does not say when its capture stopped)


for _kind in [v for v in list(globals().values()) if isinstance(v, type) and issubclass(v, Fact)]:
    quick_init(_kind)  # hundreds of thousands in a large run (see model.quick_init)
