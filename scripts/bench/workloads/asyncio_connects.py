"""Workload: N concurrent refused connects with asyncio (`asyncio.open_connection`: a non-blocking connect, the
refusal read later from SO_ERROR), at most LIMIT in flight at once.  python asyncio_connects.py N [CAP_SECONDS]"""

import asyncio
import time

from _support import LOCAL, arguments, closed_port, finish

LIMIT = 500

n, deadline = arguments()
port = closed_port()


async def one(gate: asyncio.Semaphore) -> tuple[bool, bool]:
    """(attempted, refused)"""
    async with gate:
        if time.monotonic() >= deadline:
            return False, False
        try:
            _, writer = await asyncio.open_connection(LOCAL, port)
        except ConnectionRefusedError:
            return True, True
        writer.close()
        return True, False


async def main() -> tuple[int, int]:
    gate = asyncio.Semaphore(LIMIT)
    results = await asyncio.gather(*(one(gate) for _ in range(n)))
    return sum(a for a, _ in results), sum(r for _, r in results)


start = time.perf_counter()
done, refused = asyncio.run(main())
finish("asyncio_connects", n, done, refused, time.perf_counter() - start)
