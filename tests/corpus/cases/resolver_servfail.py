"""socket.create_connection to a name whose DNS server answers SERVFAIL.

create_connection resolves first; the resolver gets SERVFAIL for A and AAAA and fails with EAI_AGAIN
(socket.gaierror [Errno -3]). No connect() happens.

Wire: DNS queries for api.example.test; SERVFAIL responses (glibc asks again: attempts:2); no TCP.
"""

import socket

PEER = "dns"
PEER_OPTS: dict[str, object] = {"mode": "servfail"}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "socket.gaierror"
LIBRARY = "socket"
CLASSES = ("resolver",)
MIN_PYTHON = (3, 10)
NETNS: dict[str, object] = {}


def main() -> None:
    with socket.create_connection(("api.example.test", 443), timeout=5) as sock:
        print(sock.getpeername())


if __name__ == "__main__":
    main()
