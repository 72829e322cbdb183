"""requests.get with timeout=(2, 0.8) to a server that reads the request and never answers.

The connection is established, the request goes out and the server's kernel ACKs it; then silence. urllib3's
read waits 0.8 s in poll(), which returns 0: ReadTimeoutError, raised by requests as ReadTimeout. The client
then closes (FIN first from the client).

Wire: handshake, the GET (ACKed), ~0.8 s of nothing, the client's FIN.
"""

import sys

import requests

PEER = "silent"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "requests.exceptions.ReadTimeout"
LIBRARY = "requests"
CLASSES = ("timeout", "read-timeout")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    response = requests.get(f"http://127.0.0.1:{port}/slow-report", timeout=(2, 0.8))
    print(response.status_code)


if __name__ == "__main__":
    main(int(sys.argv[1]))
