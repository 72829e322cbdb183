"""socket.getaddrinfo("does-not-exist.invalid", 80) with a resolver that answers NXDOMAIN.

Runs in a private network namespace whose /etc/resolv.conf names 127.0.0.53, where a small DNS peer answers
every query with NXDOMAIN. glibc asks for A and AAAA (in parallel, from one socket), both come back NXDOMAIN,
and getaddrinfo fails with EAI_NONAME: socket.gaierror [Errno -2] Name or service not known. No TCP at all.

Wire: DNS queries (A, AAAA) for does-not-exist.invalid to 127.0.0.53:53; NXDOMAIN responses.
"""

import socket

PEER = "dns"
PEER_OPTS: dict[str, object] = {"mode": "nxdomain"}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "socket.gaierror"
LIBRARY = "socket"
CLASSES = ("resolver",)
MIN_PYTHON = (3, 10)
NETNS: dict[str, object] = {}


def main() -> None:
    for family, _, _, _, address in socket.getaddrinfo("does-not-exist.invalid", 80, type=socket.SOCK_STREAM):
        print(family.name, address)


if __name__ == "__main__":
    main()
