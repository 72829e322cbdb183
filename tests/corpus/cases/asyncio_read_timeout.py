"""asyncio: open_connection, write a request, wait_for(readline(), 0.5) against a server that never answers.

wait_for cancels the read and raises TimeoutError (asyncio.TimeoutError is TimeoutError since 3.11). The
event loop's selector simply never reported the socket readable.

Wire: handshake, the request (ACKed), silence, then the client's FIN when the transport is closed at exit.
"""

import asyncio
import sys

PEER = "silent"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "TimeoutError"
EXCEPTION_ON = {(3, 10): "asyncio.exceptions.TimeoutError"}  # asyncio.TimeoutError is TimeoutError from 3.11
LIBRARY = "asyncio"
CLASSES = ("timeout", "read-timeout")
MIN_PYTHON = (3, 10)


async def main(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"STATUS\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=0.5)
        print(line.decode().strip())
    finally:
        writer.close()
        await writer.wait_closed()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
