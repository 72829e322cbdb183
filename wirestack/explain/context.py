"""What every rule reads: the trace, its pairing, the reconstructed scene and the kernel's joins, indexed once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from ..core.chains import linked
from ..core.kernel import KernelView
from ..core.layers import is_library, is_transport
from ..core.pairing import RECVS, SENDS, Alignment
from ..model import Call, ExceptionInfo, Frame, KernelEvent, Packet, Trace
from .facts import Fact
from .scene import Connection, End, Scene

Rule = Callable[["Context"], Iterable[Fact]]


@dataclass
class Context:
    trace: Trace
    alignment: Alignment
    scene: Scene
    kernel: KernelView
    packets: dict[int, Packet] = field(default_factory=dict)
    calls: dict[int, Call] = field(default_factory=dict)
    events: dict[int, KernelEvent] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.packets = {p.id: p for p in self.trace.packets}
        self.calls = {c.id: c for c in self.trace.calls}
        self.events = {e.id: e for e in self.trace.kernel}

    @cached_property
    def by_socket(self) -> dict[int, list[Call]]:
        out: dict[int, list[Call]] = defaultdict(list)
        for c in self.trace.calls:
            if c.socket:
                out[c.socket].append(c)
        return out

    @cached_property
    def ssl_sockets(self) -> set[int]:
        """Sockets OpenSSL read and wrote (from C: recorded reads and writes do not count the wire's bytes)."""
        return {c.socket for c in self.trace.calls if c.op in ("do_handshake", "read", "write", "unwrap")}

    @cached_property
    def linked_exceptions(self) -> list[ExceptionInfo]:
        return linked(self.trace.exception)

    @cached_property
    def _calls_of(self) -> dict[tuple[int, ...], list[Call]]:
        return {}

    def calls_of(self, end: End) -> list[Call]:
        """The calls of an end's sockets in time order (computed once per set of sockets: rules ask per packet)."""
        found = self._calls_of.get(end.sockets)
        if found is None:
            out: list[Call] = []
            for s in end.sockets:
                out += self.by_socket.get(s, [])
            found = self._calls_of[end.sockets] = sorted(out, key=lambda c: (c.start_ns, c.id)) \
                if len(end.sockets) > 1 else out
        return found

    def call_of(self, packet: Packet, socket_ids: Sequence[int], side: str) -> Call | None:
        """The call of one of these sockets that sent ("out") or observed ("in") the packet."""
        for pair in self.alignment.pairs_of(packet.id):
            if pair.socket in socket_ids and pair.side == side and pair.call is not None:
                return self.calls.get(pair.call)
        return None

    def kernel_of_packet(self, packet_id: int, event: str) -> list[KernelEvent]:
        return [self.events[k] for k in self.kernel.for_packet(packet_id) if self.events[k].event == event]

    def read_bytes(self, end: End) -> int | None:
        """What the recorded reads of an end's sockets took; None where OpenSSL read from C (unknown)."""
        if any(s in self.ssl_sockets for s in end.sockets):
            return None
        return sum(c.result for c in self.calls_of(end)
                   if c.op in RECVS and not c.failed and isinstance(c.result, int))

    def written_bytes(self, end: End) -> int | None:
        if any(s in self.ssl_sockets for s in end.sockets):
            return None
        total = 0
        for c in self.calls_of(end):
            if c.op in SENDS and not c.failed:
                if isinstance(c.result, int):
                    total += c.result
                elif c.op == "sendall" and isinstance(c.args.get("bytes"), int):
                    total += c.args["bytes"]  # sendall returns None once everything was handed to the kernel
        return total

    def role(self, c: Connection, end: End) -> str:
        return "client" if end is c.client else "server"


def module(path: str) -> str:
    """'smtplib.py', 'http/client.py', 'urllib3/connectionpool.py' (a package's module keeps its package)."""
    import os
    import re

    parent, base = os.path.split(path.replace("\\", "/"))
    package = os.path.basename(parent)
    if path.startswith("<"):
        return path
    if package and is_library(path) and not re.match(r"python\d|site-packages|dist-packages|lib$", package):
        return f"{package}/{base}"
    return base


def library_module(frames: Sequence[Frame]) -> str:
    """The innermost library module (not the transport interface) a call was made under."""
    for f in reversed(frames):
        if is_library(f.file) and not is_transport(f.file):
            return module(f.file)
    return ""


def library_path(frames: Sequence[Frame]) -> str:
    """The library functions a call was made under, outermost first: 'smtplib.py ehlo() → getreply()'."""
    lib = [f for f in frames if is_library(f.file) and not is_transport(f.file)]
    if not lib:
        return ""
    names = [f"{f.function}()" for f in lib]
    if len(names) > 2:
        names = [names[0], "…", names[-1]]
    return f"{module(lib[0].file)} {' → '.join(names)}"


def frame_label(f: Frame) -> str:
    """'socket.py:836 create_connection'."""
    return f"{f.file.replace(chr(92), '/').rsplit('/', 1)[-1]}:{f.line} {f.function}"
