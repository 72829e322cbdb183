"""The records wirestack works on: frozen, typed, and free of IO.

A run produces a `Trace`: the packets the capture recorded, the socket calls the probe recorded (each with the
Python stack it was made from), the exception that escaped, and the kernel's own events. Everything downstream
(pairing, facts, rendering, export) reads a `Trace` and nothing else, so a saved trace re-renders the same. A
capture file without a trace becomes a `Trace` with packets only.

Times are nanoseconds since the epoch (CLOCK_REALTIME) on both sides: kernel packet timestamps and
`time.time_ns()` in the probe share that clock.

Errors live in several namespaces, and a `Fault` names each in its own (never a non-errno as an errno):

    namespace   code                          name                 raised as
    errno       a kernel errno (111)          ECONNREFUSED         OSError and its subclasses
    openssl     SSL_ERROR_* (1)               SSL_ERROR_SSL        ssl.SSLError (+ OpenSSL library, reason)
    eai         a resolver EAI_* code (-2)    EAI_NONAME           socket.gaierror
    h_errno     a netdb h_errno (1)           HOST_NOT_FOUND       socket.herror
    timeout     none                          -                    TimeoutError without errno (Python's own)
    python      none                          -                    any other exception
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeVar

Addr = tuple[str, int]
_T = TypeVar("_T")


def quick_init(cls: type[_T]) -> type[_T]:
    """A frozen dataclass's own __init__ sets each field through `object.__setattr__` (4.7 µs for a Packet's 20);
    this one sets them through the slots' descriptors (2.3 µs), with the same parameters, defaults and
    keyword-only fields. The instances stay frozen: assigning to a field still raises. For the records a large
    run makes by the hundred thousand (packets, calls, frames, kernel events, pairs, facts)."""
    own = fields(cls)  # type: ignore[arg-type]
    initvar = getattr(dataclasses, "_FIELD_INITVAR", None)
    if hasattr(cls, "__post_init__") or any(getattr(f, "_field_type", None) is initvar
                                            for f in cls.__dataclass_fields__.values()):  # type: ignore[attr-defined]
        return cls  # InitVar or __post_init__: the dataclass's own
    ns: dict[str, Any] = {"_FACTORY": object()}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for f in own:
        ns[f"_set_{f.name}"] = next(k.__dict__[f.name] for k in cls.__mro__ if f.name in k.__dict__).__set__
        value = f.name
        if f.default is not MISSING:
            ns[f"_d_{f.name}"] = f.default
            param = f"{f.name}=_d_{f.name}"
            if not f.init:
                value = f"_d_{f.name}"
        elif f.default_factory is not MISSING:
            ns[f"_f_{f.name}"] = f.default_factory
            param = f"{f.name}=_FACTORY"
            value = f"_f_{f.name}()" if not f.init else f"_f_{f.name}() if {f.name} is _FACTORY else {f.name}"
        else:
            param = f.name
        if f.init:
            (keyword if f.kw_only else positional).append(param)
        body.append(f" _set_{f.name}(self, {value})")
    params = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    exec(f"def __init__({params}):\n" + ("\n".join(body) or " pass"), ns)  # noqa: S102 - our own field names
    init = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    setattr(cls, "__init__", init)  # noqa: B010 - replacing the generated one
    return cls

ERRNO, OPENSSL, EAI, HERRNO, TIMEOUT, PYTHON = "errno", "openssl", "eai", "h_errno", "timeout", "python"
NAMESPACES = (ERRNO, OPENSSL, EAI, HERRNO, TIMEOUT, PYTHON)


@dataclass(frozen=True, slots=True)
class Quoted:
    """The head of the datagram that an ICMP error message carries back."""

    proto: str
    src: str
    sport: int
    dst: str
    dport: int


@quick_init
@dataclass(frozen=True, slots=True)
class Packet:
    """One captured frame, decoded just enough to pair and explain it (see `wirestack.core.dissect`)."""

    id: int
    time_ns: int
    proto: str  # "TCP", "UDP", "ICMP", "ICMPv6", "ARP" or "other"
    src: str
    dst: str
    sport: int = 0
    dport: int = 0
    flags: str = ""  # TCP flags as letters: "S", "RA", "PA", "FA" (F S R P A U E C N)
    seq: int = 0
    ack: int = 0
    length: int = 0  # bytes on the wire (the whole frame)
    payload: bytes = b""  # transport payload (TCP/UDP data, or the ICMP message body)
    icmp: tuple[int, int] | None = None  # (type, code)
    quoted: Quoted | None = None  # the datagram an ICMP error quotes
    raw: bytes = field(default=b"", repr=False, compare=False)
    app: str = ""  # application-layer meaning, e.g. "SMTP 250 OK", "TLS ClientHello" (tshark's)
    window: int = 0  # TCP window field (unscaled)
    ttl: int = 0  # IPv4 TTL / IPv6 hop limit
    link: int = 1  # the frame's link type (pcap LINKTYPE_*)
    interface: int = 0  # the pcapng interface it was captured on (see CaptureInfo.links)

    @property
    def src_addr(self) -> Addr:
        return (self.src, self.sport)

    @property
    def dst_addr(self) -> Addr:
        return (self.dst, self.dport)


@quick_init
@dataclass(frozen=True, slots=True)
class Frame:
    """One Python stack frame. `instance` identifies the frame object while it lived (two calls from the same
    running function share it; two runs of one function do not)."""

    file: str
    line: int
    function: str
    code: str = ""  # the source line, stripped (read by the traced process itself)
    instance: int = 0


@quick_init
@dataclass(frozen=True, slots=True)
class Fault:
    """An error, named in its own namespace (see the table above)."""

    namespace: str
    type: str  # as Python prints it: "ConnectionRefusedError", "ssl.SSLCertVerificationError"
    message: str = ""  # str(exception)
    code: int | None = None
    name: str = ""  # "ECONNREFUSED", "SSL_ERROR_SSL", "EAI_NONAME", "" when the namespace has no codes
    library: str = ""  # OpenSSL: the library that failed ("SSL")
    reason: str = ""  # OpenSSL: "WRONG_VERSION_NUMBER", "CERTIFICATE_VERIFY_FAILED"
    detail: str = ""  # OpenSSL: the certificate verify message

    @property
    def line(self) -> str:
        """As Python's traceback ends: 'ConnectionRefusedError: [Errno 111] Connection refused'."""
        return f"{self.type}: {self.message}" if self.message else self.type

    @property
    def errno(self) -> int | None:
        """The kernel errno, only when this fault is one."""
        return self.code if self.namespace == ERRNO else None


