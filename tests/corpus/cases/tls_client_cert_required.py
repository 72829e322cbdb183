"""http.client.HTTPSConnection to a TLS 1.2 server that requires a client certificate; the client has none.

The client turned verification off (a common shortcut), so it accepts the server's certificate; the server asks
for one back (CertificateRequest), the client sends an empty Certificate, and the server ends the handshake with
a fatal handshake_failure alert. ssl.SSLError (SSLV3_ALERT_HANDSHAKE_FAILURE): the verdict is the server's.

Wire: ClientHello; ServerHello ... CertificateRequest, ServerHelloDone; the client's empty Certificate,
ClientKeyExchange ...; the server's Alert (fatal, handshake_failure).
"""

import http.client
import ssl
import sys

PEER = "tls"
PEER_OPTS: dict[str, object] = {"max_version": "TLSv1_2", "client_cert": "required"}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "ssl.SSLError"
LIBRARY = "http.client"
CLASSES = ("tls", "server-alert")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    conn.request("GET", "/internal/config")
    print(conn.getresponse().status)


if __name__ == "__main__":
    main(int(sys.argv[1]))
