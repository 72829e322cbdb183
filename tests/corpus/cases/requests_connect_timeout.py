"""requests.get with timeout=(1.5, 5) to a listener that drops SYNs (full accept queue).

Wire: two SYNs (the first, and its retransmission after 1 s); at 1.5 s urllib3's connect times out and
requests raises ConnectTimeout.
"""

import sys

import requests

PEER = "backlog"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "requests.exceptions.ConnectTimeout"
LIBRARY = "requests"
CLASSES = ("timeout", "connect-timeout")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    response = requests.get(f"http://127.0.0.1:{port}/report", timeout=(1.5, 5))
    print(response.status_code)


if __name__ == "__main__":
    main(int(sys.argv[1]))
