"""gevent: requests monkey-patched onto greenlets, three fetches at once, all refused.

joinall(raise_error=True) re-raises the first greenlet's error (gevent also prints each greenlet's failure on
stderr as it happens). The sockets are gevent's cooperative ones: non-blocking connect, then the hub waits.

Wire: three SYN → RST/ACK pairs from three source ports, nearly at once.
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

import gevent  # noqa: E402
import requests  # noqa: E402

PEER = "closed"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "requests.exceptions.ConnectionError"
LIBRARY = "gevent"
CLASSES = ("refusal",)
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    urls = [f"http://127.0.0.1:{port}/page/{n}" for n in range(3)]
    jobs = [gevent.spawn(requests.get, url, timeout=5) for url in urls]
    gevent.joinall(jobs, timeout=10, raise_error=True)
    print([job.value.status_code for job in jobs])


if __name__ == "__main__":
    main(int(sys.argv[1]))
