"""Data calls of every kind the probe's short path takes, succeeding and failing, for tests/test_fastpath.py.
Prints one JSON line: the probe's items (ids, times, frame instances and addresses normalised), whether the C
short path was in place, and what a failing call's exception looked like."""

import json
import socket
import sys
import threading

from wirestack.record.probe import EXC_ATTR, Probe

items: list = []
probe = Probe(items.extend)
probe.hide_frames(sys._getframe())
probe.install()


def exchange() -> dict:
    out: dict = {}
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(3):  # the first call from a place walks the stack; the others find it kept
        udp.sendto(b"abc", sink.getsockname())
        sink.recvfrom(100)
    udp.sendto(b"flags", 0, sink.getsockname())  # (data, flags, address): the address is the last argument
    sink.recvfrom(100, 0)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    for n in (1, 2):
        cli.send(b"x" * n)
        cli.sendall(b"y" * n)
        conn.recv(1)
        conn.recv(10, 0)
    t = threading.Thread(target=lambda: [cli.send(b"z") for _ in range(2)], name="sender")
    t.start()
    t.join()
    gone = socket.socket()
    gone.bind(("127.0.0.1", 0))
    closed = gone.getsockname()
    gone.close()
    refused = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    refused.connect(closed)
    refused.send(b"?")
    try:
        refused.recv(10)
    except ConnectionRefusedError as exc:
        tb, names = exc.__traceback__, []
        while tb is not None:  # the Python wrapper's own frame is the probe's (reports leave it out)
            if not tb.tb_frame.f_code.co_filename.endswith("probe.py"):
                names.append(tb.tb_frame.f_code.co_name)
            tb = tb.tb_next
        out["exception"] = {"type": type(exc).__name__, "errno": exc.errno, "marked": hasattr(exc, EXC_ATTR),
                            "traceback": names}
    for s in (udp, sink, cli, conn, srv, refused):
        s.close()
    return out


result = exchange()
result["fast"] = type(socket.socket.sendto).__name__ == "Hot"  # the C short path is in place
probe.flush()
probe.uninstall()
numbers: dict = {}  # socket serials, code ids and ports, numbered in order of appearance


def number(kind: str, value: int) -> int:
    return numbers.setdefault((kind, value), len(numbers) + 1)


def address(value: object) -> object:
    if isinstance(value, (list, tuple)) and len(value) >= 2 and isinstance(value[1], int):
        return [value[0], number("port", value[1])]
    return value


from wirestack.record import items as layout  # noqa: E402

norm = []
for item in items:
    if isinstance(item, dict):
        continue
    item = list(item)
    kind = item[0]
    names = layout.LAYOUTS[kind]
    at = {n: i for i, n in enumerate(names)}
    if kind in ("call", "data"):
        for field in ("id", "start", "end", "pid"):
            item[at[field]] = 0
        item[at["tid"]] = number("tid", item[at["tid"]])
        item[at["stack"]] = [[number("code", code), line] for _, code, line in item[at["stack"]]]
        item[at["socket"]] = number("socket", item[at["socket"]])
        item[at["remote"]] = address(item[at["remote"]])
        if kind == "call":
            item[at["local"]] = address(item[at["local"]])
            item[at["args"]] = {k: number("port", v) if k == "port" else address(v) for k, v in item[at["args"]].items()
                                if k != "timeout"}
            if item[at["op"]] in ("socket", "getaddrinfo"):
                item[at["result"]] = None  # a file descriptor, resolved addresses
    elif kind == "socket":
        item[1] = number("socket", item[1])
    elif kind == "local":
        item[1], item[2] = number("socket", item[1]), address(item[2])
    elif kind in ("code", "line"):
        item[1] = number("code", item[1])
    norm.append(item)
result["items"] = json.loads(json.dumps(norm, default=str))
print(json.dumps(result))
