"""requests.get("https://...") to a plain-text HTTP server.

The ClientHello arrives at a server that speaks plain HTTP; like nginx it answers "HTTP/1.1 400 Bad Request" in
clear text. The client's TLS layer reads "HTTP/1.1 ..." as a record header whose version bytes are nonsense:
SSLError WRONG_VERSION_NUMBER. No TLS alert from the server (it does not speak TLS).

Wire: ClientHello; plain-text "HTTP/1.1 400" from the server; the client's RST (it closes with most of the 400
unread), usually before the server's FIN can leave.
"""

import sys

import requests

PEER = "http"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "requests.exceptions.SSLError"
LIBRARY = "requests"
CLASSES = ("tls", "wrong-version")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    response = requests.get(f"https://127.0.0.1:{port}/", timeout=5)
    print(response.status_code)


if __name__ == "__main__":
    main(int(sys.argv[1]))
