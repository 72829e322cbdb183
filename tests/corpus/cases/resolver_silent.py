"""socket.getaddrinfo against a DNS server that receives the queries and never answers.

resolv.conf says timeout:1 attempts:2, so glibc waits 1 s, asks again, waits again, and fails with EAI_AGAIN
(socket.gaierror [Errno -3]) after about 2 s. Unlike the no-server case there is no ICMP: the datagrams are
delivered, just never answered.

Wire: DNS queries for slow.example.test, repeated; no response, no ICMP.
"""

import socket

PEER = "dns"
PEER_OPTS: dict[str, object] = {"mode": "silent"}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "socket.gaierror"
LIBRARY = "socket"
CLASSES = ("resolver", "timeout")
MIN_PYTHON = (3, 10)
NETNS: dict[str, object] = {}


def main() -> None:
    print(socket.getaddrinfo("slow.example.test", 80, type=socket.SOCK_STREAM))


if __name__ == "__main__":
    main()
