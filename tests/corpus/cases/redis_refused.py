"""redis-py PING to a port where nothing listens, with the retry policy spelled out.

redis-py retries connection errors: Retry(ExponentialBackoff(cap=0.2, base=0.05), 3) is four attempts in all,
sleeping 0.1, 0.2 and 0.2 s between them. Each attempt is a new socket, a new SYN from a new source port.

Wire: four SYN → RST/ACK pairs, spaced by the backoff; then redis.exceptions.ConnectionError.
"""

import sys

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

PEER = "closed"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "redis.exceptions.ConnectionError"
LIBRARY = "redis"
CLASSES = ("refusal", "retries")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    cache = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2,
                        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 3))
    cache.ping()
    print("cache is up")


if __name__ == "__main__":
    main(int(sys.argv[1]))
