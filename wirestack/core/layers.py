"""Which layer of the stack a Python frame belongs to, told from its file. Pure.

- "transport interface": the modules that talk to the kernel's sockets (socket, ssl, selectors, asyncio's
  transports);
- "application module": any other library module (the standard library's smtplib, http, urllib..., or an
  installed package);
- "program": the code being run (the scenario's client, the user's script);
- "kernel" is not a frame: it is the syscall line the report draws below the innermost frame.
"""

from __future__ import annotations

import re
from functools import lru_cache

PROGRAM, MODULE, TRANSPORT, KERNEL = "program", "application module", "transport interface", "kernel"

_TRANSPORT_FILES = {"socket.py", "ssl.py", "selectors.py"}
_TRANSPORT_ASYNCIO = {"selector_events.py", "base_events.py", "sslproto.py", "streams.py", "proactor_events.py",
                      "transports.py", "staggered.py"}
_LIBRARY = re.compile(r"/lib/python\d+\.\d+/|/(site|dist)-packages/|\\Lib\\")


def _base(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


@lru_cache(maxsize=4096)
def is_library(path: str) -> bool:
    return bool(_LIBRARY.search(path))


def is_transport(path: str) -> bool:
    if not is_library(path):
        return False
    base = _base(path)
    return base in _TRANSPORT_FILES or ("/asyncio/" in path.replace("\\", "/") and base in _TRANSPORT_ASYNCIO)


@lru_cache(maxsize=4096)
def layer_of(path: str) -> str:
    if is_transport(path):
        return TRANSPORT
    if is_library(path):
        return MODULE
    return PROGRAM
