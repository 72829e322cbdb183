"""Local peers for the corpus: the other end of each failing program, on loopback only.

Each kind is a function `serve_<kind>(host, port, stop_event, ready=None, **opts)`: it binds host:port (port 0:
an ephemeral one), calls `ready(port)` once it is really ready, serves until `stop_event` is set (or `life`
seconds, 60 by default, have passed) and closes everything it opened. Every loop is bounded by the stop flag, a
poll interval and a deadline.

    port, stop = in_thread("http", status=503)        # in this process (both ends traced when a case does it)
    with process("tls", max_version="TLSv1_2") as peer:  # its own process; peer.port
    python -m tests.corpus.peers KIND [host=H] [port=N] [key=value ...]

The process form prints `ready PORT` once listening (or `error MESSAGE` and exits 2) and exits on SIGTERM or
when its standard input closes. Option values are JSON when they parse as JSON (numbers, true/false, null),
strings otherwise.

| kind | what it does |
|---|---|
| closed | binds a TCP port and never listens: every SYN meets RST (dual=true: the same port on ::1 too) |
| closed_udp | reports a UDP port where no socket is bound (ICMP port unreachable answers datagrams) |
| backlog | a listener whose accept queue is full and which never accepts: SYNs are dropped |
| http | raw-socket HTTP/1.1: `status` (200), `body`, keep-alive; `idle_close` seconds: close an idle |
|      | keep-alive connection (FIN) after that long; bytes that are no request line (a TLS ClientHello): 400 |
| http_short | promises `length` (1000) bytes of body, sends `sent` (100), then `end`: "fin" or "rst" |
| http_big | a 200 with a `size`-byte body (262144), so a client that stops reading leaves data unread |
| silent | accepts, reads the request, never answers |
| eof | accepts and closes at once (FIN); `read_first`: read the request first |
| reset | `after`: "accept" (RST at once) or "request" (reads the request, then RST) |
| tls | TLS with a self-signed certificate made at start, then HTTP 200 inside; `min_version`, `max_version` |
|     | ("TLSv1_2"...), `ciphers`, `client_cert` ("required": the client must present one); `greeting`: |
|     | a server-speaks-first service (IMAPS) that sends this line after the handshake instead of HTTP |
| tls_old | answers any ClientHello with a hand-made TLS 1.0 ServerHello (a version modern clients refuse) |
| resp | Redis protocol: `mode` "pong_close" (+PONG then close) or "error" (each command gets `-{error}`) |
| smtp | aiosmtpd without STARTTLS, discards mail |
| smtp_drop | sends an SMTP banner and closes at once |
| sink | small receive buffer (`rcvbuf`, 4096), never reads; `reset_after` seconds: then RST |
| udp_echo | echoes every datagram |
| dns | UDP DNS: `mode` "nxdomain", "servfail", "silent" or "answer" (A 127.0.0.1, empty AAAA) |
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

POLL = 0.05  # seconds: how often loops look at the stop flag
LIFE = 60.0  # seconds: no peer lives longer, whatever happens
CONN_LIMIT = 20.0  # seconds: no connection is served longer
READY_TIMEOUT = 15.0
ROOT = Path(__file__).resolve().parents[2]

Ready = Callable[[int], None]


class PeerError(Exception):
    """The peer could not start."""


# -- helpers ----------------------------------------------------------------------------------------------


def _family(host: str) -> int:
    addr = ipaddress.ip_address(host.split("%")[0])
    if not addr.is_loopback:
        raise PeerError(f"peers listen on loopback only, not {host}")
    return socket.AF_INET6 if addr.version == 6 else socket.AF_INET


def _bind(host: str, port: int, kind: int = socket.SOCK_STREAM, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(_family(host), kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf is not None:  # set before listen(): accepted sockets inherit it (and the window it allows)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _deadline(opts: dict[str, Any]) -> float:
    return time.monotonic() + float(opts.get("life", LIFE))


def _running(stop: threading.Event, deadline: float) -> bool:
    return not stop.is_set() and time.monotonic() < deadline


def _idle(stop: threading.Event, deadline: float) -> None:
    while _running(stop, deadline):
        stop.wait(POLL)


def _recv_until(conn: socket.socket, stop: threading.Event, marker: bytes | None, limit: float,
                want: int | None = None) -> bytes:
    """Read until `marker` appears (or `want` bytes), EOF, an error, `limit` seconds or stop."""
    data = b""
    end = time.monotonic() + limit
    while not stop.is_set() and time.monotonic() < end:
        ready, _, _ = select.select([conn], [], [], POLL)
        if not ready:
            continue
        try:
            chunk = conn.recv(65536)
        except (OSError, ssl.SSLError):
            break
        if not chunk:
            break
        data += chunk
        if marker is not None and marker in data:
            break
        if want is not None and len(data) >= want:
            break
    return data


def _abort(conn: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _serve_tcp(host: str, port: int, stop: threading.Event, ready: Ready | None, opts: dict[str, Any],
               handle: Callable[[socket.socket, threading.Event], None], *, rcvbuf: int | None = None,
               wrap: Callable[[socket.socket], socket.socket | None] | None = None) -> None:
    """Listen, and serve each connection in its own (daemon, bounded) thread; on the way out close the listener,
    then wait a little for the connection threads."""
    deadline = _deadline(opts)
    listener = _bind(host, port, rcvbuf=rcvbuf)
    listener.listen(16)
    workers: list[threading.Thread] = []

    def run(conn: socket.socket) -> None:
        try:
            if wrap is not None:
                wrapped = wrap(conn)
                if wrapped is None:
                    return
                conn = wrapped
            handle(conn, stop)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    with listener:
        if ready:
            ready(listener.getsockname()[1])
        while _running(stop, deadline):
            r, _, _ = select.select([listener], [], [], POLL)
            if not r:
                continue
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            t = threading.Thread(target=run, args=(conn,), daemon=True, name="peer-conn")
            t.start()
            workers.append(t)
    for t in workers:
        t.join(2.0)


# -- TCP refusals and drops ---------------------------------------------------------------------------------


def serve_closed(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    """Bound, never listening: the kernel answers every SYN with RST. dual=True holds the port on ::1 too."""
    deadline = _deadline(opts)
    socks = [_bind(host, port)]
    try:
        if opts.get("dual"):
            for _ in range(20):  # the same port number free on the other family (bounded tries)
                other = "::1" if _family(host) == socket.AF_INET else "127.0.0.1"
                try:
                    socks.append(_bind(other, socks[0].getsockname()[1]))
                    break
                except OSError:
                    socks[0].close()
                    socks[0] = _bind(host, 0)
            else:
                raise PeerError("no port free on both 127.0.0.1 and ::1")
        if ready:
            ready(socks[0].getsockname()[1])
        _idle(stop, deadline)
    finally:
        for s in socks:
            s.close()


def serve_closed_udp(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    """A UDP port no socket is bound to (found by binding one and letting it go)."""
    deadline = _deadline(opts)
    if not port:
        with _bind(host, 0, socket.SOCK_DGRAM) as probe:
            port = probe.getsockname()[1]
    if ready:
        ready(port)
    _idle(stop, deadline)


_TCP_INFO_UNACKED = 24  # struct tcp_info: for a listener, tcpi_unacked = accept queue length, tcpi_sacked = max


def _accept_queue(listener: socket.socket) -> tuple[int, int]:
    info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    length, limit = struct.unpack_from("II", info, _TCP_INFO_UNACKED)
    return int(length), int(limit)


def serve_backlog(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    """listen(1), fill the accept queue with connections of our own, never accept: Linux drops further SYNs."""
    deadline = _deadline(opts)
    listener = _bind(host, port)
    listener.listen(1)
    fillers: list[socket.socket] = []
    try:
        target = listener.getsockname()[:2]
        for _ in range(4):  # Linux: full once the queue holds more than the backlog
            length, limit = _accept_queue(listener)
            if length > limit:
                break
            conn = socket.socket(listener.family, socket.SOCK_STREAM)
            conn.settimeout(2)
            conn.connect(target)
            fillers.append(conn)
            for _ in range(40):  # the handshake's last ACK reaches the queue within microseconds
                if _accept_queue(listener)[0] >= len(fillers):
                    break
                time.sleep(0.005)
        length, limit = _accept_queue(listener)
        if length <= limit:
            raise PeerError(f"could not fill the accept queue ({length} of {limit})")
        if ready:
            ready(listener.getsockname()[1])
        _idle(stop, deadline)
    finally:
        for conn in fillers:
            conn.close()
        listener.close()


# -- HTTP over raw sockets -------------------------------------------------------------------------------------


_HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)
PAGE = b"hello from a corpus peer\n"


def _read_request(conn: socket.socket, stop: threading.Event, limit: float, buf: bytes = b"") -> tuple[bytes, bytes]:
    """One HTTP request (head and its Content-Length body) and what was read past it; (b"", b"") at EOF."""
    data = buf
    if _HEAD_END not in data:
        data += _recv_until(conn, stop, _HEAD_END, limit)
    if _HEAD_END not in data:
        return b"", b""
    head, _, rest = data.partition(_HEAD_END)
    m = _CONTENT_LENGTH.search(head)
    need = int(m.group(1)) if m else 0
    if len(rest) < need:
        rest += _recv_until(conn, stop, None, limit, want=need - len(rest))
    return head + _HEAD_END + rest[:need], rest[need:]


def _response(status: int, body: bytes, *, length: int | None = None, close: bool = False) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway",
              503: "Service Unavailable"}.get(status, "Status")
    head = (f"HTTP/1.1 {status} {reason}\r\nServer: corpus-peer\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n")
    return head.encode() + body


def _wants_close(request: bytes) -> bool:
    head = request.split(_HEAD_END, 1)[0].lower()
    return b"\r\nconnection: close" in head or head.split(b"\r\n", 1)[0].endswith(b"http/1.0")


def _http_handler(opts: dict[str, Any]) -> Callable[[socket.socket, threading.Event], None]:
    status = int(opts.get("status", 200))
    body = str(opts.get("body", PAGE.decode())).encode()
    idle_close = opts.get("idle_close")
    idle = float(idle_close) if idle_close is not None else CONN_LIMIT

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        extra = _recv_until(conn, stop, b"", CONN_LIMIT)  # the first bytes
        if extra and not extra[:1].isalpha():  # not a request line (a TLS ClientHello...): 400, as nginx does
            conn.sendall(_response(400, b"Bad Request\n", close=True))
            conn.shutdown(socket.SHUT_WR)
            _recv_until(conn, stop, None, 2.0)
            return
        first = True
        for _ in range(100):  # requests on one keep-alive connection
            request, extra = _read_request(conn, stop, CONN_LIMIT if first else idle, extra)
            if not request:
                return  # EOF, or idle for `idle_close` seconds: leaving closes (FIN)
            first = False
            close = _wants_close(request)
            conn.sendall(_response(status, b"" if request.startswith(b"HEAD ") else body, close=close))
            if close:
                return

    return handle


def serve_http(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    """HTTP/1.1 keep-alive: every request gets `status` with `body`; `idle_close` closes idle connections."""
    _serve_tcp(host, port, stop, ready, opts, _http_handler(opts))


def serve_http_short(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    """Content-Length: `length`, but only `sent` bytes of body, then FIN (end="fin") or RST (end="rst")."""
    length, sent, end = int(opts.get("length", 1000)), int(opts.get("sent", 100)), str(opts.get("end", "fin"))

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        request, _ = _read_request(conn, stop, CONN_LIMIT)
        if not request:
            return
        conn.sendall(_response(200, b"x" * sent, length=length))
        if end == "rst":
            _abort(conn)  # the client still reads the queued partial body first, then ECONNRESET
        else:
            conn.shutdown(socket.SHUT_WR)
            _recv_until(conn, stop, None, 2.0)  # read what comes until the client closes: then close() sends no RST

    _serve_tcp(host, port, stop, ready, opts, handle)


def serve_http_big(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    """A 200 with a large body (`size` bytes)."""
    size = int(opts.get("size", 262144))

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        request, _ = _read_request(conn, stop, CONN_LIMIT)
        if not request:
            return
        conn.settimeout(5)
        with contextlib.suppress(OSError):
            conn.sendall(_response(200, b"y" * size, close=True))
        _recv_until(conn, stop, None, 5.0)

    _serve_tcp(host, port, stop, ready, opts, handle)


def serve_silent(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    """Accepts and reads the request (the kernel ACKs it), never answers; closes once the client has."""

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        _recv_until(conn, stop, None, CONN_LIMIT)  # returns at the client's FIN

    _serve_tcp(host, port, stop, ready, opts, handle)


def serve_eof(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    """Accepts and closes at once (FIN). read_first=True: reads the request first."""
    read_first = bool(opts.get("read_first", False))

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        if read_first:
            _read_request(conn, stop, CONN_LIMIT)
        conn.shutdown(socket.SHUT_WR)
        _recv_until(conn, stop, None, 2.0)  # drain until the client closes, so that our close sends no RST

    _serve_tcp(host, port, stop, ready, opts, handle)


def serve_reset(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    """after="accept": RST right after accepting; after="request": read the request, then RST."""
    after = str(opts.get("after", "request"))

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        if after == "request":
            _read_request(conn, stop, CONN_LIMIT)
        _abort(conn)

    _serve_tcp(host, port, stop, ready, opts, handle)


# -- TLS -----------------------------------------------------------------------------------------------------


_CERT_LOCK = threading.Lock()
_CERT: tuple[str, str] | None = None


def certificate() -> tuple[str, str]:
    """(certfile, keyfile): a self-signed certificate for localhost, 127.0.0.1 and ::1, made once per process
    with `openssl req` (the `cryptography` package is not installed here) in a temporary folder removed at exit."""
    global _CERT
    with _CERT_LOCK:
        if _CERT is None:
            openssl = shutil.which("openssl")
            if openssl is None:
                raise PeerError("openssl is needed to make a self-signed certificate")
            folder = tempfile.mkdtemp(prefix="corpus-cert-")
            atexit.register(shutil.rmtree, folder, True)
            cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
            subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext",
                            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1", "-keyout", key, "-out", cert],
                           check=True, capture_output=True, timeout=30)
            _CERT = (cert, key)
        return _CERT


def _tls_version(name: str) -> ssl.TLSVersion:
    return ssl.TLSVersion[name]


def server_context(opts: dict[str, Any]) -> ssl.SSLContext:
    """The TLS peer's context from its options (also used by in-process servers of the cases)."""
    import warnings

    cert, key = certificate()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    with warnings.catch_warnings():  # TLSv1 and TLSv1_1 are deprecated names, on purpose here
        warnings.simplefilter("ignore", DeprecationWarning)
        if opts.get("ciphers"):
            ctx.set_ciphers(str(opts["ciphers"]))
        if opts.get("min_version"):
            ctx.minimum_version = _tls_version(str(opts["min_version"]))
        if opts.get("max_version"):
            ctx.maximum_version = _tls_version(str(opts["max_version"]))
    if opts.get("client_cert") == "required":
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cert)
    return ctx


