"""trio: a nursery with two trio.open_tcp_stream calls that are both refused.

Each open_tcp_stream fails with OSError("all attempts to connect to ... failed"); the nursery (strict exception
groups, trio's default) raises ExceptionGroup("Exceptions from Trio nursery", [OSError, OSError]).

Wire: two SYNs (127.0.0.1:PORT and 127.0.0.2:PORT), each answered by RST/ACK.
"""

import sys

import trio

PEER = "closed"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "ExceptionGroup"
EXCEPTION_ON = {(3, 10): "exceptiongroup.ExceptionGroup"}  # 3.10 has none built in: trio raises the backport's
LIBRARY = "trio"
CLASSES = ("exception-group", "refusal")
MIN_PYTHON = (3, 10)


async def check(host: str, port: int) -> None:
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(b"PING\r\n")
        print(await stream.receive_some(100))


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(check, "127.0.0.1", port)
        nursery.start_soon(check, "127.0.0.2", port)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
