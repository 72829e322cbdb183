"""http.client: read the status of a large response, then close without reading the body.

close() on a socket whose receive queue still holds data makes the client's own kernel send RST, not FIN. The
program exits 0 (it got what it wanted); on the wire the reset is the client's, and the server's sendall()
is the one that fails.

Wire: handshake; GET; the 200 and body segments; the client's RST (first and only reset, from the client).
"""

import http.client
import sys

PEER = "http_big"
PEER_OPTS: dict[str, object] = {"size": 262144}
WHERE = "external"
EXPECT_EXIT = 0
EXCEPTION = None
LIBRARY = "http.client"
CLASSES = ("reset", "own-side-resets", "caught")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/backup.tar")
    response = conn.getresponse()
    print(response.status, response.getheader("Content-Length"))
    conn.close()  # the body is never read


if __name__ == "__main__":
    main(int(sys.argv[1]))
