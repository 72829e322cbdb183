"""httpx GET to a server that accepts and closes before answering.

Wire: handshake; the server's FIN; the GET; no response. httpx raises RemoteProtocolError("Server disconnected
without sending a response.").
"""

import sys

import httpx

PEER = "eof"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "httpx.RemoteProtocolError"
LIBRARY = "httpx"
CLASSES = ("close", "peer-closes-first")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    with httpx.Client(timeout=5.0) as client:
        response = client.get(f"http://127.0.0.1:{port}/api/users")
        print(response.status_code)


if __name__ == "__main__":
    main(int(sys.argv[1]))
