"""ExceptionGroups from three places, each holding two refused connects (127.0.0.1 and 127.0.0.2, port argv[2]):
argv[1] "taskgroup" (asyncio.TaskGroup, 3.11+), "all_errors" (socket.create_connection(all_errors=True), 3.11+;
localhost resolving to both addresses is not assumed: the two addresses are tried by a loop of its own), "trio"
(a nursery)."""
import asyncio
import socket
import sys

how, port = sys.argv[1], int(sys.argv[2])


async def ping(host: str) -> None:
    await asyncio.open_connection(host, port)


async def tasks() -> None:
    async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
        group.create_task(ping("127.0.0.1"))
        group.create_task(ping("127.0.0.2"))


def both() -> None:
    errors = []
    for host in ("127.0.0.1", "127.0.0.2"):
        try:
            socket.create_connection((host, port), all_errors=True)  # type: ignore[call-arg]
        except ExceptionGroup as group:  # noqa: F821  (3.11+)
            errors.extend(group.exceptions)
    raise ExceptionGroup("both addresses failed", errors)  # noqa: F821


async def nursery() -> None:
    import trio

    async def one(host: str) -> None:
        await trio.open_tcp_stream(host, port)

    async with trio.open_nursery() as n:
        n.start_soon(one, "127.0.0.1")
        n.start_soon(one, "127.0.0.2")


if how == "taskgroup":
    asyncio.run(tasks())
elif how == "all_errors":
    both()
else:
    import trio

    trio.run(nursery)
