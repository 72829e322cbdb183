"""The records wirestack works on: frozen, typed, and free of IO and scapy objects.

A run produces a `Trace`: the packets the capture recorded, the socket calls the probe recorded (each with
the Python stack it was made from), and the exception that escaped, if any. Everything downstream (pairing,
explanation, rendering, export) reads a `Trace` and nothing else, so a saved trace re-renders the same.

Times are nanoseconds since the epoch (CLOCK_REALTIME) on both sides: kernel packet timestamps and
`time.time_ns()` in the probe share that clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Addr = tuple[str, int]


@dataclass(frozen=True)
class Packet:
    """One captured frame, decoded just enough to pair it (see `wirestack.core.dissect`)."""

    id: int
    time_ns: int
    proto: str  # "TCP", "UDP", "ICMP", "ICMPv6" or "other"
    src: str
    dst: str
    sport: int = 0
    dport: int = 0
    flags: str = ""  # TCP flags in scapy letters, e.g. "S", "RA", "PA", "FA"
    seq: int = 0
    ack: int = 0
    length: int = 0  # bytes on the wire (the whole frame)
    payload: bytes = b""  # transport payload (TCP/UDP data, or the ICMP message body)
    icmp: tuple[int, int] | None = None  # (type, code)
    quoted: Quoted | None = None  # the datagram an ICMP error quotes
    raw: bytes = field(default=b"", repr=False, compare=False)
    app: str = ""  # application-layer meaning, e.g. "SMTP 250 OK", "TLS ClientHello" (see `wirestack.record.tshark`)

    @property
    def flow(self) -> tuple[str, Addr, Addr]:
        return (self.proto, (self.src, self.sport), (self.dst, self.dport))


@dataclass(frozen=True)
class Quoted:
    """The head of the datagram that an ICMP error message carries back."""

    proto: str
    src: str
    sport: int
    dst: str
    dport: int


@dataclass(frozen=True)
class Frame:
    """One Python stack frame. `instance` identifies the frame object while it lived (two calls from the same
    running function share it; two runs of one function do not)."""

    file: str
    line: int
    function: str
    code: str = ""  # the source line, stripped
    instance: int = 0


@dataclass(frozen=True)
class Call:
    """One socket operation made by the traced program."""

    id: int
    op: str  # "getaddrinfo", "socket", "connect", "send", "recv", "close", "getsockopt", ...
    thread: str
    start_ns: int
    end_ns: int
    frames: tuple[Frame, ...] = ()  # innermost last
    socket: int = 0  # the probe's serial for the socket object (fds are reused, serials are not)
    family: str = ""  # "AF_INET", "AF_INET6", ...
    kind: str = ""  # "SOCK_STREAM", "SOCK_DGRAM", ...
    errno: int | None = None
    error: str = ""  # "ConnectionRefusedError: [Errno 111] Connection refused"
    local: Addr | None = None
    remote: Addr | None = None
    args: dict[str, Any] = field(default_factory=dict)  # what the call was asked (host, port, level, ...)
    result: Any = None  # bytes counts, getaddrinfo's addresses, SO_ERROR's value, ...
    pid: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.error)


@dataclass(frozen=True)
class ExceptionInfo:
    """An exception as Python would print it: frames outermost first, with its chain."""

    type: str
    message: str
    frames: tuple[Frame, ...] = ()  # outermost first, as a traceback prints them
    errno: int | None = None
    call: int | None = None  # id of the socket call that raised this very exception object
    cause: ExceptionInfo | None = None
    context: ExceptionInfo | None = None
    suppress_context: bool = False


@dataclass(frozen=True)
class KernelEvent:
    """One kernel tracepoint hit (see `wirestack.record.tracefs`): `event` is the tracepoint's name
    ("inet_sock_set_state", "tcp_send_reset", "sys_enter_connect", "sys_exit_connect", ...), `fields` its
    values as the kernel printed them."""

    id: int
    time_ns: int
    event: str
    pid: int
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CaptureInfo:
    interface: str
    file: str | None = None
    packets: int = 0  # packets of the traced flows (those in the report and the file)
    seen: int = 0  # everything the capture read on the interface
    dropped: int = 0  # the kernel's drop counter for the capture socket
    linktype: int = 1


@dataclass(frozen=True)
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
    notes: tuple[str, ...] = ()  # facts about the run itself ("errno.h not found", ...)
    errno_defines: dict[int, str] = field(default_factory=dict)  # errno -> its "#define" line, where found
    kernel: tuple[KernelEvent, ...] = ()  # the kernel's tracepoints for the traced program, in time order
    kernel_off: str = ""  # why there is no kernel layer, when there is none
