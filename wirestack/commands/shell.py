"""`wirestack shell`: the classic experiment at the prompt. An interactive Python console runs traced, with the
capture live for the whole session; after each input that touched the network, its own report.

    wirestack (this process)                            the console (python, as the user: record/console.py)
    capture open (raw socket, dumpcap, or the namespace)
    records socket (runner.Hook + Reader)  <───────────  probe items, and each input bracketed in them:
                                                         begin N, the input's calls, its exception, end N
    control channel (a socket pair)        <───────────  "done N" ─ then waits
    drain the capture (marker), slice input N:
      its items (between the brackets) + every description,
      its frames (stamped since "begin N"),
    build its trace and report, print it   ───────────>  "ok": the next prompt
                                           <──────────>  `wire` asks for the last report / a pcapng (bytes:
                                                         the console writes the file itself)

The session's capture is every input's frames (each window runs from the input's start to the drain after it)
with every recorded call: written at the end (Ctrl-D, exit(), the console's end), and also when Ctrl-C is pressed
at the prompt, through a temporary file renamed into place. Frames seen while the console waits at the prompt
are not kept. Nothing the console names is opened here: `wire.save(path)` gets bytes and writes them itself.

It is long because the shell owns a whole session: the console process, the capture and kernel layer kept open, one
report per input.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..record import tracefs
from ..record.capture import CaptureError, Frames
from ..record.console import CHANNEL, HOME, KIND, Channel, shown_name
from ..record.items import DESCRIPTIONS
from ..record.loader import Loader
from ..record.runner import MIN_PYTHON, Client, Hook, ProgramError, PythonInfo, Reader, Recording, python_info
from ..record.source import FrameSource, capture_note, choose_source, describe
from ..report import Report

BOOT = "from _wirestack_probe import console; console.main()"
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)
WAIT_FOR_RECORDS = 5.0  # seconds for an input's end bracket to come through the records socket
PRUNE_AFTER_NS = 5_000_000_000  # at the prompt, frames older than this are let go (they belong to no input)
MAX_SOURCE = 100_000
EXIT_USAGE = 2


def add_parser(sub: Any, capture_option: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register `wirestack shell` (`sub`: the command line's subparsers)."""
    p = sub.add_parser("shell", help="an interactive Python console, traced and captured: each input's report",
                       description="Python's interactive console, with every socket call recorded and the packets "
                       "captured for the whole session. After each input that made socket calls or raised, its "
                       "report; `wire` holds the last one; Ctrl-D writes the session's pcapng.")
    p.add_argument("-i", "--interface", default="lo", help="interface to capture on (default lo)")
    p.add_argument("-w", "--write", metavar="FILE", help="the session's pcapng (default captures/shell-TIME.pcapng)")
    p.add_argument("--no-pcap", action="store_true", help="do not write the session's pcapng")
    p.add_argument("--force", action="store_true", help="overwrite an existing pcapng")
    p.add_argument("--no-color", action="store_true", help="no colours (also: NO_COLOR, or not a terminal)")
    p.add_argument("--width", type=int, default=None, help="columns for the reports")
    p.add_argument("--no-kernel", action="store_true", help="do not record the kernel's tracepoints")
    ns = p.add_mutually_exclusive_group()
    ns.add_argument("--netns", action="store_true", help="run in a private user + network namespace (no sudo)")
    ns.add_argument("--no-netns", action="store_true", help="never fall back to a private namespace")
    capture_option(p)
    p.add_argument("--all", action="store_true", help="show every failed call and packet, even in a large input")
    p.add_argument("--max-packets", type=int, default=None, metavar="N", help="keep at most N frames")
    p.add_argument("-s", "--snaplen", type=int, default=None, metavar="BYTES", help="keep at most BYTES a frame")
    p.add_argument("--as-root", action="store_true", help="under sudo, run the console as root (default: as the "
                   "invoking user)")
    p.add_argument("--python", metavar="PATH", default=None, help="interpreter for the console (default: "
                   "wirestack's own)")
    p.add_argument("--ipython", action="store_true", help="IPython's terminal instead of the standard console")


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"wirestack: {message}", file=sys.stderr)
    return code


