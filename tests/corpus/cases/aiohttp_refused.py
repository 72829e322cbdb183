"""aiohttp ClientSession.get to a port where nothing listens.

The non-blocking connect() returns EINPROGRESS, the SYN leaves, the RST comes back, and the error arrives through
the event loop (getsockopt SO_ERROR). aiohttp wraps it: ClientConnectorError.

Wire: one SYN, one RST/ACK.
"""

import asyncio
import sys

import aiohttp

PEER = "closed"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "aiohttp.client_exceptions.ClientConnectorError"
LIBRARY = "aiohttp"
CLASSES = ("refusal",)
MIN_PYTHON = (3, 10)


async def main(port: int) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            print(response.status, await response.text())


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
