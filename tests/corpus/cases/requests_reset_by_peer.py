"""requests.post to a server that reads the request and then aborts the connection (SO_LINGER 0: RST).

The request is delivered and read; the answer is an RST. The client's recv() fails with ECONNRESET and requests
raises ConnectionError(('Connection aborted.', ConnectionResetError(104, ...))).

Wire: handshake; the POST (headers and body); the server's RST; nothing else from the server.
"""

import sys

import requests

PEER = "reset"
PEER_OPTS: dict[str, object] = {"after": "request"}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "requests.exceptions.ConnectionError"
LIBRARY = "requests"
CLASSES = ("reset", "peer-resets")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    event = {"type": "deploy", "service": "billing", "version": "2.4.1"}
    response = requests.post(f"http://127.0.0.1:{port}/events", json=event, timeout=5)
    print(response.status_code)


if __name__ == "__main__":
    main(int(sys.argv[1]))