def main(args: argparse.Namespace) -> int:
    from ..output.files import OutputError, check_writable, default_path, invoking_user

    if args.snaplen is not None and args.snaplen < 64:
        return _fail("--snaplen must be at least 64 bytes (headers and wirestack's own end marker)")
    if args.width is not None and not 40 <= args.width <= 1000:
        return _fail("--width must be a number of columns from 40 to 1000")
    if args.max_packets is not None and args.max_packets < 1:
        return _fail("--max-packets must be a positive whole number")
    python = shutil.which(args.python or sys.executable) or ""
    if not python:
        return _fail(f"no such interpreter: {args.python}")
    pcap = None if args.no_pcap else Path(args.write) if args.write else default_path("shell")
    try:
        if pcap is not None and args.write:
            check_writable(pcap, args.force)
    except OutputError as exc:
        return _fail(str(exc))
    user = None if args.as_root else invoking_user()
    try:
        info = python_info(python, user)
    except ProgramError as exc:
        return _fail(str(exc))
    if info.version[:2] < MIN_PYTHON:
        return _fail(f"{python} is Python {'.'.join(map(str, info.version))}; wirestack's probe runs in Python "
                     f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} to 3.13: choose another with --python")
    if args.ipython and not _has_ipython(python, user):
        return _fail(f"--ipython: IPython is not installed for {python} (pip install ipython)")
    try:
        return Shell(args, python, info, user, pcap).run()
    except (CaptureError, ProgramError) as exc:
        return _fail(str(exc))


def _has_ipython(python: str, user: tuple[int, int] | None) -> bool:
    from ..record.runner import as_user

    done = subprocess.run([python, "-c", "import IPython"], capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=60, **as_user(user))
    return done.returncode == 0


# -- the session's records, sliced per input ----------------------------------------------------------------------


@dataclass
class Input:
    """One input of the console, as its brackets tell: where its items lie in the session's, and when it ran."""

    n: int
    source: str
    begin: int  # index into SessionLog.items
    begin_ns: int
    end: int | None = None
    end_ns: int = 0


