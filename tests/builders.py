"""Hand-built records for the pure tests: a fake clock in microseconds, calls and packets on loopback."""

from __future__ import annotations

from typing import Any

from wirestack.model import Call, ExceptionInfo, Frame, Packet, Quoted

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


def call(cid: int, op: str, start_us: float, end_us: float, *, socket: int = 1,
         local: tuple[str, int] | None = CLIENT, remote: tuple[str, int] | None = SERVER,
         errno: int | None = None, stack: tuple[Frame, ...] = SEED_STACK, kind: str = "SOCK_STREAM",
         args: dict[str, Any] | None = None, result: Any = None, thread: str = "MainThread") -> Call:
    error = {111: "ConnectionRefusedError: [Errno 111] Connection refused",
             104: "ConnectionResetError: [Errno 104] Connection reset by peer",
             110: "TimeoutError: [Errno 110] Connection timed out"}.get(errno or 0, f"OSError: [Errno {errno}]")
    return Call(cid, op, thread, T0 + int(start_us * US), T0 + int(end_us * US), stack, socket, "AF_INET", kind,
                errno, error if errno else "", local, remote, args or {}, result)


def tcp(pid: int, t_us: float, src: tuple[str, int], dst: tuple[str, int], flags: str, seq: int = 0,
        ack: int = 0, payload: bytes = b"") -> Packet:
    return Packet(pid, T0 + int(t_us * US), "TCP", src[0], dst[0], src[1], dst[1], flags, seq, ack,
                  54 + len(payload), payload)


def udp(pid: int, t_us: float, src: tuple[str, int], dst: tuple[str, int], payload: bytes = b"x") -> Packet:
    return Packet(pid, T0 + int(t_us * US), "UDP", src[0], dst[0], src[1], dst[1], length=42 + len(payload),
                  payload=payload)


def icmp_unreachable(pid: int, t_us: float, quoting: tuple[tuple[str, int], tuple[str, int]]) -> Packet:
    (s, sp), (d, dp) = quoting
    return Packet(pid, T0 + int(t_us * US), "ICMP", d, s, icmp=(3, 3), length=70,
                  quoted=Quoted("UDP", s, sp, d, dp))


def refused(exc_call: int, stack: tuple[Frame, ...] = SEED_STACK) -> ExceptionInfo:
    raise_line = stack[-1]
    tb = stack[:-1] + (Frame(raise_line.file, 851, raise_line.function, "raise exceptions[0]",
                             raise_line.instance), raise_line)
    return ExceptionInfo("ConnectionRefusedError", "[Errno 111] Connection refused", tb, 111, exc_call)
