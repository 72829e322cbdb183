"""Peers: the other end of a scenario, each run as its own process on loopback.

    python -m wirestack.labs.peers KIND HOST PORT        (PORT 0: an ephemeral port)

A peer binds HOST:PORT, and only once it is really ready (listening, its accept queue filled, its server
running) prints one line on standard output, `ready PORT`, with the port it bound: that line is the barrier the
CLI waits for. It prints `error MESSAGE` and exits 2 when it cannot start. It stops cleanly, closing all its
sockets, on SIGTERM or when its standard input closes (so a peer never outlives a CLI that died); Ctrl-C at the
terminal is the CLI's business, not the peer's. Every loop here is bounded by the stop flag and a poll interval.

Peers listen on loopback addresses only. The kinds:

| kind | what it does |
|---|---|
| `closed` | binds a TCP port without listening: the kernel refuses every SYN to it (nothing listens there) |
| `closed-udp` | finds a UDP port no socket is bound to, and reports it (nothing receives there) |
| `backlog` | listens with a backlog of 1, fills its accept queue with two connections of its own and never |
|           | accepts: the kernel drops every further SYN                                                     |
| `reset` | sends an SMTP banner, reads one request, then closes with SO_LINGER 0: the kernel sends RST |
| `eof` | accepts and closes at once: the kernel sends FIN |
| `banner` | sends a plain-text SMTP banner, reads what comes until the client closes |
| `smtp` | a real SMTP server (aiosmtpd) that accepts and discards mail |
| `http` | `http.server` answering every GET with a short text page |

`running(kind, host, port)` is the CLI's side: it starts the peer, waits for the ready line and stops it.

It is long because every loopback peer a scenario needs is here, each a few lines, run in one isolated process.
"""

from __future__ import annotations

import ipaddress
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import PeerError as PeerError

KINDS = ("closed", "closed-udp", "backlog", "reset", "eof", "banner", "smtp", "http")
RESERVING = ("closed", "closed-udp")  # kinds that only provide a port where nothing listens
BANNER = b"220 wirestack.peer ESMTP (a wirestack peer)\r\n"
PAGE = b"hello from a wirestack peer\n"
POLL = 0.1  # seconds: how often loops look at the stop flag
READY_TIMEOUT = 10.0
_ROOT = str(Path(__file__).resolve().parent.parent.parent)
_BOOT = "import sys; sys.path.insert(0, {root!r}); from wirestack.labs.peers import main; main()"


# -- the CLI's side ------------------------------------------------------------------------------------------


