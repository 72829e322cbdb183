"""socket.getaddrinfo with no DNS server at all: nothing listens on the nameserver's port.

In a private network namespace resolv.conf names 127.0.0.53 and nothing is there. Each query draws an ICMP port
unreachable; glibc's resolver socket is connected, so it is told (ECONNREFUSED) at once and tries again
(attempts:2), then gives up with EAI_AGAIN: socket.gaierror [Errno -3] Temporary failure in name resolution.

Wire: DNS queries to 127.0.0.53:53, each answered by ICMP port unreachable quoting it.
"""

import socket

PEER = None
PEER_OPTS: dict[str, object] = {}
WHERE = "none"
EXPECT_EXIT = 1
EXCEPTION = "socket.gaierror"
LIBRARY = "socket"
CLASSES = ("resolver", "icmp")
MIN_PYTHON = (3, 10)
NETNS: dict[str, object] = {}


def main() -> None:
    print(socket.getaddrinfo("db.internal.example", 5432, type=socket.SOCK_STREAM))


if __name__ == "__main__":
    main()
