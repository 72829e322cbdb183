"""asyncio.TaskGroup (3.11+) with two connections that are both refused, and one that would have worked.

Nothing listens on 127.0.0.1:PORT (bound, not listening) nor on 127.0.0.2:PORT. Both tasks fail with
ConnectionRefusedError; the group cancels the third and raises ExceptionGroup("unhandled errors in a
TaskGroup", [ConnectionRefusedError, ConnectionRefusedError]).

Wire: two SYNs (to 127.0.0.1 and 127.0.0.2), each answered by RST/ACK.
"""

import asyncio
import sys

PEER = "closed"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "ExceptionGroup"
LIBRARY = "asyncio"
CLASSES = ("exception-group", "refusal")
MIN_PYTHON = (3, 11)


async def ping(host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"PING\r\n")
    line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return line


async def main(port: int) -> None:
    async with asyncio.TaskGroup() as group:
        primary = group.create_task(ping("127.0.0.1", port))
        replica = group.create_task(ping("127.0.0.2", port))
        group.create_task(asyncio.sleep(5))  # the report timer: cancelled by the group
    print(primary.result(), replica.result())


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
