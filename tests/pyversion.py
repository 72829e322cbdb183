"""What the running interpreter's own library looks like, for tests that name a line of it (nox runs the suite on
3.10 to 3.13, whose socket.py differ): the line numbers come from this interpreter's files, not from 3.11's."""

from __future__ import annotations

import inspect
import smtplib
import socket
from typing import Any


def line_of(function: Any, code: str) -> int:
    """The line of `function`'s file whose stripped text starts with `code`, inside `function` (the first one)."""
    lines, start = inspect.getsourcelines(function)
    return next(start + i for i, line in enumerate(lines) if line.strip().startswith(code))


CONNECT = line_of(socket.create_connection, "sock.connect(sa)")  # 833 on 3.10, 836 on 3.11, 837 on 3.12, 849 on 3.13
# create_connection's re-raise when every address failed: "raise err" on 3.10, "raise exceptions[0]" from 3.11
RAISE_CODE = next(c for c in ("raise exceptions[0]", "raise err") if c in inspect.getsource(socket.create_connection))
RAISE = line_of(socket.create_connection, RAISE_CODE)
GET_SOCKET = line_of(smtplib.SMTP._get_socket, "return socket.create_connection(")  # smtplib.py:312 on 3.11
