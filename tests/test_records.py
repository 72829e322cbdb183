"""The loader of the probe's items (pure): what a "data" item leaves out comes back from the descriptions."""

from __future__ import annotations

from wirestack.model import Frame
from wirestack.record.loader import Loader


def test_data_items_get_their_socket_and_local_address_from_the_descriptions() -> None:
    loader = Loader()
    # a forked child's batch may name a socket its parent described in another batch: descriptions count for
    # every later batch, and within a batch they are read before the calls
    loader.feed([("data", 11, "recv", "worker", 5, 6, ((1, 100, 4),), 8, 4096, 12, None, 42),
                 ("code", 100, "client.py", "main"), ("socket", 8, "AF_INET6", "SOCK_STREAM")])
    loader.feed([("socket", 7, "AF_INET", "SOCK_DGRAM"), ("local", 7, ("0.0.0.0", 4000)),
                 ("data", 10, "sendto", "MainThread", 1, 2, ((1, 100, 3),), 7, 32, 32, ("127.0.0.1", 9), 42)])
    recv, sendto = loader.calls
    assert sendto == {"kind": "call", "id": 10, "op": "sendto", "thread": "MainThread", "start_ns": 1, "end_ns": 2,
                      "frames": [Frame("client.py", 3, "main", "", 1)], "socket": 7, "family": "AF_INET",
                      "type": "SOCK_DGRAM", "errno": None, "error": "", "local": ("0.0.0.0", 4000),
                      "remote": ("127.0.0.1", 9), "args": {"bytes": 32, "address": ("127.0.0.1", 9)}, "result": 32,
                      "pid": 42}
    assert (recv["family"], recv["type"], recv["local"], recv["remote"]) == ("AF_INET6", "SOCK_STREAM", None, None)
    assert (recv["args"], recv["result"], recv["thread"]) == ({"bufsize": 4096}, 12, "worker")
    assert recv["frames"][0].function == "main"
