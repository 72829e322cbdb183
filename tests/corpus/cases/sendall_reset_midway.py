"""sendall() of 32 MB to a server that never reads and resets the connection after 0.3 s.

The server's receive window closes (zero window) once its small buffer is full; the client's send buffer fills
too and sendall() blocks. When the server aborts, sendall() fails: ConnectionResetError (or BrokenPipeError,
depending on when the RST lands). Most of the 32 MB never left the client.

Wire: handshake; data until the server advertises window 0; zero-window probes; the server's RST.
"""

import socket
import sys

PEER = "sink"
PEER_OPTS: dict[str, object] = {"rcvbuf": 4096, "reset_after": 0.3}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "ConnectionResetError"
LIBRARY = "socket"
CLASSES = ("reset", "zero-window")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    backup = b"\0" * (32 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(backup)
    print("backup uploaded")


if __name__ == "__main__":
    main(int(sys.argv[1]))
