"""The traced side of `wirestack shell`: Python's interactive console (or IPython's), with a sync point after
each input. Shipped into the traced program with the probe (see `runner.Hook`) and started by the probe's start-up
hook like any program `wirestack run` runs; imports nothing beyond the standard library's console.

Each input is bracketed in the probe's own record stream, so the order of calls and brackets is exact:

    {"kind": "input", "n": N, "phase": "begin", "time": NS, "source": TEXT}   before the input runs
    ... the calls the input made, its exception (`{"kind": "exception", ...}`) if it raised ...
    {"kind": "input", "n": N, "phase": "end", "time": NS}                     after it (and its traceback)

then "done N" goes to wirestack over a private channel (a socket pair, framed marshal messages, read and written
with os.read/os.write so the probe never sees them), and the console waits until wirestack has drained the capture
and printed the input's report before it shows the next prompt. The input's source lines are described to
wirestack from the console's own buffer: `<stdin>` has no file for linecache to read, and the console leaves
linecache alone, so tracebacks print exactly as they would under plain python.

While the console does its own bookkeeping, Ctrl-C is held back (the statement has ended; the next prompt comes
at once); while a statement runs, Ctrl-C interrupts it as in python, and at the prompt it also tells wirestack to
write the session's capture so far.
"""

from __future__ import annotations

import code
import linecache
import marshal
import os
import signal
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import CodeType, TracebackType
from typing import Any

CHANNEL = "WIRESTACK_CONSOLE"  # the channel's file descriptor
HOME = "WIRESTACK_HOME"  # the folder wirestack's own package is in (for `wire.report`)
KIND = "WIRESTACK_CONSOLE_KIND"  # "code" or "ipython"
FILENAME = "<stdin>"
NUMBERED = sys.version_info >= (3, 13) and hasattr(linecache, "_register_code")  # see TracedConsole.runsource
_HEAD = struct.Struct(">II")


class Channel:
    """Framed messages on a stream socket's descriptor: (marshalled dict, body bytes)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, message: dict[str, Any], body: bytes = b"") -> None:
        data = marshal.dumps(message)
        view = memoryview(_HEAD.pack(len(data), len(body)) + data + body)
        while view:
            view = view[os.write(self.fd, view):]

    def receive(self) -> tuple[dict[str, Any], bytes]:
        size, body = _HEAD.unpack(self._exactly(_HEAD.size))
        message = marshal.loads(self._exactly(size))
        return message, self._exactly(body)

    def _exactly(self, n: int) -> bytes:
        parts, left = [], n
        while left:
            chunk = os.read(self.fd, min(left, 1 << 20))
            if not chunk:
                raise EOFError("wirestack is gone")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def ask(self, message: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        with held_interrupts():
            self.send(message)
            return self.receive()


@contextmanager
def held_interrupts() -> Iterator[None]:
    """Ctrl-C is ignored meanwhile (the console's bookkeeping, never the program's code); the program's own
    SIGINT handler is put back after."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to hold
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Session:
    """What both consoles share: the probe, the brackets, the channel."""

    def __init__(self, probe: Any, channel: Channel) -> None:
        self.probe = probe
        self.channel = channel
        self.sink = probe._sink  # the probe's own stream (same package): brackets stay in order with its items
        self.n = 0
        self.reported = 0  # the last input wirestack reported on
        self.summary: dict[str, Any] = {}
        self._lines: dict[int, list[str]] = {}  # id(code) -> the source lines of the input it was compiled from
        self._alive: list[CodeType] = []  # those code objects, kept alive so that their ids stay theirs

    def begin(self, source: str, compiled: CodeType | None = None) -> None:
        self.n += 1
        self.probe.flush()  # what is pending (another thread's calls) came before this input
        items: list[Any] = [{"kind": "input", "n": self.n, "phase": "begin", "time": time.time_ns(),
                             "source": source[:100_000]}]
        if compiled is not None:
            items += self._describe(compiled, source.splitlines())
        self.sink(items)

    def end(self, exc: BaseException | None) -> None:
        """After the input (and its traceback): bracket it, flush, and wait for wirestack's report."""
        items: list[Any] = []
        if exc is not None:
            try:
                from .probe import exception_dict

                record = exception_dict(exc, self.probe, self.probe.is_hidden)
                self._fill(record, exc)
                items.append({"kind": "exception", **record})
            except Exception:
                pass  # a record we cannot make must not cost the program its session
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass
        self.probe.flush()
        items.append({"kind": "input", "n": self.n, "phase": "end", "time": time.time_ns()})
        self.sink(items)
        try:
            reply, _ = self.channel.ask({"op": "done", "n": self.n})
        except (OSError, EOFError):
            return
        if reply.get("reported"):
            self.reported = self.n
            self.summary = reply

    def checkpoint(self) -> None:
        try:
            self.channel.ask({"op": "checkpoint"})
        except (OSError, EOFError):
            pass

    def _describe(self, compiled: CodeType, lines: list[str]) -> list[Any]:
        """LINE items (see `items`) for every line of every code object of one input, read from its source."""
        out: list[Any] = []
        stack = [compiled]
        while stack:
            c = stack.pop()
            self._alive.append(c)
            self._lines[id(c)] = lines
            numbers = {ln for _, _, ln in c.co_lines() if ln is not None and 0 < ln <= len(lines)}
            out += [("line", id(c), ln, lines[ln - 1].strip()[:500]) for ln in sorted(numbers)]
            stack += [k for k in c.co_consts if isinstance(k, CodeType)]
        return out

    def _fill(self, record: dict[str, Any], exc: BaseException | None) -> None:
        """Source lines of the exception's `<stdin>` frames (and its chain's), which linecache cannot give."""
        if exc is None or not isinstance(record, dict):
            return
        frames = [(tb.tb_frame.f_code, tb.tb_lineno) for tb in _entries(exc.__traceback__)
                  if not self.probe.is_hidden(tb.tb_frame)]
        for entry, (c, line) in zip(record.get("frames", ()), frames, strict=False):
            entry["file"] = shown_name(str(entry.get("file", "")))
            lines = self._lines.get(id(c))
            if lines is not None and not entry.get("code") and 0 < line <= len(lines):
                entry["code"] = lines[line - 1].strip()[:500]
        self._fill(record.get("cause") or {}, exc.__cause__)
        self._fill(record.get("context") or {}, exc.__context__)
        group = record.get("group") or []
        subs = getattr(exc, "exceptions", ())
        if isinstance(subs, tuple) and len(group) == len(subs):
            for sub_record, sub in zip(group, subs, strict=True):
                self._fill(sub_record, sub if isinstance(sub, BaseException) else None)


