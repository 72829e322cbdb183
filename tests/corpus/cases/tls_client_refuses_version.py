"""ssl wrap_socket to a server that answers with a TLS 1.0 ServerHello.

The server picks a version the client never offered (TLS 1.0); the client refuses it and says so: a fatal
protocol_version alert from the client, in clear, then ssl.SSLError (UNSUPPORTED_PROTOCOL). The verdict is the
client's this time, not the server's (compare tls_server_refuses_version).

Wire: ClientHello; a TLS 1.0 ServerHello; the client's Alert (fatal, protocol_version); FINs.
"""

import socket
import ssl
import sys

PEER = "tls_old"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "ssl.SSLError"
LIBRARY = "ssl"
CLASSES = ("tls", "protocol-version", "client-alert")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    context = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(b"HELLO\r\n")
            print(tls.recv(100))


if __name__ == "__main__":
    main(int(sys.argv[1]))
