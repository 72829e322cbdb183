"""http.client GET to a server that accepts and closes at once, before answering.

The server's FIN arrives before (or just after) the request; its kernel still takes the request (the server
drains it, so its close is a FIN, not an RST). The client's read of the status line gets EOF:
http.client.RemoteDisconnected("Remote end closed connection without response"). The server closed first.

Wire: handshake; the server's FIN; the GET (ACKed); no response; the client's FIN.
"""

import http.client
import sys

PEER = "eof"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "http.client.RemoteDisconnected"
LIBRARY = "http.client"
CLASSES = ("close", "peer-closes-first")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/v2/inventory", headers={"Accept": "application/json"})
    response = conn.getresponse()
    print(response.status, response.read())


if __name__ == "__main__":
    main(int(sys.argv[1]))
