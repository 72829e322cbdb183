"""requests.get to a port where nothing listens.

The peer holds the port bound but never listens, so the kernel answers the SYN with RST/ACK. requests (urllib3
underneath, no retries by default) makes one connection attempt and raises ConnectionError.

Wire: one SYN, one RST/ACK from the server's kernel; no payload either way.
"""

import sys

import requests

PEER = "closed"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "requests.exceptions.ConnectionError"
LIBRARY = "requests"
CLASSES = ("refusal",)
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    response = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
    response.raise_for_status()
    print(response.json())


if __name__ == "__main__":
    main(int(sys.argv[1]))
