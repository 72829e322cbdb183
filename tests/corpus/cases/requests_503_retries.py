"""requests Session with HTTPAdapter(max_retries=Retry(total=3, status_forcelist=[503], backoff_factor=0.1)).

The server answers 503 every time. urllib3 retries the request three times (four requests in all) on the same
keep-alive connection, sleeping 0, 0.2 and 0.4 s, then raises MaxRetryError(ResponseError("too many 503 error
responses")), which requests raises as RetryError.

Wire: one connection; four GET / 503 exchanges, the gaps growing.
"""

import sys

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

PEER = "http"
PEER_OPTS: dict[str, object] = {"status": 503, "body": "maintenance\n"}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "requests.exceptions.RetryError"
LIBRARY = "requests"
CLASSES = ("retries", "http-status")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    session = requests.Session()
    retry = Retry(total=3, status_forcelist=[503], backoff_factor=0.1, allowed_methods=["GET"])
    session.mount("http://", HTTPAdapter(max_retries=retry))
    response = session.get(f"http://127.0.0.1:{port}/quota", timeout=5)
    print(response.status_code)


if __name__ == "__main__":
    main(int(sys.argv[1]))
