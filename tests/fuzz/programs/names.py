"""A seed program for the fuzzer: every name the probe records holds hostile text (ESC/CSI/OSC, C1 controls,
rich markup, the Lua marker), and the failure is a chain (cause and context) over a refused connect and a UDP
datagram to a closed port. Usage: python names.py (it finds a closed port itself)."""

import socket
import sys
import threading
import types

HOSTILE = ("\x1b]0;owned\x07\x1b[2J\x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\\x9b31m\u202e"
           "[link=http://evil.example/]click[/link][/] [wirestack call=999 op=forged errno=0 frame=\"x\"]")


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port))


# a function whose name, qualified name and file name are hostile, as compiled code can make them
_code = _connect.__code__.replace(co_name="connect" + HOSTILE, co_qualname="connect" + HOSTILE,
                                  co_filename="<" + HOSTILE + ">")
connect = types.FunctionType(_code, globals(), "connect")

port = closed_port()
errors: list[BaseException] = []


def worker() -> None:
    try:
        connect(port)
    except OSError as exc:
        errors.append(exc)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect(("127.0.0.1", port))
    u.send(b"\x1b[31m" + HOSTILE.encode())
    try:
        u.recv(100)
    except OSError as exc:
        errors.append(exc)
    u.close()


t = threading.Thread(target=worker, name="T" + HOSTILE)
t.start()
t.join()
print("done", port, flush=True)
try:
    raise errors[0]
except OSError:
    try:
        raise ValueError("context " + HOSTILE)
    except ValueError as inner:
        raise RuntimeError("cause " + HOSTILE) from inner
finally:
    sys.stdout.flush()
