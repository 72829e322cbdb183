"""asyncio.gather of three fetches; one goes to an address where nothing listens.

The peer listens on 127.0.0.1:PORT only, so 127.0.0.2:PORT (also loopback) refuses. gather() propagates the first
exception, ConnectionRefusedError, while the other two fetches still run; asyncio.run then cancels what is left.

Wire: connections to 127.0.0.1:PORT established (HTTP request and 200 on those that got that far); one SYN to
127.0.0.2:PORT answered by RST/ACK.
"""

import asyncio
import sys

PEER = "http"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "ConnectionRefusedError"
LIBRARY = "asyncio"
CLASSES = ("refusal",)
MIN_PYTHON = (3, 10)


async def fetch(host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /shard HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    body = await reader.read()
    writer.close()
    await writer.wait_closed()
    return body


async def main(port: int) -> None:
    pages = await asyncio.gather(fetch("127.0.0.1", port), fetch("127.0.0.2", port), fetch("127.0.0.1", port))
    print([len(p) for p in pages])


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
