"""requests.get over https to a TLS 1.3 server with a self-signed certificate.

Same verdict as the TLS 1.2 case, but in TLS 1.3 everything the server sends after its ServerHello is encrypted:
its certificate is invisible on the wire. The client's alert (unknown_ca) is not: the client has not switched
its own writing to the handshake keys yet (it would for its second flight), so the alert leaves in clear.
requests raises SSLError (CERTIFICATE_VERIFY_FAILED).

Wire: ClientHello; ServerHello + ChangeCipherSpec + encrypted records (the certificate among them); the
client's Alert (fatal, unknown_ca) in clear; the close.
"""

import sys

import requests

PEER = "tls"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "requests.exceptions.SSLError"
LIBRARY = "requests"
CLASSES = ("tls", "cert-verify")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    response = requests.get(f"https://127.0.0.1:{port}/account", timeout=5)
    print(response.status_code)


if __name__ == "__main__":
    main(int(sys.argv[1]))
