"""uvloop: libuv makes the sockets (no socket.socket call to wrap); a refused connect escapes."""
import asyncio
import sys

import uvloop


async def main(port: int) -> None:
    await asyncio.open_connection("127.0.0.1", port)


uvloop.run(main(int(sys.argv[1])))
