"""socket.create_connection(("localhost", PORT), all_errors=True) (3.11+) where localhost is ::1 and 127.0.0.1.

In a private network namespace whose /etc/hosts names localhost for both families, nothing listens on PORT on
either (the peer holds the port bound on both, unlistened). create_connection tries ::1, then 127.0.0.1, and
with all_errors=True raises ExceptionGroup("create_connection failed", [ConnectionRefusedError x2]).

Wire: a TCP SYN to [::1]:PORT answered by RST/ACK, then a SYN to 127.0.0.1:PORT answered by RST/ACK.
"""

import socket
import sys

PEER = "closed"
PEER_OPTS: dict[str, object] = {"dual": True}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "ExceptionGroup"
LIBRARY = "socket"
CLASSES = ("exception-group", "refusal", "ipv6")
MIN_PYTHON = (3, 11)
NETNS: dict[str, object] = {"hosts": "dual"}


def main(port: int) -> None:
    with socket.create_connection(("localhost", port), timeout=5, all_errors=True) as sock:
        print(sock.getpeername())


if __name__ == "__main__":
    main(int(sys.argv[1]))
