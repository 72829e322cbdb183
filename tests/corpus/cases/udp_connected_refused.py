"""UDP on a connected socket: send, then recv, to a port where nothing is bound.

The ICMP port unreachable is delivered to a connected socket as a pending error (ECONNREFUSED); recv() returns
it at once: ConnectionRefusedError. Same wire as the unconnected case, different verdict.

Wire: one UDP datagram; an ICMP port unreachable quoting it.
"""

import socket
import sys

PEER = "closed_udp"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "ConnectionRefusedError"
LIBRARY = "socket"
CLASSES = ("udp", "icmp", "refusal")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.connect(("127.0.0.1", port))
        sock.send(b"status?")
        print(sock.recv(2048))


if __name__ == "__main__":
    main(int(sys.argv[1]))
