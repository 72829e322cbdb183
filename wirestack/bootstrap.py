"""The traced program's entry point: install the probe, run the client, report calls and exception.

wirestack starts this in a separate interpreter (the capture must not share a GIL with the client):

    python -I -S -c "import sys; sys.path.insert(0, ROOT); from wirestack.bootstrap import main; main()" SPEC

SPEC is JSON: {"fd": pipe to write records to, "filename": name shown in tracebacks, "source": client code}.
Records go to the pipe as JSON lines: {"kind": "call", ...} while it runs, then {"kind": "exception", ...} if
the client raised, then {"kind": "exit", "code": N}. This module imports nothing heavy: it sets the pace of
every run.
"""

from __future__ import annotations

import json
import linecache
import sys
from types import TracebackType
from typing import Any

from .probe import Probe, exception_dict, fd_sink


def run_source(probe: Probe, source: str, filename: str) -> tuple[int, dict[str, Any] | None]:
    """Run `source` as `__main__` under the probe; return (exit code, exception record or None)."""
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)  # so tracebacks can show the code
    code = compile(source, filename, "exec")
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    this = sys._getframe().f_code
    probe.stop_at(this)

    def ours(tb: TracebackType) -> bool:
        return tb.tb_frame.f_code is this

    try:
        exec(code, namespace)
    except SystemExit as exc:
        return (exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)), None
    except KeyboardInterrupt as exc:
        return 130, exception_dict(exc, probe, ours)
    except BaseException as exc:
        return 1, exception_dict(exc, probe, ours)
    return 0, None


def main() -> None:
    spec = json.loads(sys.argv[1])
    sink = fd_sink(spec["fd"])
    probe = Probe(sink)
    probe.install()
    code, exc = run_source(probe, spec["source"], spec["filename"])
    probe.flush()
    tail: list[dict[str, Any]] = [{"kind": "exception", **exc}] if exc else []
    sink(tail + [{"kind": "exit", "code": code}])
    sys.exit(code)
