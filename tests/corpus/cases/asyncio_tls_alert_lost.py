"""asyncio.open_connection(ssl=...) to a server that answers with a TLS 1.0 ServerHello.

The same refusal as tls_client_refuses_version (ssl.SSLError UNSUPPORTED_PROTOCOL), but through asyncio's SSL
protocol, which runs OpenSSL over memory buffers: on the handshake error it closes the transport without
flushing the alert OpenSSL wrote. The server is never told why; it only sees the FIN.

Wire: ClientHello; a TLS 1.0 ServerHello; no alert at all; the client's FIN first.
"""

import asyncio
import ssl
import sys

PEER = "tls_old"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "ssl.SSLError"
LIBRARY = "asyncio"
CLASSES = ("tls", "protocol-version", "alert-lost")
MIN_PYTHON = (3, 10)


async def main(port: int) -> None:
    context = ssl.create_default_context()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    writer.write(b"HELLO\r\n")
    print(await reader.readline())
    writer.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
