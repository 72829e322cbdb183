"""httpx.get with a 0.7 s read timeout to a server that accepts, reads the request and never answers.

Wire: handshake, the GET (ACKed by the server's kernel), ~0.7 s of silence, the client's FIN.
"""

import sys

import httpx

PEER = "silent"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "httpx.ReadTimeout"
LIBRARY = "httpx"
CLASSES = ("timeout", "read-timeout")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    response = httpx.get(f"http://127.0.0.1:{port}/search?q=slow", timeout=httpx.Timeout(5.0, read=0.7))
    print(response.status_code)


if __name__ == "__main__":
    main(int(sys.argv[1]))