def serve_tls(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    """TLS (self-signed certificate), then the HTTP handler inside the TLS session; with `greeting`, a
    server-speaks-first service instead (IMAPS, SMTPS): the greeting, then read until the client closes."""
    ctx = server_context(opts)
    handler = _http_handler(opts)
    if opts.get("greeting"):
        greeting = str(opts["greeting"]).encode()

        def handler(conn: socket.socket, stop: threading.Event) -> None:
            conn.sendall(greeting)
            _recv_until(conn, stop, None, CONN_LIMIT)

    def wrap(conn: socket.socket) -> socket.socket | None:
        conn.settimeout(5)
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            return None  # the handshake failed: the alert (ours or theirs) is already on the wire
        return tls

    _serve_tcp(host, port, stop, ready, opts, handler, wrap=wrap)


def old_server_hello() -> bytes:
    """A TLS 1.0 ServerHello record (TLS_RSA_WITH_AES_128_CBC_SHA, no extensions)."""
    body = b"\x03\x01" + os.urandom(32) + b"\x00" + b"\x00\x2f" + b"\x00"
    handshake = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


def serve_tls_old(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    """Answers a ClientHello with a TLS 1.0 ServerHello, then waits for the client's verdict (an alert) and EOF."""

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        hello = _recv_until(conn, stop, None, CONN_LIMIT, want=5)
        if not hello.startswith(b"\x16\x03"):
            return
        conn.sendall(old_server_hello())
        _recv_until(conn, stop, None, 5.0)

    _serve_tcp(host, port, stop, ready, opts, handle)


# -- Redis, SMTP -----------------------------------------------------------------------------------------------


def _resp_commands(data: bytes) -> tuple[list[list[bytes]], bytes]:
    """Complete RESP arrays of bulk strings in `data` (and inline commands), and the unparsed rest."""
    out: list[list[bytes]] = []
    for _ in range(1000):
        if not data:
            break
        if not data.startswith(b"*"):
            line, sep, rest = data.partition(b"\r\n")
            if not sep:
                break
            out.append(line.split())
            data = rest
            continue
        head, sep, rest = data.partition(b"\r\n")
        if not sep:
            break
        count, args, ok = int(head[1:]), [], True
        for _ in range(count):
            size_line, sep, rest = rest.partition(b"\r\n")
            if not sep or len(rest) < int(size_line[1:]) + 2:
                ok = False
                break
            size = int(size_line[1:])
            args.append(rest[:size])
            rest = rest[size + 2:]
        if not ok:
            break
        out.append(args)
        data = rest
    return out, data


def serve_resp(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    """mode="pong_close": +OK to anything, +PONG to PING and then close (FIN). mode="error": `-{error}` to each
    command. The handshake redis-py sends first (HELLO 3, CLIENT SETINFO) gets its normal replies."""
    mode = str(opts.get("mode", "pong_close"))
    error = str(opts.get("error", "ERR unknown command"))

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        buf = b""
        end = time.monotonic() + CONN_LIMIT
        while not stop.is_set() and time.monotonic() < end:
            chunk = _recv_until(conn, stop, b"\r\n", 2.0)
            if not chunk:
                return
            buf += chunk
            commands, buf = _resp_commands(buf)
            for cmd in commands:
                name = cmd[0].upper() if cmd else b""
                if name == b"HELLO":  # redis-py 8 speaks RESP3 by default: the handshake's map
                    proto = int(cmd[1]) if len(cmd) > 1 and cmd[1].isdigit() else 2
                    conn.sendall(b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.4\r\n"
                                 b"$5\r\nproto\r\n:" + str(proto).encode() + b"\r\n")
                elif mode == "error" and name != b"CLIENT":
                    conn.sendall(b"-" + error.encode() + b"\r\n")
                elif name == b"PING":
                    conn.sendall(b"+PONG\r\n")
                    if mode == "pong_close":
                        conn.shutdown(socket.SHUT_WR)
                        _recv_until(conn, stop, None, 2.0)
                        return
                else:
                    conn.sendall(b"+OK\r\n")

    _serve_tcp(host, port, stop, ready, opts, handle)


BANNER = b"220 corpus.peer ESMTP ready\r\n"


def serve_smtp_drop(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    """The banner, then close at once: FIN right behind the banner (shutdown first, so that a command that
    arrives meanwhile cannot turn the close into a bare RST); whatever the client sends next draws RST."""

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(BANNER)
        conn.shutdown(socket.SHUT_WR)

    _serve_tcp(host, port, stop, ready, opts, handle)


def serve_smtp(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    """aiosmtpd, without STARTTLS (no tls_context): its EHLO reply does not offer it. Discards mail."""
    import asyncio
    import logging

    from aiosmtpd.smtp import SMTP

    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    deadline = _deadline(opts)

    class Discard:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
            return "250 OK: message accepted (and discarded)"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(Discard(), hostname="corpus.peer"), host, port,
                                          family=_family(host), reuse_address=True)
        async with server:
            if ready:
                ready(server.sockets[0].getsockname()[1])
            while _running(stop, deadline):
                await asyncio.sleep(POLL)

    asyncio.run(main())


# -- sinks and UDP -----------------------------------------------------------------------------------------


def serve_sink(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    """Never reads; its small receive buffer (`rcvbuf`) fills and it advertises a zero window. `reset_after`
    seconds after accepting (None: when the client closes or at stop), it resets the connection."""
    rcvbuf = int(opts.get("rcvbuf", 4096))
    reset_after = opts.get("reset_after")

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        end = time.monotonic() + (float(reset_after) if reset_after is not None else CONN_LIMIT)
        while not stop.is_set() and time.monotonic() < end:
            stop.wait(POLL / 5)
        _abort(conn)

    _serve_tcp(host, port, stop, ready, opts, handle, rcvbuf=rcvbuf)


def serve_udp_echo(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    deadline = _deadline(opts)
    with _bind(host, port, socket.SOCK_DGRAM) as sock:
        if ready:
            ready(sock.getsockname()[1])
        while _running(stop, deadline):
            r, _, _ = select.select([sock], [], [], POLL)
            if r:
                data, addr = sock.recvfrom(65536)
                sock.sendto(data, addr)


def dns_question(query: bytes) -> tuple[int, int, bytes, str, int]:
    """(id, flags, the question's bytes, its name, its type) of a DNS query. Pure."""
    qid, flags = struct.unpack_from("!HH", query)
    pos, labels = 12, []
    for _ in range(128):
        n = query[pos]
        pos += 1
        if n == 0:
            break
        labels.append(query[pos:pos + n].decode("ascii", "replace"))
        pos += n
    qtype = struct.unpack_from("!H", query, pos)[0]
    return qid, flags, query[12:pos + 4], ".".join(labels), qtype


def dns_reply(query: bytes, mode: str) -> bytes | None:
    """The reply to `query` for a mode ("nxdomain", "servfail", "answer"; "silent": None). Pure."""
    if mode == "silent" or len(query) < 17:
        return None
    qid, flags, question, _name, qtype = dns_question(query)
    rcode = {"nxdomain": 3, "servfail": 2}.get(mode, 0)
    answers = b""
    count = 0
    if mode == "answer" and qtype == 1:  # A 127.0.0.1, TTL 5; AAAA: no data (NOERROR, no answer)
        answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton("127.0.0.1")
        count = 1
    reply_flags = 0x8000 | (flags & 0x0100) | 0x0080 | rcode
    return struct.pack("!HHHHHH", qid, reply_flags, 1, count, 0, 0) + question + answers


def serve_dns(host: str, port: int, stop: threading.Event, ready: Ready | None = None, **opts: Any) -> None:
    mode = str(opts.get("mode", "nxdomain"))
    deadline = _deadline(opts)
    with _bind(host, port, socket.SOCK_DGRAM) as sock:
        if ready:
            ready(sock.getsockname()[1])
        while _running(stop, deadline):
            r, _, _ = select.select([sock], [], [], POLL)
            if not r:
                continue
            query, addr = sock.recvfrom(65536)
            try:
                reply = dns_reply(query, mode)
            except (IndexError, struct.error):
                continue
            if reply is not None:
                sock.sendto(reply, addr)


# -- running a peer ------------------------------------------------------------------------------------------


KINDS: dict[str, Callable[..., None]] = {
    name[len("serve_"):]: fn for name, fn in sorted(globals().items()) if name.startswith("serve_") and callable(fn)
}


def in_thread(kind: str, host: str = "127.0.0.1", port: int = 0, **opts: Any) -> tuple[int, Callable[[], None]]:
    """Start a peer in a daemon thread of this process; (its port, a function that stops it and waits)."""
    serve = KINDS[kind]
    stop = threading.Event()
    got: list[int] = []
    failed: list[BaseException] = []
    is_ready = threading.Event()

    def ready(p: int) -> None:
        got.append(p)
        is_ready.set()

    def run() -> None:
        try:
            serve(host, port, stop, ready=ready, **opts)
        except BaseException as exc:  # noqa: BLE001 (reported to the starter)
            failed.append(exc)
            is_ready.set()

    thread = threading.Thread(target=run, daemon=True, name=f"peer-{kind}")
    thread.start()
    if not is_ready.wait(READY_TIMEOUT) or not got:
        stop.set()
        raise PeerError(f"peer {kind} did not get ready: {failed[0] if failed else 'timeout'}")

    def stopper() -> None:
        stop.set()
        thread.join(5.0)

    return got[0], stopper


class Process:
    """A peer in its own process: `port` once ready; `stop()` ends it (SIGTERM, stdin closed, then SIGKILL)."""

    def __init__(self, kind: str, host: str = "127.0.0.1", port: int = 0, **opts: Any) -> None:
        args = [f"host={host}", f"port={port}"] + [f"{k}={json.dumps(v)}" for k, v in opts.items()]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self._err = tempfile.TemporaryFile()  # not a pipe: a chatty peer must never block on a full one
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.corpus.peers", kind, *args], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                     start_new_session=True)
        try:
            self.port = self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> int:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        line = b""
        end = time.monotonic() + READY_TIMEOUT
        while not line.endswith(b"\n") and time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], POLL)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                line += chunk
        word, _, rest = line.decode(errors="replace").strip().partition(" ")
        if word == "ready" and rest.isdigit():
            return int(rest)
        raise PeerError(f"peer did not get ready: {line!r}")

    def stop(self) -> str:
        """Stop and reap the peer; its standard error."""
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, BrokenPipeError, OSError):
                self.proc.send_signal(sig)
                if self.proc.stdin is not None and not self.proc.stdin.closed:
                    self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
        err = b""
        with contextlib.suppress(OSError, ValueError):
            self._err.seek(0)
            err = self._err.read()
            self._err.close()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        return err.decode(errors="replace")


@contextlib.contextmanager
def process(kind: str, host: str = "127.0.0.1", port: int = 0, **opts: Any) -> Iterator[Process]:
    peer = Process(kind, host, port, **opts)
    try:
        yield peer
    finally:
        peer.stop()


def parse_opts(args: list[str]) -> dict[str, Any]:
    """["host=::1", "port=0", "status=503"] -> {"host": "::1", "port": 0, "status": 503}. Pure."""
    out: dict[str, Any] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ValueError(f"not key=value: {arg!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in KINDS:
        print(f"error usage: python -m tests.corpus.peers {{{','.join(KINDS)}}} [key=value ...]", flush=True)
        return 2
    try:
        opts = parse_opts(args[1:])
    except ValueError as exc:
        print(f"error {exc}", flush=True)
        return 2
    host, port = str(opts.pop("host", "127.0.0.1")), int(opts.pop("port", 0))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())
    signal.signal(signal.SIGINT, lambda _s, _f: stop.set())

    def watch_stdin() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()

    def ready(p: int) -> None:
        print(f"ready {p}", flush=True)

    try:
        KINDS[args[0]](host, port, stop, ready=ready, **opts)
    except (PeerError, OSError) as exc:
        print(f"error {exc}", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
