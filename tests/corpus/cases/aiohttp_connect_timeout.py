"""aiohttp with ClientTimeout(sock_connect=1.2) to a listener that drops SYNs.

Wire: the SYN and its retransmission after 1 s; at 1.2 s aiohttp gives up (its own timer, no errno):
ConnectionTimeoutError.
"""

import asyncio
import sys

import aiohttp

PEER = "backlog"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "aiohttp.client_exceptions.ConnectionTimeoutError"
LIBRARY = "aiohttp"
CLASSES = ("timeout", "connect-timeout")
MIN_PYTHON = (3, 10)


async def main(port: int) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=1.2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(f"http://127.0.0.1:{port}/") as response:
            print(response.status)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
