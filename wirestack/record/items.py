"""The probe's items: the layout of what a traced process sends to wirestack, named once.

The probe (and its C twin, `_fastpath.c`) builds plain tuples in these layouts, `marshal`s them in batches and
sends each batch as one message; `loader.Loader` reads them back by these names. A test checks the C twin
against `DATA`. This module is shipped as source into the traced program with the probe: it imports nothing.

Descriptions come once, before the first item that names them:

    CODE    a code object: its file and function
    LINE    one source line of a code object, read by the traced process itself (root never opens its files)
    SOCKET  a socket object (the probe's serial for it): its family and type
    LOCAL   a datagram socket's local address, once it is bound

Calls:

    CALL    any recorded call; `fault` is a FAULT tuple or None
    DATA    a data call that succeeded (send, sendall, sendto, recv, recvfrom, ...): the short form of CALL

Stacks are tuples of (frame instance, code id, line), outermost first. Everything else is a dict with a "kind":
{"kind": "exception", ...}, {"kind": "note", "text"}, {"kind": "error", "text"} (the program could not start),
{"kind": "process", "pid", "parent", "how", "argv"}. A note whose text starts with UNSEEN_PREFIX names calls the
probe cannot see (a runtime whose sockets live in C, such as uvloop's libuv); it has a "runtime" too.
"""

CODE = ("kind", "code", "file", "function")
LINE = ("kind", "code", "line", "text")
SOCKET = ("kind", "serial", "family", "type")
LOCAL = ("kind", "serial", "address")
CALL = ("kind", "id", "op", "thread", "tid", "start", "end", "stack", "socket", "fault", "local", "remote", "args",
        "result", "pid")
DATA = ("kind", "id", "op", "thread", "tid", "start", "end", "stack", "socket", "size", "result", "remote", "pid")
FAULT = ("namespace", "type", "message", "code", "name", "library", "reason", "detail")

LAYOUTS = {"code": CODE, "line": LINE, "socket": SOCKET, "local": LOCAL, "call": CALL, "data": DATA}
DESCRIPTIONS = ("code", "line", "socket", "local")  # item kinds that describe, for every later item

MAX_MESSAGE = 1 << 16  # bytes in one message of marshalled items (a batch is split to fit)
UNSEEN_PREFIX = "not seen by the probe: "  # a note naming calls the probe cannot record (see above)
