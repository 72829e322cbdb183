"""asyncio.open_connection under uvloop, to a refusing port.

uvloop (libuv) makes the socket and calls connect() itself, not through Python's socket module; the refusal
surfaces as ConnectionRefusedError all the same.

Wire: one SYN, one RST/ACK.
"""

import asyncio
import sys

import uvloop

PEER = "closed"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "ConnectionRefusedError"
LIBRARY = "uvloop"
CLASSES = ("refusal",)
MIN_PYTHON = (3, 10)


async def main(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello\n")
    await writer.drain()
    print(await reader.readline())
    writer.close()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
