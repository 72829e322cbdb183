"""ssl.create_default_context().wrap_socket against a TLS 1.2 server with a self-signed certificate.

The server does nothing wrong: it sends its certificate. The client's verification fails (self-signed, not in
the trust store), and it is the client that tells the server so: a fatal alert, unknown_ca, in clear (TLS 1.2
handshake alerts are not encrypted). Then ssl.SSLCertVerificationError.

Wire: ClientHello; ServerHello, Certificate, ServerKeyExchange, ServerHelloDone; the client's Alert (fatal,
unknown_ca); FIN/RST.
"""

import socket
import ssl
import sys

PEER = "tls"
PEER_OPTS: dict[str, object] = {"max_version": "TLSv1_2"}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "ssl.SSLCertVerificationError"
LIBRARY = "ssl"
CLASSES = ("tls", "cert-verify")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    context = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            print(tls.recv(4096).decode(errors="replace"))


if __name__ == "__main__":
    main(int(sys.argv[1]))
