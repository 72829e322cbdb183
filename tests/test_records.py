"""The loader of the probe's items (pure): what a "data" item leaves out comes back from the descriptions, and
items that do not fit their layout are counted and left out, never a crash."""

from __future__ import annotations

from wirestack.model import Fault, Frame
from wirestack.record.loader import Loader, exception_from


def test_data_items_get_their_socket_and_local_address_from_the_descriptions() -> None:
    loader = Loader()
    # a forked child's batch may name a socket its parent described in another batch: descriptions count for
    # every later batch, and within a batch they are read before the calls
    loader.feed([("data", 11, "recv", "worker", 77, 5, 6, ((1, 100, 4),), 8, 4096, 12, None, 42),
                 ("code", 100, "client.py", "main"), ("line", 100, 3, "    sock.sendto(b'x', addr)  "),
                 ("socket", 8, "AF_INET6", "SOCK_STREAM")])
    loader.feed([("socket", 7, "AF_INET", "SOCK_DGRAM"), ("local", 7, ("0.0.0.0", 4000)),
                 ("data", 10, "sendto", "MainThread", 42, 1, 2, ((1, 100, 3),), 7, 32, 32, ("127.0.0.1", 9), 42)])
    calls, new_id = loader.calls()
    sendto, recv = calls
    assert new_id == {10: 1, 11: 2}
    assert (sendto.op, sendto.thread, sendto.tid, sendto.socket, sendto.family, sendto.kind) == (
        "sendto", "MainThread", 42, 1, "AF_INET", "SOCK_DGRAM")
    assert sendto.frames == (Frame("client.py", 3, "main", "sock.sendto(b'x', addr)", 1),)
    assert (sendto.local, sendto.remote, sendto.args, sendto.result, sendto.fault) == (
        ("0.0.0.0", 4000), ("127.0.0.1", 9), {"bytes": 32, "address": ["127.0.0.1", 9]}, 32, None)
    assert (recv.family, recv.kind, recv.local, recv.remote, recv.tid) == ("AF_INET6", "SOCK_STREAM", None, None, 77)
    assert (recv.args, recv.result, recv.thread) == ({"bufsize": 4096}, 12, "worker")


def test_faults_keep_their_namespace() -> None:
    loader = Loader()
    fault = ("eai", "socket.gaierror", "[Errno -2] Name or service not known", -2, "EAI_NONAME", "", "", "")
    loader.feed([("call", 1, "getaddrinfo", "MainThread", 1, 10, 20, (), 0, fault, None, None,
                  {"host": "x.invalid", "port": 80}, None, 1)])
    (c,), _ = loader.calls()
    assert c.fault == Fault("eai", "socket.gaierror", "[Errno -2] Name or service not known", -2, "EAI_NONAME")
    assert c.errno is None and c.failed  # not a kernel errno


def test_hostile_items_are_counted_and_left_out() -> None:
    loader = Loader()
    loader.feed([
        ("call", 1, "connect", "t", 1, 10, 5, (), 0, None, None, None, {}, None, 1),  # ends before it starts
        ("call", 2, "forged-op", "t", 1, 10, 20, (), 0, None, None, None, {}, None, 1),  # no such operation
        ("data", 3, "recv", "t", 1, 10, 20, "not a stack", 0, 1, 1, None, 1),
        ("code", "x", "f", "g"), ("socket",), 42, "text", {"kind": "nonsense"},
        ("call", 4, "connect", "t", 1, 10, 20, (), 0, ("errno", "OSError", "m", "111", "", "", "", ""), None, None,
         {}, None, 1),  # a code that is no int
        ("call", 5, "close", "t", 1, 30, 40, (), 0, None, None, None, {}, None, 1),
    ])
    calls, _ = loader.calls()
    assert [c.op for c in calls] == ["close"] and loader.bad == 9
    assert exception_from({"type": "X", "frames": [{"file": "a", "line": 1, "function": "f"}], "group": [],
                           "fault": None}).type == "X"


def test_a_call_recorded_twice_is_one_call() -> None:
    """The probe records a call once more when a signal's exception cut its callback short (probe._again,
    _fastpath.c): if the first record had been made after all, the twin (same process, thread, op, socket and
    times) is dropped, and its probe id maps to the one call, as an exception naming either does."""
    loader = Loader()
    fault = ("eai", "socket.gaierror", "[Errno -3] Temporary failure", -3, "EAI_AGAIN", "", "", "")
    item = ("getaddrinfo", "MainThread", 7, 10, 20, (), 0, fault, None, None, {"host": "h", "port": 80}, None, 1)
    loader.feed([("call", 1, *item), ("call", 2, *item),
                 ("call", 3, "getaddrinfo", "MainThread", 7, 10, 21, (), 0, None, None, None, {}, None, 1)])
    calls, new_id = loader.calls()
    assert [(c.id, c.end_ns) for c in calls] == [(1, 20), (2, 21)]  # a different end: another call
    assert new_id == {1: 1, 2: 1, 3: 2}
