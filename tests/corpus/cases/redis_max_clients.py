"""redis-py against a server that answers every command with "-ERR max number of clients reached".

redis-py maps that error reply to ConnectionError, which its retry policy retries: each attempt is a new
connection that gets the same -ERR, so four connections, each closed by the client after the error. Then
redis.exceptions.ConnectionError.

Wire: four connections; on each the handshake, PING, "-ERR max number of clients reached", the client's FIN.
"""

import sys

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

PEER = "resp"
PEER_OPTS: dict[str, object] = {"mode": "error", "error": "ERR max number of clients reached"}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "redis.exceptions.ConnectionError"
LIBRARY = "redis"
CLASSES = ("error-reply", "retries")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    cache = redis.Redis(host="127.0.0.1", port=port, retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 3))
    print(cache.ping())


if __name__ == "__main__":
    main(int(sys.argv[1]))