@quick_init
@dataclass(frozen=True, slots=True)
class Call:
    """One socket operation made by a traced process."""

    id: int
    op: str  # "getaddrinfo", "socket", "connect", "send", "recv", "close", "getsockopt", "do_handshake", ...
    thread: str
    start_ns: int
    end_ns: int
    frames: tuple[Frame, ...] = ()  # innermost last
    socket: int = 0  # the probe's serial for the socket object (fds are reused, serials are not)
    family: str = ""  # "AF_INET", "AF_INET6", ...
    kind: str = ""  # "SOCK_STREAM", "SOCK_DGRAM", ...
    fault: Fault | None = None  # what it raised
    local: Addr | None = None
    remote: Addr | None = None
    args: dict[str, Any] = field(default_factory=dict)  # what the call was asked (address, bytes, bufsize, ...)
    result: Any = None  # byte counts, getaddrinfo's addresses, SO_ERROR's value, connect_ex's errno, ...
    pid: int = 0
    tid: int = 0  # the kernel's thread id (what kernel events carry)

    @property
    def failed(self) -> bool:
        return self.fault is not None

    @property
    def errno(self) -> int | None:
        """The kernel errno it raised (None for errors of other namespaces)."""
        return self.fault.errno if self.fault is not None else None

    @property
    def reported(self) -> int | None:
        """An errno the call returned without raising: connect_ex's result, getsockopt(SO_ERROR)'s value."""
        if self.op in ("connect_ex", "getsockopt") and isinstance(self.result, int) and self.result > 0:
            return self.result
        return None


