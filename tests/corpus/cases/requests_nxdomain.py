"""requests.get("http://does-not-exist.invalid/") with a resolver that answers NXDOMAIN.

urllib3's connection fails in getaddrinfo (NameResolutionError), requests raises ConnectionError. No SYN is
ever sent.

Wire: DNS A and AAAA queries for does-not-exist.invalid and NXDOMAIN responses; no TCP.
"""

import requests

PEER = "dns"
PEER_OPTS: dict[str, object] = {"mode": "nxdomain"}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "requests.exceptions.ConnectionError"
LIBRARY = "requests"
CLASSES = ("resolver",)
MIN_PYTHON = (3, 10)
NETNS: dict[str, object] = {}


def main() -> None:
    response = requests.get("http://does-not-exist.invalid/status", timeout=5)
    print(response.status_code)


if __name__ == "__main__":
    main()