def shown_name(file: str) -> str:
    """A file name as Python's traceback shows it: "<stdin>-3" (an input of python's 3.13 prompt) as "<stdin>"."""
    return FILENAME if file.startswith(FILENAME + "-") and file[len(FILENAME) + 1:].isdigit() else file


def _entries(tb: TracebackType | None) -> Iterator[TracebackType]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


class Wire:
    """The last input that wirestack reported on: `wire.report` (a wirestack Report), `wire.packets`,
    `wire.calls`, `wire.text` (the report as printed), `wire.save(path)` (its pcapng, annotated), and
    `wire.save(path, session=True)` (every input's so far)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._cache: tuple[int, Any] | None = None

    def _need(self) -> int:
        if not self._session.reported:
            raise LookupError("wire: no input has made a socket call yet")
        return self._session.reported

    @property
    def text(self) -> str:
        self._need()
        return str(self._session.summary.get("text", ""))

    @property
    def report(self) -> Any:
        n = self._need()
        if self._cache is None or self._cache[0] != n:
            reply, body = self._session.channel.ask({"op": "get", "n": n, "session": False, "file": ""})
            if not body:
                raise LookupError(str(reply.get("error", "wire: the report is not available")))
            self._cache = (n, _report_from(body))
        return self._cache[1]

    @property
    def packets(self) -> tuple[Any, ...]:
        return tuple(self.report.trace.packets)

    @property
    def calls(self) -> tuple[Any, ...]:
        return tuple(self.report.trace.calls)

    def save(self, path: str | os.PathLike[str], session: bool = False) -> str:
        """Write the pcapng (as you, here: wirestack opens no file you name)."""
        n = 0 if session else self._need()
        name = os.fspath(path)
        reply, body = self._session.channel.ask({"op": "get", "n": n, "session": session, "file": name})
        if not body:
            raise LookupError(str(reply.get("error", "wire: nothing to save")))
        with open(name, "wb") as f:
            f.write(body)
        return name

    def __repr__(self) -> str:
        s = self._session
        if not s.reported:
            return "<wire: no input has made a socket call yet>"
        return (f"<wire: input {s.reported}: {s.summary.get('packets', 0)} packets, {s.summary.get('calls', 0)} "
                "calls; wire.report, wire.packets, wire.calls, wire.text, wire.save(path)>")


def _report_from(pcapng: bytes) -> Any:
    """The Report held in an annotated pcapng (wirestack's own reader, imported only now)."""
    home = os.environ.get(HOME) or _home
    added = bool(home) and home not in sys.path
    if added:
        sys.path.insert(0, home)
    try:
        from wirestack.formats import reader
        from wirestack.report import build_report
    finally:
        if added:
            sys.path.remove(home)
    trace = reader.recorded_trace(reader.parse(pcapng))
    if trace is None:
        raise LookupError("wire: the capture carries no trace")
    return build_report(trace)


class TracedConsole(code.InteractiveConsole):
    """`code.InteractiveConsole`, each input bracketed (see the module's notes)."""

    def __init__(self, namespace: dict[str, Any], session: Session) -> None:
        super().__init__(namespace, filename=FILENAME)
        self.session = session
        self._source = ""
        self._numbered = 0

    def runsource(self, source: str, filename: str = "<input>", symbol: str = "single") -> bool:
        self._source = source
        if not NUMBERED:
            return super().runsource(source, filename, symbol)
        # As python's own prompt does from 3.13 on: each input compiled as "<stdin>-N", its source registered in
        # linecache under that name (tracebacks show it, named "<stdin>"); syntax errors still say "<stdin>".
        name = f"{FILENAME}-{self._numbered}"
        try:
            compiled = self.compile(source, name, symbol)
        except (OverflowError, SyntaxError, ValueError):
            self.showsyntaxerror(filename)
            return False
        if compiled is None:
            return True
        linecache._register_code(name, source, FILENAME)  # type: ignore[attr-defined]
        self._numbered += 1
        self.runcode(compiled)
        return False

    def runcode(self, code: CodeType) -> None:  # noqa: A002  (the name code.InteractiveConsole gives it)
        session = self.session
        with held_interrupts():
            session.begin(self._source, code)
        exc: BaseException | None = None
        try:
            exec(code, self.locals)
        except SystemExit:
            with held_interrupts():
                session.end(None)
            raise
        except BaseException as e:  # as code.InteractiveConsole: everything else is shown, and the session goes on
            exc = e
            self.showtraceback()
        with held_interrupts():
            session.end(exc)
        exc = None

    def raw_input(self, prompt: str = "") -> str:
        try:
            return input(prompt)
        except KeyboardInterrupt:  # at the prompt: python prints KeyboardInterrupt; wirestack saves what it has
            self.session.checkpoint()
            raise


_home = ""


def main() -> None:
    """`python -c "from _wirestack_probe import console; console.main()"` under the probe's start-up hook."""
    global _home
    probe = getattr(sys, "_wirestack_probe", None)
    fd = os.environ.pop(CHANNEL, "")
    _home = os.environ.pop(HOME, "")
    kind = os.environ.pop(KIND, "code")
    if probe is None or not fd.isdigit():
        sys.stderr.write("wirestack shell: the probe is not installed in this interpreter\n")
        sys.exit(111)
    os.set_inheritable(int(fd), False)  # the program's own children never see it
    session = Session(probe, Channel(int(fd)))
    probe.hide_files(__file__, code.__file__)
    sys.argv = [""]
    main_module = sys.modules["__main__"]
    namespace = main_module.__dict__
    namespace["wire"] = Wire(session)
    if kind == "ipython":
        _ipython(session, namespace)
        return
    hook = getattr(sys, "__interactivehook__", None)
    if hook is not None:  # readline, completion and history, as python's own prompt sets them up
        try:
            hook()
        except Exception:
            pass
    startup = os.environ.get("PYTHONSTARTUP")
    if startup and os.path.isfile(startup):
        with open(startup) as f:
            exec(compile(f.read(), startup, "exec"), namespace)
    banner = (f"Python {sys.version} on {sys.platform}\n"
              'Type "help", "copyright", "credits" or "license" for more information.')
    TracedConsole(namespace, session).interact(banner=banner, exitmsg="")


def _ipython(session: Session, namespace: dict[str, Any]) -> None:
    """IPython's terminal, each cell bracketed through its pre_run_cell/post_run_cell events."""
    import IPython
    from IPython.terminal.ipapp import TerminalIPythonApp

    folder = os.path.dirname(IPython.__file__)
    session.probe.hide_files(*(os.path.join(d, n) for d, _, names in os.walk(folder) for n in names
                               if n.endswith(".py")))
    app: Any = TerminalIPythonApp.instance()
    app.initialize(argv=[])
    shell = app.shell
    assert shell is not None
    shell.user_ns["wire"] = namespace["wire"]

    def pre(info: Any) -> None:
        with held_interrupts():
            session.begin(str(getattr(info, "raw_cell", "") or ""))

    def post(result: Any) -> None:
        exc = getattr(result, "error_in_exec", None)
        with held_interrupts():
            session.end(exc if isinstance(exc, BaseException) else None)

    shell.events.register("pre_run_cell", pre)
    shell.events.register("post_run_cell", post)
    app.start()
