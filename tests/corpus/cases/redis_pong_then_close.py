"""redis-py: the server answers PING with +PONG and then closes the connection; a second PING.

The first PING succeeds. For the second, redis-py finds the connection closed and quietly makes a new one:
either it sees the FIN before sending (it checks a pooled connection for pending data), or the PING goes into
the closed connection, the read finds EOF and its default retry reconnects and sends it again. Which one
depends on whether the server's FIN beat the second PING (a race of microseconds). The fresh connection
answers +PONG and is closed again. The program exits 0: the failure is only on the wire.

Wire: two connections; on each, the RESP3 handshake (HELLO 3, CLIENT SETINFO), PING, +PONG, the server's FIN
(on the second one the program's exit may close first); one or two PINGs on the first connection.
"""

import sys

import redis

PEER = "resp"
PEER_OPTS: dict[str, object] = {"mode": "pong_close"}
WHERE = "external"
EXPECT_EXIT = 0
EXCEPTION = None
LIBRARY = "redis"
CLASSES = ("close", "retries", "caught")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    cache = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    print("first ping:", cache.ping())
    print("second ping:", cache.ping())


if __name__ == "__main__":
    main(int(sys.argv[1]))
