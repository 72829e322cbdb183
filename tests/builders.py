"""Hand-built records for the pure tests: a fake clock in microseconds, calls and packets on loopback."""

from __future__ import annotations

import errno as _errno
from collections.abc import Sequence
from typing import Any

from wirestack.core.chains import linked
from wirestack.core.pairing import Alignment
from wirestack.model import Call, CaptureInfo, ExceptionInfo, Fault, Frame, KernelEvent, Packet, Quoted, Trace

US = 1_000
T0 = 1_700_000_000_000_000_000
CLIENT = ("127.0.0.1", 40000)
SERVER = ("127.0.0.1", 464)


def frames(*specs: tuple[str, int, str, int]) -> tuple[Frame, ...]:
    """(file, line, function, instance) tuples, outermost first."""
    return tuple(Frame(f, line, fn, "", inst) for f, line, fn, inst in specs)


SEED_STACK = frames(
    ("<stdin>", 1, "<module>", 1),
    ("/usr/lib/python3.11/smtplib.py", 255, "__init__", 2),
    ("/usr/lib/python3.11/smtplib.py", 341, "connect", 3),
    ("/usr/lib/python3.11/smtplib.py", 312, "_get_socket", 4),
    ("/usr/lib/python3.11/socket.py", 836, "create_connection", 5),
)

_TYPES = {111: "ConnectionRefusedError", 104: "ConnectionResetError", 32: "BrokenPipeError", 110: "TimeoutError",
          113: "OSError", 101: "OSError"}


def errno_fault(code: int) -> Fault:
    import os

    return Fault("errno", _TYPES.get(code, "OSError"), f"[Errno {code}] {os.strerror(code)}", code,
                 _errno.errorcode.get(code, ""))


def timeout_fault() -> Fault:
    return Fault("timeout", "TimeoutError", "timed out")


def call(cid: int, op: str, start_us: float, end_us: float, *, socket: int = 1,
         local: tuple[str, int] | None = CLIENT, remote: tuple[str, int] | None = SERVER,
         errno: int | None = None, fault: Fault | None = None, stack: tuple[Frame, ...] = SEED_STACK,
         kind: str = "SOCK_STREAM", args: dict[str, Any] | None = None, result: Any = None,
         thread: str = "MainThread", pid: int = 100, tid: int = 100) -> Call:
    if fault is None and errno is not None:
        fault = errno_fault(errno)
    return Call(cid, op, thread, T0 + int(start_us * US), T0 + int(end_us * US), stack, socket, "AF_INET", kind,
                fault, local, remote, args or {}, result, pid, tid)


def tcp(pid: int, t_us: float, src: tuple[str, int], dst: tuple[str, int], flags: str, seq: int = 0,
        ack: int = 0, payload: bytes = b"", window: int = 65535) -> Packet:
    return Packet(pid, T0 + int(t_us * US), "TCP", src[0], dst[0], src[1], dst[1], flags, seq, ack,
                  54 + len(payload), payload, window=window, ttl=64)


def udp(pid: int, t_us: float, src: tuple[str, int], dst: tuple[str, int], payload: bytes = b"x") -> Packet:
    return Packet(pid, T0 + int(t_us * US), "UDP", src[0], dst[0], src[1], dst[1], length=42 + len(payload),
                  payload=payload, ttl=64)


def icmp_unreachable(pid: int, t_us: float, quoting: tuple[tuple[str, int], tuple[str, int]],
                     proto: str = "UDP") -> Packet:
    (s, sp), (d, dp) = quoting
    return Packet(pid, T0 + int(t_us * US), "ICMP", d, s, icmp=(3, 3), length=70,
                  quoted=Quoted(proto, s, sp, d, dp))


def refused(exc_call: int | None, stack: tuple[Frame, ...] = SEED_STACK) -> ExceptionInfo:
    raise_line = stack[-1]
    tb = stack[:-1] + (Frame(raise_line.file, 851, raise_line.function, "raise exceptions[0]",
                             raise_line.instance), raise_line)
    return ExceptionInfo("ConnectionRefusedError", "[Errno 111] Connection refused", tb, errno_fault(111), exc_call)


def event(eid: int, t_us: float, name: str, tid: int = 100, **fields: str) -> KernelEvent:
    return KernelEvent(eid, T0 + int(t_us * US), name, tid, dict(fields))


def trace(calls: Sequence[Call] = (), packets: Sequence[Packet] = (), exception: ExceptionInfo | None = None,
          kernel: Sequence[KernelEvent] = (), traced: bool = True) -> Trace:
    return Trace("test", "client()", tuple(packets), tuple(calls), exception,
                 CaptureInfo("lo", None, len(packets), len(packets), 0), T0, None, kernel=tuple(kernel),
                 traced=traced)


def exception_packets(exc: ExceptionInfo, alignment: Alignment) -> list[tuple[int, ...]]:
    """For each traceback entry of `exc` (outermost first): the packets produced below it."""
    return [alignment.packets_below(f.instance) for f in exc.frames]


def origin_call(exc: ExceptionInfo | None, calls: Sequence[Call]) -> Call | None:
    by_id = {c.id: c for c in calls}
    return next((by_id[e.call] for e in linked(exc) if e.call is not None and e.call in by_id), None)
