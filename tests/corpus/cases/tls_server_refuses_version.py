"""urllib.request.urlopen over https to a server that only speaks TLS 1.0 and 1.1.

The client (Python's default context: TLS 1.2 at least) offers 1.2 and 1.3; the server has nothing in common
with that and refuses: a fatal protocol_version alert from the server, in clear, answering the ClientHello.
urllib wraps the ssl.SSLError (TLSV1_ALERT_PROTOCOL_VERSION) in URLError.

Wire: ClientHello; the server's Alert (fatal, protocol_version); close.
"""

import sys
import urllib.request

PEER = "tls"
PEER_OPTS: dict[str, object] = {"min_version": "TLSv1", "max_version": "TLSv1_1", "ciphers": "DEFAULT:@SECLEVEL=0"}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "urllib.error.URLError"
LIBRARY = "urllib"
CLASSES = ("tls", "protocol-version", "server-alert")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/legacy", timeout=5) as response:
        print(response.status)


if __name__ == "__main__":
    main(int(sys.argv[1]))
