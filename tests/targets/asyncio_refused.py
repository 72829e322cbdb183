import asyncio
import sys


async def main() -> None:
    await asyncio.open_connection("127.0.0.1", int(sys.argv[1]))


asyncio.run(main())
