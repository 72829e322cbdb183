"""The traced program's entry point: install the probe, run the program as `python` would, record.

wirestack starts a separate interpreter (the capture must not share a GIL with the program) as
`python [-I -S] -c BOOT FD`, where BOOT (`runner.BOOT`) reads a JSON spec from FD: the source of this module
and of `probe.py` (so the program needs no access to wirestack's files: under sudo it runs as the invoking
user), a folder for records, and what to run:

    mode "source":  client code (a scenario), run as __main__ under the name `filename`
    mode "script":  python SCRIPT ARGS...      mode "module":  python -m MODULE ARGS...
    mode "command": python -c CODE ARGS...

Records go to FOLDER/PID.jsonl as JSON lines: {"kind": "call", ...}, and {"kind": "exception", ...} for an
exception that escapes. The exception is then printed as Python prints it (wirestack's frames left out), and
the exit status is Python's: 1 for an exception, SystemExit's code, death by SIGINT for KeyboardInterrupt.
This module imports nothing heavy: it sets the pace of every run.
"""

from __future__ import annotations

import atexit
import linecache
import os
import signal
import sys
from types import FrameType, TracebackType
from typing import Any

from .probe import Probe, dir_sink, exception_dict


def _trim(tb: TracebackType | None, probe: Probe) -> TracebackType | None:
    """Drop the leading traceback entries that are wirestack's runner (and runpy's), as Python would show."""
    while tb is not None and probe.is_hidden(tb.tb_frame):
        tb = tb.tb_next
    return tb


def _run(spec: dict[str, Any], probe: Probe) -> None:
    mode, args = spec["mode"], list(spec.get("args", ()))
    if mode == "source":
        source, filename = spec["source"], spec["filename"]
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        sys.argv = [filename, *args]
        exec(compile(source, filename, "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
        return
    import runpy

    probe.hide_files(runpy.__file__, runpy.run_path.__code__.co_filename)  # "<frozen runpy>" in 3.11
    if mode == "script":
        script = spec["target"]
        sys.argv = [script, *args]
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        runpy.run_path(script, run_name="__main__")
    elif mode == "module":
        sys.argv = [spec["target"], *args]  # runpy puts the module's path in argv[0]
        sys.path[0] = os.getcwd()
        runpy.run_module(spec["target"], run_name="__main__", alter_sys=True)
    else:  # command
        sys.argv = ["-c", *args]
        sys.path[0] = ""
        exec(compile(spec["target"], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})


def _missing(spec: dict[str, Any]) -> str | None:
    """Why the program cannot start, in the words python would use, or None."""
    if spec["mode"] == "script" and not os.path.exists(spec["target"]):
        return f"can't open file {os.path.abspath(spec['target'])!r}: [Errno 2] No such file or directory"
    if spec["mode"] == "module":
        import importlib.util

        sys.path.insert(0, os.getcwd())
        try:
            found = importlib.util.find_spec(spec["target"])
        except (ImportError, ValueError):
            found = None
        finally:
            sys.path.pop(0)
        if found is None:
            return f"No module named {spec['target']}"
    return None


def main(spec: dict[str, Any]) -> None:
    sink = dir_sink(spec["records"])
    missing = _missing(spec)
    if missing:
        sink([{"kind": "error", "text": missing}])
        print(f"{os.path.basename(sys.executable)}: {missing}", file=sys.stderr)
        sys.exit(2)
    probe = Probe(sink)
    runner: FrameType | None = sys._getframe()
    probe.hide_frames(runner)
    probe.hide_files(__file__)
    probe.install()
    atexit.register(probe.flush)  # registered first, so it runs last: after the program's own atexit handlers
    try:
        _run(spec, probe)
    except SystemExit:
        raise  # Python itself prints its message and exits with its code
    except BaseException as exc:
        exc.__traceback__ = _trim(exc.__traceback__, probe)
        record = exception_dict(exc, probe, probe.is_hidden)
        sink([{"kind": "exception", "pid": os.getpid(), **record}])
        probe.flush()
        if not spec.get("quiet"):  # a scenario's report shows the traceback itself
            sys.excepthook(type(exc), exc, exc.__traceback__)
            sys.stderr.flush()
        if isinstance(exc, KeyboardInterrupt):  # die of SIGINT, as python does
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        sys.exit(1)
