"""Both ends traced, in two processes: the program forks a child that serves one request and aborts it.

The parent makes the listening socket, forks; the child accepts, reads the request, and closes with SO_LINGER 0
(RST). The parent's http.client gets ConnectionResetError. "Who reset" is the child: same program, other
process, other end of the connection.

Wire: handshake; GET (from the parent); the RST (from the child).
"""

import http.client
import os
import socket
import struct

PEER = None
PEER_OPTS: dict[str, object] = {}
WHERE = "in-process"
EXPECT_EXIT = 1
EXCEPTION = "ConnectionResetError"
LIBRARY = "os.fork"
CLASSES = ("reset", "both-ends", "fork")
MIN_PYTHON = (3, 10)


def serve_once(listener: socket.socket) -> None:
    listener.settimeout(5)
    conn, _ = listener.accept()
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def main() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        try:
            serve_once(listener)
        finally:
            os._exit(0)
    listener.close()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/jobs/42")
        print(conn.getresponse().status)
    finally:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
