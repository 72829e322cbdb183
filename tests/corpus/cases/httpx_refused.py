"""httpx.get to a port where nothing listens.

Wire: one SYN, one RST/ACK from the server's kernel. httpx raises httpx.ConnectError (its transport does not
retry by default).
"""

import sys

import httpx

PEER = "closed"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "httpx.ConnectError"
LIBRARY = "httpx"
CLASSES = ("refusal",)
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    response = httpx.get(f"http://127.0.0.1:{port}/v1/items", timeout=5.0)
    response.raise_for_status()
    print(response.text)


if __name__ == "__main__":
    main(int(sys.argv[1]))
