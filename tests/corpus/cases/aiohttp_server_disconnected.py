"""aiohttp GET to a server that accepts and closes before answering.

aiohttp retries an idempotent request once when the server disconnected before answering, on a new connection;
that one is closed the same way, and aiohttp raises ServerDisconnectedError.

Wire: two connections; on each the server's FIN, the GET, no response.
"""

import asyncio
import sys

import aiohttp

PEER = "eof"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "aiohttp.client_exceptions.ServerDisconnectedError"
LIBRARY = "aiohttp"
CLASSES = ("close", "peer-closes-first")
MIN_PYTHON = (3, 10)


async def main(port: int) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/feed.json") as response:
            print(response.status, await response.json())


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
