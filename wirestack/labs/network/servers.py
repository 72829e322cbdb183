"""The servers a network lab starts inside its hosts: a TCP sink, a UDP sink and the DNS server of `dns`.

Each runs with the same interpreter as wirestack (`python -I -S`: the standard library only, nothing of the
user's site-packages), prints `ready` once it listens, and is killed with its host at the end of the lab (no
death signal to wait for: the topology kills every process in its namespaces). What they print after `ready`
is never read.

    tcp   binds PORT on every address; per connection: reads until EOF (or 5 s of silence), then closes
    udp   binds PORT; reads datagrams and answers nothing
    dns   `python -m wirestack.labs.network.dns` with the server's ARGS (mode, addresses)
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ...errors import NetworkError
from .topology import Topology

READY_SECONDS = 5.0
_ROOT = str(Path(__file__).resolve().parents[3])

TCP_SINK = r'''
import socket, sys, threading
server = socket.create_server(("", int(sys.argv[1])), family=socket.AF_INET6, dualstack_ipv6=True, backlog=64)
print("ready", flush=True)
def serve(conn):
    with conn:
        conn.settimeout(5)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
'''

UDP_SINK = r'''
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("", int(sys.argv[1])))
print("ready", flush=True)
while True:
    sock.recvfrom(65536)
'''

DNS = ("import sys; sys.path.insert(0, {root!r}); from wirestack.labs.network.dns import main; "
       "sys.exit(main(sys.argv[1:]))")


@dataclass(frozen=True)
class Server:
    """A server of KIND ("tcp", "udp", "dns") in HOST on PORT; `args`: the DNS server's options."""

    host: str
    kind: str
    port: int = 0
    args: tuple[str, ...] = ()

    def describe(self) -> dict[str, object]:
        return {"host": self.host, "kind": self.kind, "port": self.port, "args": list(self.args)}


def start(net: Topology, server: Server) -> subprocess.Popen[bytes]:
    """Start SERVER in its host and wait for its ready line; NetworkError if it does not come."""
    if server.kind == "tcp":
        argv = [sys.executable, "-I", "-S", "-c", TCP_SINK, str(server.port)]
    elif server.kind == "udp":
        argv = [sys.executable, "-I", "-S", "-c", UDP_SINK, str(server.port)]
    elif server.kind == "dns":
        argv = [sys.executable, "-I", "-S", "-c", DNS.format(root=_ROOT), "--port", str(server.port or 53),
                *server.args]
    else:
        raise NetworkError(f"no server of kind {server.kind!r}")
    proc = net.run(server.host, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   cwd="/")
    assert proc.stdout is not None
    fd, line, deadline = proc.stdout.fileno(), b"", time.monotonic() + READY_SECONDS
    while b"\n" not in line:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 256)
        if not chunk:
            break
        line += chunk
    if not line.startswith(b"ready"):
        err = b""
        if proc.poll() is not None and proc.stderr is not None:
            err = proc.stderr.read(2000)
        last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no answer"]
        raise NetworkError(f"the {server.kind} server in {server.host} did not start: {last[0]}")
    return proc