@dataclass
class SessionLog(Loader):
    """The Reader's loader for a shell session: it keeps the items as they come (for slicing) instead of loading
    them. Descriptions (code objects, source lines, sockets) are the session's; the rest is kept in order, with
    each input's brackets taken out and noted as positions. Fed by the Reader thread."""

    items: list[Any] = field(default_factory=list)
    descriptions: list[Any] = field(default_factory=list)
    lines: dict[tuple[int, int], str] = field(default_factory=dict)
    inputs: dict[int, Input] = field(default_factory=dict)
    processes: list[dict[str, Any]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def feed(self, batch: Any) -> None:
        with self.changed:
            for item in batch:
                self._keep(item)
            self.changed.notify_all()

    def _keep(self, item: Any) -> None:
        if isinstance(item, tuple) and item and item[0] in DESCRIPTIONS:
            if item[0] == "line" and len(item) == 4 and isinstance(item[3], str):
                key = (item[1], item[2])
                if item[3] or key not in self.lines:  # the console's own text wins over linecache's nothing
                    self.lines[key] = item[3]
            elif item[0] == "code" and len(item) == 4 and isinstance(item[2], str):
                self.descriptions.append((*item[:2], shown_name(item[2]), item[3]))  # as the traceback names it
            else:
                self.descriptions.append(item)
        elif isinstance(item, dict) and item.get("kind") == "input":
            n, when, phase = item.get("n"), item.get("time"), item.get("phase")
            if type(n) is not int or type(when) is not int:
                self.bad += 1
            elif phase == "begin":
                source = item.get("source")
                self.inputs[n] = Input(n, source[:MAX_SOURCE] if isinstance(source, str) else "", len(self.items),
                                       when)
            elif phase == "end" and n in self.inputs:
                self.inputs[n].end, self.inputs[n].end_ns = len(self.items), when
        else:
            if isinstance(item, dict) and item.get("kind") == "process":
                self.processes.append(item)
            self.items.append(item)

    def wait_end(self, n: int, timeout: float) -> Input | None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while n not in self.inputs or self.inputs[n].end is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)
            return self.inputs[n]

    def made_calls(self, inp: Input) -> bool:
        """Did the input make a socket call (a call or data item between its brackets)?"""
        with self.changed:
            return any(isinstance(i, tuple) and i and i[0] in ("call", "data") for i in self.items[inp.begin: inp.end])

    def running(self) -> bool:
        """Is an input running now (begun, not ended)?"""
        with self.changed:
            return any(i.end is None for i in self.inputs.values())

    def loader(self, main_pid: int, inp: Input | None = None) -> Loader:
        """A Loader with everything described so far and the items of `inp` (None: the whole session, without
        the inputs' exceptions, since none of them ended the session)."""
        with self.changed:
            shared = [*self.descriptions, *(("line", k[0], k[1], t) for k, t in self.lines.items())]
            if inp is not None:
                chosen = self.items[inp.begin: inp.end]
                main = [p for p in self.processes if p.get("pid") == main_pid][:1]
                if main and main[0] not in chosen:
                    chosen = main + chosen
            else:
                chosen = [i for i in self.items if not (isinstance(i, dict) and i.get("kind") == "exception")]
        loader = Loader()
        loader.feed(shared)
        loader.feed(chosen)
        return loader


# -- the session ----------------------------------------------------------------------------------------------------


