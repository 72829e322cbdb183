"""http.client reuses a keep-alive connection the server already closed.

The server closes idle keep-alive connections after 200 ms (FIN). The client waits 0.5 s between two requests
(the scenario's timing) and sends the second one into the connection whose FIN already arrived; the server's
kernel answers the data with RST. The client's read finds the FIN first: RemoteDisconnected. Unlike urllib3,
http.client does not check a pooled connection before reusing it.

Wire: handshake; GET, 200; ~200 ms later the server's FIN (the client ACKs, does not close); the second GET;
the server's RST.
"""

import http.client
import sys
import time

PEER = "http"
PEER_OPTS: dict[str, object] = {"idle_close": 0.2}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "http.client.RemoteDisconnected"
LIBRARY = "http.client"
CLASSES = ("close", "stale-keepalive")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(2):
        conn.request("GET", "/status")
        response = conn.getresponse()
        print(response.status, response.read().decode().strip())
        time.sleep(0.5)  # the poll interval: longer than the server's keep-alive idle timeout


if __name__ == "__main__":
    main(int(sys.argv[1]))
