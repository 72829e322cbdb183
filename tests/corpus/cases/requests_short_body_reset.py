"""requests.get: Content-Length: 1000, 100 bytes of body, then the server resets the connection.

The client still reads the 100 queued bytes, then recv() fails with ECONNRESET in the middle of the body;
urllib3 raises ProtocolError and requests turns it into ChunkedEncodingError ("Connection broken").

Wire: handshake; GET; the 200 with Content-Length 1000 and 100 body bytes; the server's RST.
"""

import sys

import requests

PEER = "http_short"
PEER_OPTS: dict[str, object] = {"length": 1000, "sent": 100, "end": "rst"}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "requests.exceptions.ChunkedEncodingError"
LIBRARY = "requests"
CLASSES = ("reset", "content-length")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    response = requests.get(f"http://127.0.0.1:{port}/export.csv", timeout=5)
    print(response.status_code, len(response.content))


if __name__ == "__main__":
    main(int(sys.argv[1]))
