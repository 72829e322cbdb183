"""The traced program's side: install the probe, send its records, and stay out of the program's way.

wirestack never runs the program itself. For `wirestack run`, Python does, exactly as `python` would
(`python SCRIPT`, `-m MODULE`, `-c CODE`): a start-up hook (a `sitecustomize` module in a folder of wirestack's
put first on PYTHONPATH, the way coverage.py measures subprocesses) calls `startup()` before the program's first
line. So `__main__`, `__file__`, `__loader__`, `sys.argv`, `sys.path`, `linecache`, the stack the program sees
and its exit status are Python's own. Python children of the program (subprocess running a Python,
multiprocessing's spawn and forkserver) inherit the variables and are traced the same way, under their own pid;
forked children inherit the probe itself.

The scenarios' clients are code, not files: they run as `python -I -S -c BOOT HOOKDIR` (`runner.BOOT`), which
calls `scenario()`; their tracebacks are printed by wirestack's report.

Records go to the records socket wirestack created (`WIRESTACK_RECORDS`, a SOCK_SEQPACKET socket: each batch one
message, whole, whatever processes share it). An exception that escapes is recorded at exit from
`sys.last_value`, which Python sets before it prints the traceback; the probe flushes last, after the program's
own atexit handlers. This module imports nothing heavy: it sets the pace of every run.
"""

from __future__ import annotations

import atexit
import linecache
import os
import signal
import socket
import struct
import sys
from typing import Any

from .probe import Probe, exception_dict, socket_sink

ENV = "WIRESTACK_RECORDS"


def _connect(path: str) -> int | None:
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.connect(path)
    except OSError:
        return None
    _die_with(sock)
    fd = sock.detach()
    os.set_inheritable(fd, False)  # an exec'd child connects for itself
    return fd


def _die_with(sock: socket.socket) -> None:
    """The process wirestack started itself (its parent is the one listening on the records socket) is killed if
    wirestack dies (`PR_SET_PDEATHSIG`), so that a SIGKILL of wirestack does not leave the program running. Only
    that process: its own children outlive it as under python. ctypes is imported for the call and forgotten."""
    try:
        pid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[0]
        if pid != os.getppid():
            return
        before = set(sys.modules)
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
        del ctypes
        for name in set(sys.modules) - before:
            del sys.modules[name]
        if os.getppid() != pid:  # wirestack died before the call: as it would have been told
            os.kill(os.getpid(), signal.SIGKILL)
    except Exception:
        pass


def startup() -> None:
    """Called by the start-up hook in every Python process of the traced program (main or child)."""
    path = os.environ.get(ENV)
    if not path or getattr(sys, "_wirestack_probe", None) is not None:
        return
    fd = _connect(path)
    if fd is None:
        return  # wirestack is gone (or this is not its run): the program runs untraced
    sink = socket_sink(fd)
    probe = Probe(sink)
    sys._wirestack_probe = probe  # type: ignore[attr-defined]  # one probe per process, even if imported twice
    parent = os.getppid()
    sink([{"kind": "process", "pid": os.getpid(), "parent": parent, "how": "start",
           "argv": [str(a)[:500] for a in sys.orig_argv[:64]] if hasattr(sys, "orig_argv") else []}])
    probe.install()

    def at_exit() -> None:
        exc = getattr(sys, "last_value", None)
        if isinstance(exc, BaseException) and not isinstance(exc, SystemExit):
            try:
                record = exception_dict(exc, probe, probe.is_hidden)
                sink([{"kind": "exception", **record}])
            except Exception:
                pass
        probe.flush()

    atexit.register(at_exit)  # registered first, so it runs last: after the program's own atexit handlers


def scenario(spec: dict[str, Any]) -> None:
    """A scenario's client: `spec` holds its source, the name it is shown under, and the records socket."""
    fd = _connect(spec["records"])
    if fd is None:
        sys.exit(111)
    sink = socket_sink(fd)
    probe = Probe(sink)
    probe.hide_frames(sys._getframe())
    probe.hide_files(__file__)
    sink([{"kind": "process", "pid": os.getpid(), "parent": os.getppid(), "how": "start", "argv": []}])
    probe.install()
    atexit.register(probe.flush)
    source, filename = spec["source"], spec["filename"]
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    sys.argv = [filename]
    try:
        exec(compile(source, filename, "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit:
        raise
    except BaseException as exc:
        exc.__traceback__ = _trim(exc.__traceback__, probe)
        sink([{"kind": "exception", **exception_dict(exc, probe, probe.is_hidden)}])
        probe.flush()
        if isinstance(exc, KeyboardInterrupt):  # die of SIGINT, as python does
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        sys.exit(1)


def _trim(tb: Any, probe: Probe) -> Any:
    """Drop the leading traceback entries that are wirestack's runner, as Python would show."""
    while tb is not None and probe.is_hidden(tb.tb_frame):
        tb = tb.tb_next
    return tb


SITECUSTOMIZE = '''\
"""wirestack's start-up hook: the probe for this process, then the sitecustomize that was there before."""
import os as _os
import sys as _sys


def _wirestack_start():
    here = _os.path.dirname(_os.path.abspath(__file__))
    try:
        from _wirestack_probe import bootstrap
        bootstrap.startup()
    except ImportError:
        pass  # a process started as the run ends, while its hook is removed: it runs untraced, and silently
    finally:
        while here in _sys.path:  # the program's sys.path is its own again
            _sys.path.remove(here)
    ours = _sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # noqa: F401  (the interpreter's or the user's own, if any)
    except ImportError as exc:
        if ours is not None:
            _sys.modules["sitecustomize"] = ours  # none of its own: the import machinery expects this one back
        if exc.name != "sitecustomize":
            raise


_wirestack_start()
del _wirestack_start, _os, _sys
'''
