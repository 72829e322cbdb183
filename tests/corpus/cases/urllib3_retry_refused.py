"""urllib3.PoolManager with Retry(3, backoff_factor=0.1) against a refusing port.

urllib3 retries the connect error three times (four attempts), sleeping backoff_factor * 2**(n-1) between
consecutive errors after the first: 0, 0.2, 0.4 s. Then MaxRetryError, whose reason is the last
NewConnectionError.

Wire: four SYN → RST/ACK pairs, the gaps growing.
"""

import sys

import urllib3
from urllib3.util.retry import Retry

PEER = "closed"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "urllib3.exceptions.MaxRetryError"
LIBRARY = "urllib3"
CLASSES = ("refusal", "retries")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    http = urllib3.PoolManager(retries=Retry(3, backoff_factor=0.1), timeout=5.0)
    response = http.request("GET", f"http://127.0.0.1:{port}/orders?since=yesterday")
    print(response.status, response.data[:80])


if __name__ == "__main__":
    main(int(sys.argv[1]))
