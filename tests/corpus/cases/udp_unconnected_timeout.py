"""UDP sendto/recvfrom on an unconnected socket, to a port where nothing is bound, with a 1 s timeout.

The kernel answers the datagram with ICMP port unreachable at once, but an unconnected UDP socket is never told
(Linux reports ICMP errors only to connected sockets, or with IP_RECVERR). recvfrom waits the whole second:
TimeoutError("timed out").

Wire: one UDP datagram; an ICMP port unreachable quoting it, microseconds later; then nothing.
"""

import socket
import sys

PEER = "closed_udp"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "TimeoutError"
LIBRARY = "socket"
CLASSES = ("udp", "icmp", "timeout")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(b"status?", ("127.0.0.1", port))
        data, sender = sock.recvfrom(2048)
        print(sender, data)


if __name__ == "__main__":
    main(int(sys.argv[1]))
