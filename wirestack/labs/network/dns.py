"""A tiny DNS server over UDP that answers, fails or stays silent on purpose, and resolv.conf text for a host.

    python -m wirestack.labs.network.dns --mode nxdomain --bind 198.51.100.53

prints `ready PORT` once bound, then serves until its stdin closes or it gets SIGTERM (so keep stdin a pipe,
or pass --no-stdin). Modes: `answer` (A/AAAA from --a/--aaaa; NOERROR with no answer for other types or when
no address of that type was given; NXDOMAIN for names not in --name, if given), `nxdomain`, `servfail`,
`refused`, `silent` (reads the query and never answers). With --log every query is a line on stdout:
`query SECONDS ID NAME TYPE MODE`.

To make glibc in a host ask this server, give the host resolv.conf text (Host.resolv_conf, e.g. from
resolv_conf() below): Topology then runs that host's processes in a private mount namespace where the text is
bind-mounted over /etc/resolv.conf.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

MODES = ("answer", "nxdomain", "servfail", "refused", "silent")
RCODES = {"answer": 0, "servfail": 2, "nxdomain": 3, "refused": 5}
TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV", 65: "HTTPS"}
A, AAAA, IN = 1, 28, 1


@dataclass(frozen=True)
class Query:
    """The parts of a query a reply needs. `question` is the raw question section, echoed back."""

    id: int
    flags: int
    name: str
    qtype: int
    qclass: int
    question: bytes

    def type_name(self) -> str:
        return TYPES.get(self.qtype, str(self.qtype))


def parse(data: bytes) -> Query:
    """Header and first question of a DNS query; ValueError if it is not one."""
    if len(data) < 12:
        raise ValueError("shorter than a DNS header")
    ident, flags, qdcount = struct.unpack_from("!HHH", data)
    if flags & 0x8000 or qdcount < 1:
        raise ValueError("not a query")
    labels, at = [], 12
    while True:
        if at >= len(data):
            raise ValueError("name runs past the end")
        size = data[at]
        if size & 0xC0:
            raise ValueError("compressed name in a question")
        at += 1
        if size == 0:
            break
        labels.append(data[at:at + size].decode("ascii", errors="replace"))
        at += size
    if at + 4 > len(data):
        raise ValueError("question has no type and class")
    qtype, qclass = struct.unpack_from("!HH", data, at)
    return Query(ident, flags, ".".join(labels).lower(), qtype, qclass, data[12:at + 4])


def reply(query: Query, mode: str, a: Sequence[str] = (), aaaa: Sequence[str] = (), names: Sequence[str] = (),
          ttl: int = 60) -> bytes | None:
    """The reply MODE gives to QUERY, or None for silence."""
    if mode == "silent":
        return None
    rcode = RCODES[mode]
    answers: list[bytes] = []
    if mode == "answer":
        if names and query.name.rstrip(".") not in {n.lower().rstrip(".") for n in names}:
            rcode = 3
        elif query.qclass == IN and query.qtype in (A, AAAA):
            family = socket.AF_INET if query.qtype == A else socket.AF_INET6
            for address in a if query.qtype == A else aaaa:
                rdata = socket.inet_pton(family, address)
                # The name is a pointer to the question's (offset 12); class IN.
                answers.append(struct.pack("!HHHIH", 0xC00C, query.qtype, IN, ttl, len(rdata)) + rdata)
    # QR, the query's opcode and RD, AA, RA; then the RCODE.
    flags = 0x8000 | (query.flags & 0x7900) | 0x0400 | 0x0080 | rcode
    return struct.pack("!HHHHHH", query.id, flags, 1, len(answers), 0, 0) + query.question + b"".join(answers)


class Server:
    """One UDP socket answering in MODE. `serve` returns when `stop()` is true (polled every 0.1 s) or when a
    readable `until` file descriptor reaches end of file."""

    def __init__(self, mode: str = "answer", bind: str = "0.0.0.0", port: int = 53, a: Sequence[str] = (),
                 aaaa: Sequence[str] = (), names: Sequence[str] = (), ttl: int = 60, log: TextIO | None = None):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
        for address in [*a, *aaaa]:
            ipaddress.ip_address(address)
        self.mode, self.a, self.aaaa, self.names, self.ttl, self.log = mode, a, aaaa, names, ttl, log
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((bind, port))
        self.port: int = self.sock.getsockname()[1]
        self.started = time.monotonic()
        self.queries: list[tuple[float, Query]] = []  # seconds since start, query

    def handle(self) -> None:
        data, peer = self.sock.recvfrom(4096)
        try:
            query = parse(data)
        except ValueError:
            return
        self.queries.append((time.monotonic() - self.started, query))
        if self.log:
            print(f"query {self.queries[-1][0]:.3f} {query.id} {query.name} {query.type_name()} {self.mode}",
                  file=self.log, flush=True)
        answer = reply(query, self.mode, self.a, self.aaaa, self.names, self.ttl)
        if answer is not None:
            self.sock.sendto(answer, peer)

    def serve(self, stop: Callable[[], bool] = lambda: False, until: int | None = None) -> None:
        watch = [self.sock.fileno(), *([until] if until is not None else [])]
        while not stop():
            for fd in select.select(watch, [], [], 0.1)[0]:
                if fd == until:
                    if not os.read(fd, 4096):
                        return
                else:
                    self.handle()

    def close(self) -> None:
        self.sock.close()


def resolv_conf(nameservers: Sequence[str], *, timeout: int = 1, attempts: int = 2, search: Sequence[str] = (),
                options: Sequence[str] = ()) -> str:
    """resolv.conf text. Short timeouts by default (glibc's are 5 s x 2 attempts). No search line unless given:
    a topology's host names have no dot, so glibc takes no search domain from them (and `search .` would make
    it ask every question twice)."""
    lines = [f"nameserver {n}" for n in nameservers]
    if search:
        lines.append(f"search {' '.join(search)}")
    lines.append(" ".join(["options", f"timeout:{timeout}", f"attempts:{attempts}", *options]))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wirestack.labs.network.dns", description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=MODES, default="answer")
    parser.add_argument("--bind", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=53, help="UDP port (default 53; 0 picks one)")
    parser.add_argument("--a", action="append", default=[], metavar="ADDRESS", help="an A record (repeatable)")
    parser.add_argument("--aaaa", action="append", default=[], metavar="ADDRESS", help="an AAAA record")
    parser.add_argument("--name", action="append", default=[], help="answer only this name (repeatable)")
    parser.add_argument("--ttl", type=int, default=60)
    parser.add_argument("--log", action="store_true", help="print each query on stdout")
    parser.add_argument("--no-stdin", action="store_true", help="do not exit when stdin closes")
    args = parser.parse_args(argv)
    try:
        server = Server(args.mode, args.bind, args.port, args.a, args.aaaa, args.name, args.ttl,
                        sys.stdout if args.log else None)
    except (OSError, ValueError) as exc:
        print(f"dns: cannot serve on {args.bind}:{args.port}: {exc}", file=sys.stderr)
        return 1
    stopping: list[int] = []

    def on_term(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_term)
    print(f"ready {server.port}", flush=True)
    try:
        server.serve(lambda: bool(stopping), None if args.no_stdin else sys.stdin.fileno())
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
