"""http.client: the response promises Content-Length: 1000, delivers 100 bytes, then the server closes (FIN).

resp.read() wants 1000 bytes, gets 100 and then EOF: http.client.IncompleteRead(100 bytes read, 900 more
expected). The server closed first, after the partial body.

Wire: handshake; GET; the 200 with Content-Length 1000 and 100 body bytes; the server's FIN; the client's FIN.
"""

import http.client
import sys

PEER = "http_short"
PEER_OPTS: dict[str, object] = {"length": 1000, "sent": 100, "end": "fin"}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "http.client.IncompleteRead"
LIBRARY = "http.client"
CLASSES = ("close", "content-length")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/download/report.pdf")
    response = conn.getresponse()
    body = response.read()
    print(response.status, len(body))


if __name__ == "__main__":
    main(int(sys.argv[1]))