class Shell:
    """One `wirestack shell` session (see the module's notes)."""

    def __init__(self, args: argparse.Namespace, python: str, info: PythonInfo, user: tuple[int, int] | None,
                 pcap: Path | None) -> None:
        self.args = args
        self.python = python
        self.info = info
        self.user = user
        self.pcap = pcap
        self.capture: FrameSource = choose_source(args.interface, args.capture, *self._limits()).open()
        self.recorder: tracefs.Recorder | None = None
        self.kernel_off = "kernel layer off: --no-kernel"
        if not args.no_kernel:
            try:
                self.recorder = tracefs.Recorder.start(python, keep_newest=True)
                self.kernel_off = ""
            except tracefs.KernelOff as exc:
                self.kernel_off = str(exc)
        self.frames = Frames()  # the session's: every input's window
        self.dropped_seen = 0
        self.last: tuple[int, Report] | None = None
        self.started = time.time_ns()
        self.log = SessionLog()
        self.child: subprocess.Popen[bytes] | None = None
        self.stop_signal = 0
        self.frameless = True
        self._kernel = ""

    def _limits(self) -> tuple[int, int]:
        from ..record.capture import MAX_PACKETS, SNAPLEN

        return self.args.snaplen or SNAPLEN, self.args.max_packets or MAX_PACKETS

    # -- running ---------------------------------------------------------------------------------------------------

    def run(self) -> int:
        try:
            hook = Hook(self.user, self.info)
        except BaseException:
            self._close()
            raise
        self.frameless = hook.frameless
        reader = Reader(hook)
        reader.loader = self.log
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        code = 0
        try:
            console = hook.hook / "_wirestack_probe" / "console.py"
            console.write_text((Path(__file__).resolve().parent.parent / "record" / "console.py").read_text())
            console.chmod(0o644)
            reader.start()
            self._banner()
            with _terminal_kept():
                self.child = self._spawn(hook, theirs)
                theirs.close()
                previous = self._signals()
                try:
                    self._serve(ours, self.child)
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)
            code = self.child.returncode if self.child.returncode is not None else 0
            code = 128 - code if code < 0 else code
        finally:
            ours.close()
            theirs.close()
            kernel_text = self._close()
            reader.finish()
            hook.remove()
        error = next((r.get("text") for r in self.log.items if isinstance(r, dict) and r.get("kind") == "error"), None)
        if isinstance(error, str) and error:
            return _fail(_clean(error[:300]))
        self._write_session(kernel_text, final=True)
        return 128 + self.stop_signal if self.stop_signal else code

    def _close(self) -> str:
        """Drain and close the capture, stop the kernel layer; the kernel's text."""
        try:
            self.capture.stop()
        except CaptureError as exc:
            print(f"wirestack: {exc}", file=sys.stderr)
        finally:
            self.capture.close()
        kernel_text = self._kernel_text()
        if self.recorder is not None:
            try:
                kernel_text, _ = self.recorder.stop()
            except (OSError, tracefs.KernelOff):  # the instance went away under us (see _kernel_text)
                pass
            self.recorder = None
        return kernel_text

    def _banner(self) -> None:
        how = describe(self.capture)
        where = "no file (--no-pcap)" if self.pcap is None else str(self.pcap)
        print(f"wirestack shell: socket calls traced, packets captured on {self.args.interface} "
              f"({how.removeprefix('capture: ')}); after each input that touches the network, its report; "
              f"`wire` holds the last one. Ctrl-D writes {where}.", file=sys.stderr)

    def _spawn(self, hook: Hook, theirs: socket.socket) -> subprocess.Popen[bytes]:
        from ..record.runner import as_user

        kwargs: dict[str, Any] = as_user(self.user)
        env = dict(kwargs.pop("env", None) or os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(hook.hook), *([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                                                else [])])
        env["WIRESTACK_RECORDS"] = hook.socket_path
        env[CHANNEL] = str(theirs.fileno())
        env[HOME] = PACKAGE_ROOT
        env[KIND] = "ipython" if self.args.ipython else "code"
        try:
            return subprocess.Popen([self.python, "-c", BOOT], env=env, pass_fds=(theirs.fileno(),), **kwargs)
        except OSError as exc:
            raise ProgramError(f"cannot start {self.python}: {exc.strerror}") from None

    def _signals(self) -> dict[int, Any]:
        """Ctrl-C is the console's (it interrupts the statement); here it is ignored, but with a handler, not
        SIG_IGN, which the console would inherit. SIGTERM and SIGHUP end the session (its file is written)."""
        def stop(signum: int, _frame: object) -> None:
            self.stop_signal = signum

        previous: dict[int, Any] = {}
        for sig, handler in ((signal.SIGINT, lambda *_: None), (signal.SIGTERM, stop), (signal.SIGHUP, stop)):
            previous[sig] = signal.signal(sig, handler)
        return previous

    def _serve(self, ours: socket.socket, child: subprocess.Popen[bytes]) -> None:
        channel = Channel(ours.fileno())
        ended = False
        while child.poll() is None:
            if self.stop_signal and not ended:
                ended = True
                threading.Thread(target=_end_console, args=(child,), daemon=True).start()
            try:
                ready = select.select([ours.fileno(), self.capture.fileno()], [], [], 0.05)[0]
            except OSError:
                continue
            if self.capture.fileno() in ready and self.capture.fill() >= 0.25:
                self.capture.pump()
            if not self.log.running() and len(self.capture.frames) > 1000:
                # prompt-time traffic belongs to no input's window
                self.capture.frames = self.capture.take(time.time_ns() - PRUNE_AFTER_NS)
            if ours.fileno() in ready:
                try:
                    message, _ = channel.receive()
                except (EOFError, OSError, ValueError, TypeError):
                    break
                if isinstance(message, dict):
                    self._answer(channel, message, child.pid)
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _end_console(child)

    def _answer(self, channel: Channel, message: dict[str, Any], pid: int) -> None:
        op = message.get("op")
        if op == "done" and type(message.get("n")) is int:
            channel.send(self._done(message["n"], pid))
        elif op == "checkpoint":
            self._write_session(self._kernel_text(), final=False)
            channel.send({"op": "ok"})
        elif op == "get":
            body, error = self._file(message, pid)
            channel.send({"op": "file", "error": error}, body)
        else:
            channel.send({"op": "error", "error": "unknown request"})

    # -- one input ---------------------------------------------------------------------------------------------------

    def _done(self, n: int, pid: int) -> dict[str, Any]:
        inp = self.log.wait_end(n, WAIT_FOR_RECORDS)
        if inp is None:
            return {"op": "ok", "reported": False}
        notes = []
        try:
            self.capture.drain()
        except CaptureError as exc:
            notes.append(f"the capture could not be drained: {exc}")
        window = self.capture.take(inp.begin_ns)
        self._keep(window)
        dropped, self.dropped_seen = self.capture.dropped - self.dropped_seen, self.capture.dropped
        loader = self.log.loader(pid, inp)
        raised = any(isinstance(r, dict) and r.get("kind") == "exception" for r in loader.other)
        if not self.log.made_calls(inp) and not raised:
            return {"op": "ok", "reported": False}
        report = self._report(Client(f"shell [{n}]", inp.source, "<stdin>"), window, len(window), dropped, loader,
                              inp.begin_ns, pid, self._kernel_text(), notes)
        self.last = (n, report)
        text = self._show(report, n)
        return {"op": "ok", "reported": True, "n": n, "packets": len(report.trace.packets),
                "calls": len(report.trace.calls), "text": text}

    def _keep(self, window: Frames) -> None:
        self.frames.times += window.times
        self.frames.lengths += window.lengths
        self.frames.data += window.data

    def _report(self, client: Client, frames: Frames, seen: int, dropped: int, loader: Loader, started: int,
                pid: int, kernel_text: str, notes: Sequence[str] = ()) -> Report:
        from ..record.assemble import build_trace
        from ..record.tshark import with_app_layer
        from ..report import build_report

        all_notes = [n for n in (capture_note(),) if n] + list(notes)
        if not self.frameless:
            all_notes.append("the probe ran in pure Python (no C twin for this interpreter): the program's "
                             "tracebacks show one frame of it, `<wirestack probe>`")
        recording = Recording(client, self.args.interface, frames, self.capture.linktype, seen, dropped, loader,
                              started, None, pid, kernel_text, self.kernel_off, all_notes,
                              ".".join(map(str, self.info.version)), self.frameless)
        return build_report(with_app_layer(build_trace(recording)))

    def _show(self, report: Report, n: int) -> str:
        """Print the input's report (a line when nothing reached the wire and nothing failed); return it plain."""
        from ..output.text import TextRenderer

        out = sys.stderr
        tty = out.isatty()
        color = tty and not self.args.no_color and "NO_COLOR" not in os.environ
        width = self.args.width or (shutil.get_terminal_size((100, 24)).columns if tty else 100)
        plain = TextRenderer(width, False, self.args.all).render(report)
        quiet = quiet_line(report, n)
        if quiet is not None:
            out.write(("\x1b[2m" + quiet + "\x1b[0m" if color else quiet) + "\n")
        else:
            out.write(TextRenderer(width, color, self.args.all).render(report) if color else plain)
        out.flush()
        return plain

    def _kernel_text(self) -> str:
        """The kernel's trace so far (reading does not consume it). If the instance went away mid-session (a
        wirestack run that cannot see this process's pid took it for a dead one's), what was read last."""
        if self.recorder is None:
            return ""
        try:
            self._kernel = (self.recorder.folder / "trace").read_text(errors="replace")
        except OSError:
            pass
        return self._kernel

    # -- the session's file ----------------------------------------------------------------------------------------

    def _session_report(self, kernel_text: str, file: str | None) -> Report:
        pid = self.child.pid if self.child is not None else 0
        with self.log.changed:
            sources = [i.source.rstrip("\n") for i in sorted(self.log.inputs.values(), key=lambda i: i.n)]
        report = self._report(Client("shell", "\n".join(sources), "<stdin>"), self.frames, len(self.frames),
                              self.capture.dropped, self.log.loader(pid), self.started, pid, kernel_text)
        if file is not None:
            trace = report.trace
            report = replace(report, trace=replace(trace, capture=replace(trace.capture, file=file)))
        return report

    def _write_session(self, kernel_text: str, final: bool) -> None:
        """The session's pcapng so far, through a temporary file renamed into place."""
        if self.pcap is None:
            return
        from ..output.annotate import blocks
        from ..output.files import OutputError, write

        path = self.pcap
        report = self._session_report(kernel_text, str(path))
        temporary = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
        try:
            write(temporary, blocks(report), force=False, create_folder=not self.args.write)
            os.replace(temporary, path)
        except OutputError as exc:
            print(f"wirestack: {exc}", file=sys.stderr)
            return
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            print(f"wirestack: cannot write {path}: {exc.strerror}", file=sys.stderr)
            return
        inputs = len(self.log.inputs)
        what = "wrote" if final else "wrote the session so far to"
        print(f"wirestack: {what} {path} ({inputs} input{'s' * (inputs != 1)}, "
              f"{len(report.trace.packets)} packets)", file=sys.stderr)

    def _file(self, message: dict[str, Any], pid: int) -> tuple[bytes, str]:
        """The pcapng `wire.save` or `wire.report` asked for: the last input's, or the session's so far."""
        from ..output.annotate import blocks

        name = message.get("file")
        name = name[:4096] if isinstance(name, str) and name else None
        if message.get("session"):
            report = self._session_report(self._kernel_text(), name)
        elif self.last is not None and self.last[0] == message.get("n"):
            report = self.last[1]
            if name is not None:
                trace = report.trace
                report = replace(report, trace=replace(trace, capture=replace(trace.capture, file=name)))
        else:
            return b"", "wire: that input's report is gone"
        return b"".join(blocks(report)), ""