@dataclass(frozen=True, slots=True)
class ExceptionInfo:
    """An exception as Python would print it: frames outermost first, with its chain and, for an
    ExceptionGroup, its sub-exceptions."""

    type: str
    message: str
    frames: tuple[Frame, ...] = ()  # outermost first, as a traceback prints them
    fault: Fault | None = None  # the exception itself, in its namespace
    call: int | None = None  # id of the socket call that raised this very exception object
    cause: ExceptionInfo | None = None
    context: ExceptionInfo | None = None
    suppress_context: bool = False
    group: tuple[ExceptionInfo, ...] = ()  # an ExceptionGroup's exceptions
    pid: int = 0

    @property
    def errno(self) -> int | None:
        return self.fault.errno if self.fault is not None else None


@quick_init
@dataclass(frozen=True, slots=True)
class KernelEvent:
    """One kernel tracepoint hit (see `wirestack.record.tracefs`): `event` is the tracepoint's name
    ("inet_sock_set_state", "tcp_send_reset", "sys_enter_connect", "sys_exit_connect", ...), `tid` the thread
    the kernel ran it in (a softirq runs in whichever thread was current), `pid` that thread's process (0 where
    the trace did not record it), `fields` its values as printed."""

    id: int
    time_ns: int
    event: str
    tid: int
    fields: dict[str, str] = field(default_factory=dict)
    pid: int = 0


@dataclass(frozen=True, slots=True)
class CaptureInfo:
    interface: str
    file: str | None = None
    packets: int = 0  # packets of the traced flows (those in the report and the file)
    seen: int = 0  # everything the capture read on the interface
    dropped: int = 0  # the kernel's drop counter for the capture socket
    linktype: int = 1
    format: str = ""  # for a file read back: "pcap" or "pcapng"
    writer: str = ""  # for a file read back: the program that wrote it, when it says
    # A capture on several links of one path (a network lab, or a capture merged with the peer's): the name of
    # each interface, in interface-id order, the first the traced program's own link. Packets seen on the others
    # are the same packets further along their way: they stay out of pairing and flows (see core.paths).
    links: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Process:
    """A process of the run: traced (the probe ran in it) or only seen starting (not traced)."""

    pid: int
    traced: bool
    argv: tuple[str, ...] = ()
    parent: int = 0
    how: str = ""  # "main", "fork", "spawn", "subprocess"


@dataclass(frozen=True, slots=True)
class Trace:
    """Everything recorded in one run: the contract between recording and rendering."""

    title: str  # "smtp", or the program that ran
    client: str  # the client code, as a user would type it
    packets: tuple[Packet, ...]
    calls: tuple[Call, ...]
    exception: ExceptionInfo | None
    capture: CaptureInfo
    started_ns: int = 0
    exit_code: int | None = None
    notes: tuple[str, ...] = ()  # facts about the run itself ("the kernel layer is off", ...)
    defines: dict[str, str] = field(default_factory=dict)  # "errno:111", "eai:-2", ... -> the header's #define
    kernel: tuple[KernelEvent, ...] = ()  # the kernel's tracepoints for the traced program, in time order
    kernel_off: str = ""  # why there is no kernel layer, when there is none
    processes: tuple[Process, ...] = ()
    traced: bool = True  # False: a capture file without a wirestack trace (packets only)
    python: str = ""  # the interpreter of the traced program ("3.11.7")
    network: dict[str, Any] = field(default_factory=dict)  # a network lab's hosts, links, routes, firewall counters
