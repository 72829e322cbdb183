"""sendall() of 2 MB returns, the program prints success and exits 0; most bytes never left the machine.

On loopback the client's send buffer holds megabytes, so sendall() only copies the data into the kernel and
returns. The server never reads: its small receive buffer fills and it advertises a zero window, so the data
stays in the client's send queue. close() cannot send a FIN behind unsent data; 0.3 s after accepting, the
server resets the connection and the queued bytes are dropped. Nothing in the program noticed.

Wire: handshake; a few KB of data until window 0; zero-window probes; the server's RST. Bytes that left:
a few KB of the 2,000,000.
"""

import socket
import sys

PEER = "sink"
PEER_OPTS: dict[str, object] = {"rcvbuf": 4096, "reset_after": 0.3}
WHERE = "external"
EXPECT_EXIT = 0
EXCEPTION = None
LIBRARY = "socket"
CLASSES = ("zero-window", "silent-loss")
MIN_PYTHON = (3, 10)
SETTLE = 0.8  # seconds the capture goes on after the program exits: the RST comes after it

PAYLOAD = 2_000_000


def main(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"\x42" * PAYLOAD)
    print(f"uploaded {PAYLOAD} bytes")


if __name__ == "__main__":
    main(int(sys.argv[1]))