def quiet_line(report: Report, n: int) -> str | None:
    """One line instead of the report, for an input with nothing to line up: no packet, no failed call, no
    exception (or an exception with no socket call under it). None when the report is worth showing."""
    from ..explain.rules.calls import is_wait
    from ..explain.wording import count

    t = report.trace
    failed = [c for c in t.calls if c.failed and not is_wait(c)]
    if t.packets or failed:
        return None
    if t.exception is not None:
        if t.calls:
            return None
        return (f"wirestack [{n}]: {_clean(t.exception.type)} made no socket call: nothing on the wire to line it "
                "up with")
    ops = ", ".join(dict.fromkeys(c.op for c in t.calls))
    return f"wirestack [{n}]: {count(len(t.calls), 'socket call')} ({ops}), no packet; `wire.report` has it all"


def _clean(text: str) -> str:
    from ..output.sanitize import clean

    return clean(text)


def _end_console(child: subprocess.Popen[bytes]) -> None:
    """End the console: SIGHUP (as a closed terminal would; Ctrl-C would only interrupt its statement), then
    SIGTERM, then SIGKILL."""
    from ..record.runner import end_process

    end_process(child, signal.SIGHUP)


class _terminal_kept:  # noqa: N801  (a context manager named for what it keeps)
    """The terminal's settings put back after the console (a console killed inside readline leaves it raw)."""

    def __init__(self) -> None:
        self.saved: list[Any] | None = None

    def __enter__(self) -> None:
        try:
            import termios

            self.saved = termios.tcgetattr(sys.stdin.fileno()) if sys.stdin.isatty() else None
        except (OSError, ValueError, ImportError):
            self.saved = None

    def __exit__(self, *_: object) -> None:
        if self.saved is not None:
            import termios

            try:
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.saved)
            except (OSError, ValueError):
                pass


__all__ = ["Input", "SessionLog", "Shell", "add_parser", "main", "quiet_line"]