@contextmanager
def running(kind: str, host: str, port: int, ready_timeout: float = READY_TIMEOUT) -> Iterator[int]:
    """Start a peer of `kind` on host:port (0: ephemeral) in its own process; yield the port it bound; stop it
    (SIGTERM, then SIGKILL) and reap it on the way out, whatever happens."""
    if kind not in KINDS:
        raise PeerError(f"unknown peer kind {kind!r}")
    proc = subprocess.Popen([sys.executable, "-c", _BOOT.format(root=_ROOT), kind, host, str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, cwd="/")
    try:
        yield _wait_ready(proc, ready_timeout)
    finally:
        stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float) -> int:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise PeerError(f"the peer did not get ready within {timeout:.0f} s")
        ready, _, _ = select.select([fd], [], [], min(left, POLL))
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            line += chunk
    word, _, rest = line.decode(errors="replace").strip().partition(" ")
    if word == "ready" and rest.isdigit():
        return int(rest)
    if word == "error" and rest:
        raise PeerError(rest)
    proc.wait(5)
    err = proc.stderr.read().decode(errors="replace").strip().splitlines() if proc.stderr else []
    raise PeerError(f"the peer failed to start (exit status {proc.returncode})" + (f": {err[-1]}" if err else ""))


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Ask the peer to go (SIGTERM, and its stdin closes), then insist; always reap it. SIGINT and SIGTERM to
    this process wait until the peer is gone, so an impatient Ctrl-C cannot leave it running."""
    main = threading.current_thread() is threading.main_thread()
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if main else None
    try:
        for step, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            try:
                proc.send_signal(step)
                if step == signal.SIGTERM and proc.stdin is not None:
                    proc.stdin.close()
            except (ProcessLookupError, BrokenPipeError):
                pass
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()
    finally:
        if held is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


# -- the peer's side ---------------------------------------------------------------------------------------


class Stopping:
    """The stop flag: set by SIGTERM or by standard input closing. `fd` becomes readable when it is set, so a
    peer waiting in select() wakes at once."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.fd, self._wake = os.pipe()

    def install(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C: the CLI stops us
        signal.signal(signal.SIGTERM, lambda _s, _f: self.set())
        threading.Thread(target=self._watch_stdin, daemon=True).start()

    def set(self) -> None:
        self.event.set()
        try:
            os.write(self._wake, b"x")
        except OSError:
            pass

    def _watch_stdin(self) -> None:
        try:  # the raw descriptor: a daemon thread must not hold sys.stdin's buffer lock at exit
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        self.set()

    def __bool__(self) -> bool:
        return self.event.is_set()


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _family(host: str, port: int, kind: int) -> tuple[int, tuple[str, int]]:
    """Resolve host to one loopback address; peers never listen anywhere else."""
    try:
        infos = socket.getaddrinfo(host, port, type=kind)
    except socket.gaierror as exc:
        raise PeerError(f"cannot resolve {host!r}: {exc.strerror}") from None
    for fam, _, _, _, sa in infos:
        if ipaddress.ip_address(str(sa[0]).split("%")[0]).is_loopback:
            return fam, (str(sa[0]), int(sa[1]))
    raise PeerError(f"peers listen on loopback only, and {host} is not a loopback address")


def _bound(host: str, port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    fam, addr = _family(host, port, kind)
    sock = socket.socket(fam, kind)
    if kind == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise PeerError(f"cannot bind {addr[0]} port {port}: {_why(exc)}") from None
    return sock


def _why(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def _accept(listener: socket.socket, stopping: Stopping) -> socket.socket | None:
    """The next connection, or None once stopping."""
    while not stopping:
        ready, _, _ = select.select([listener.fileno(), stopping.fd], [], [], POLL)
        if listener.fileno() in ready:
            conn, _ = listener.accept()
            return conn
    return None


def _read(conn: socket.socket, stopping: Stopping, until: bytes | None, limit: float) -> bytes:
    """Read until `until` appears, EOF, `limit` seconds, or stopping."""
    data = b""
    deadline = time.monotonic() + limit
    while not stopping and time.monotonic() < deadline:
        ready, _, _ = select.select([conn.fileno(), stopping.fd], [], [], POLL)
        if conn.fileno() not in ready:
            continue
        try:
            chunk = conn.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
        if until is not None and until in data:
            break
    return data


def _idle(stopping: Stopping) -> None:
    while not stopping:
        select.select([stopping.fd], [], [], POLL)


def closed(host: str, port: int, stopping: Stopping) -> None:
    sock = _bound(host, port)  # bound, never listening: SYNs to it meet no listener
    with sock:
        _say(f"ready {_port_of(sock)}")
        _idle(stopping)


def closed_udp(host: str, port: int, stopping: Stopping) -> None:
    if port:
        _say(f"ready {port}")
    else:
        with _bound(host, 0, socket.SOCK_DGRAM) as probe:
            free = _port_of(probe)
        _say(f"ready {free}")  # released again: no socket receives on it
    _idle(stopping)


_TCP_INFO_UNACKED = 24  # struct tcp_info: for a listener, tcpi_unacked = accept queue length, tcpi_sacked = max


def accept_queue(listener: socket.socket) -> tuple[int, int]:
    info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    length, limit = struct.unpack_from("II", info, _TCP_INFO_UNACKED)
    return int(length), int(limit)


def backlog(host: str, port: int, stopping: Stopping) -> None:
    listener = _bound(host, port)
    listener.listen(1)
    fillers: list[socket.socket] = []
    try:
        target = listener.getsockname()[:2]
        for _ in range(4):  # Linux: full once the queue holds more than the backlog
            length, limit = accept_queue(listener)
            if length > limit:
                break
            conn = socket.socket(listener.family, socket.SOCK_STREAM)
            conn.settimeout(2)
            conn.connect(target)
            fillers.append(conn)
            for _ in range(20):  # the final ACK of the handshake reaches the queue within microseconds
                if accept_queue(listener)[0] >= len(fillers):
                    break
                time.sleep(0.005)
        length, limit = accept_queue(listener)
        if length <= limit:
            raise PeerError(f"could not fill the accept queue ({length} of {limit})")
        _say(f"ready {_port_of(listener)}")
        _idle(stopping)
    finally:
        for conn in fillers:
            conn.close()
        listener.close()


def _serve(host: str, port: int, stopping: Stopping, handle: Callable[[socket.socket], None]) -> None:
    listener = _bound(host, port)
    listener.listen(8)
    with listener:
        _say(f"ready {_port_of(listener)}")
        while not stopping:
            conn = _accept(listener, stopping)
            if conn is None:
                break
            with conn:
                handle(conn)


def reset(host: str, port: int, stopping: Stopping) -> None:
    def handle(conn: socket.socket) -> None:
        conn.sendall(BANNER)
        _read(conn, stopping, b"\n", 10.0)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close() sends RST

    _serve(host, port, stopping, handle)


def eof(host: str, port: int, stopping: Stopping) -> None:
    _serve(host, port, stopping, lambda conn: None)  # leaving `with conn` closes it: FIN


def banner(host: str, port: int, stopping: Stopping) -> None:
    def handle(conn: socket.socket) -> None:
        conn.sendall(BANNER)
        _read(conn, stopping, None, 10.0)  # read everything, so that closing sends FIN, not RST

    _serve(host, port, stopping, handle)


def http(host: str, port: int, stopping: Stopping) -> None:
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        server_version = "wirestack-peer"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    fam, addr = _family(host, port, socket.SOCK_STREAM)

    class Server(HTTPServer):
        address_family = fam

    try:
        server = Server(addr, Handler)
    except OSError as exc:
        raise PeerError(f"cannot bind {addr[0]} port {port}: {_why(exc)}") from None
    server.timeout = POLL
    with server:
        _say(f"ready {server.server_address[1]}")
        while not stopping:
            ready, _, _ = select.select([server.fileno(), stopping.fd], [], [], POLL)
            if server.fileno() in ready:
                server.handle_request()


def smtp(host: str, port: int, stopping: Stopping) -> None:
    import asyncio
    import logging

    from aiosmtpd.smtp import SMTP

    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    fam, addr = _family(host, port, socket.SOCK_STREAM)

    class Discard:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
            return "250 OK: message accepted (and discarded)"

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                lambda: SMTP(Discard(), hostname="wirestack.peer", ident="wirestack peer (aiosmtpd)"),
                addr[0], addr[1], family=fam, reuse_address=True)
        except OSError as exc:
            raise PeerError(f"cannot bind {addr[0]} port {port}: {_why(exc)}") from None
        woken = asyncio.Event()
        loop.add_reader(stopping.fd, woken.set)
        async with server:
            _say(f"ready {server.sockets[0].getsockname()[1]}")
            while not stopping:
                try:
                    await asyncio.wait_for(woken.wait(), POLL)
                except asyncio.TimeoutError:
                    pass

    asyncio.run(serve())


PEERS: dict[str, Callable[[str, int, Stopping], None]] = {
    "closed": closed, "closed-udp": closed_udp, "backlog": backlog, "reset": reset, "eof": eof, "banner": banner,
    "smtp": smtp, "http": http,
}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in PEERS or not args[2].isdigit() or int(args[2]) > 65535:
        _say(f"error usage: python -m wirestack.labs.peers {{{','.join(PEERS)}}} HOST PORT(0-65535)")
        sys.exit(2)
    kind, host, port = args[0], args[1], int(args[2])
    stopping = Stopping()
    stopping.install()
    try:
        PEERS[kind](host, port, stopping)
    except PeerError as exc:
        _say(f"error {exc}")
        sys.exit(2)
    sys.exit(0)


if __name__ == "__main__":
    main()
