"""socket.create_connection with a 3.5 s timeout to a listener whose accept queue is full.

The peer's kernel drops every SYN (its accept queue is full and it never accepts), so nothing comes back. Linux
retransmits the SYN: with net.ipv4.tcp_syn_linear_timeouts (4 by default since Linux 6.5) the first
retransmissions are 1 s apart (older kernels double: 1, 2, 4 s). At 3.5 s Python's own timeout gives up: poll()
returns 0 and socket raises TimeoutError("timed out"). No errno: the kernel never reported an error, Python's
clock did, and closing a socket in SYN-SENT sends nothing.

Wire: SYNs with one ISN at about 0, 1, 2, 3 s (0, 1, 3 s on older kernels); nothing from the server.
"""

import socket
import sys

PEER = "backlog"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "TimeoutError"
LIBRARY = "socket"
CLASSES = ("timeout", "connect-timeout")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=3.5) as sock:
        sock.sendall(b"PING\r\n")
        print(sock.recv(100))


if __name__ == "__main__":
    main(int(sys.argv[1]))
