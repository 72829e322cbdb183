"""A statsd-style metrics client on a connected UDP socket: the second send() fails.

The first datagram goes out and draws ICMP port unreachable (on loopback it is back before send() returns); the
connected socket keeps the error, and the next send() (not a recv) raises ConnectionRefusedError. The second
datagram never leaves.

Wire: one UDP datagram; one ICMP port unreachable quoting it; no second datagram.
"""

import socket
import sys

PEER = "closed_udp"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "ConnectionRefusedError"
LIBRARY = "socket"
CLASSES = ("udp", "icmp")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    metrics = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    metrics.connect(("127.0.0.1", port))
    metrics.send(b"jobs.started:1|c")
    for name in ("jobs.finished:1|c", "jobs.duration:412|ms"):
        metrics.send(name.encode())
    metrics.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
