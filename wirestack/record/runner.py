"""Running a traced client: capture in this process, the client and its probe in another.

    capture.open()  ->  spawn client (probe installed)  ->  read frames + records until it exits
                    ->  capture.stop() (drain to marker)  ->  Trace

The capture socket is bound before the client starts, so no packet of the client can precede the capture. The
client runs in its own interpreter: the capture reader never shares a GIL with it.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..core import errnos
from ..core.dissect import dissect
from ..core.kernel import keep as keep_kernel
from ..core.kernel import parse as parse_kernel
from ..core.pairing import traced_packets
from ..model import Call, CaptureInfo, ExceptionInfo, Trace
from . import tracefs
from .capture import MAX_PACKETS, SNAPLEN, Capture
from .loader import Loader, call_from, exception_from

PACKAGE_DIR = Path(__file__).resolve().parent

# The child's first code: read the spec (with the probe's source) from an inherited pipe, load the probe as
# `_wirestack_probe`, hand over to bootstrap.main. The program needs no access to wirestack's files.
BOOT = """\
import os, sys, json, types
def _wirestack_boot():
    fd, data = int(sys.argv[1]), b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(fd)
    spec = json.loads(data)
    pkg = types.ModuleType("_wirestack_probe")
    pkg.__path__ = []
    sys.modules[pkg.__name__] = pkg
    if spec.get("fastpath"):  # the probe's C short path, built for this very interpreter; optional
        try:
            from importlib.machinery import ExtensionFileLoader, ModuleSpec
            loader = ExtensionFileLoader(pkg.__name__ + "._fastpath", spec["fastpath"])
            fast = loader.create_module(ModuleSpec(loader.name, loader, origin=spec["fastpath"]))
            loader.exec_module(fast)
            sys.modules[loader.name] = fast
        except Exception:
            pass
    for name in ("probe", "bootstrap"):
        mod = types.ModuleType("_wirestack_probe." + name)
        mod.__file__, mod.__package__ = "<wirestack " + name + ">", "_wirestack_probe"
        sys.modules[mod.__name__] = mod
        exec(compile(spec["modules"][name], mod.__file__, "exec"), mod.__dict__)
    sys.modules["_wirestack_probe.bootstrap"].main(spec)
_wirestack_boot()
"""


@dataclass(frozen=True)
class Client:
    """What to run. Scenarios give client code (`source`, shown in tracebacks as `filename`) and run isolated
    (`python -I -S`); `wirestack run` gives a script, module or command with its arguments."""

    title: str
    source: str = ""
    filename: str = ""
    mode: str = "source"  # "source", "script", "module" or "command"
    target: str = ""
    args: tuple[str, ...] = ()
    isolated: bool = True
    quiet: bool = True  # don't print the traceback (the report shows it)
    python: str = sys.executable

    @property
    def shown(self) -> str:
        """The client as a user would type it."""
        if self.mode == "source":
            return self.source
        head = {"script": [], "module": ["-m"], "command": ["-c"]}[self.mode]
        return " ".join(shlex.quote(a) for a in ["python", *head, self.target, *self.args])


class ProgramError(Exception):
    """The program could not start (missing module...); the message is one line for the user."""


class Stop(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM (see `stop_on_signals`): end the run, keep what was recorded."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def stop_on_signals() -> None:
    """SIGINT/SIGTERM raise `Stop` (while the client runs: stop it, keep what was recorded)."""
    def handler(signum: int, _frame: object) -> None:
        raise Stop(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


_deferred: list[int] = []


def defer_signals() -> None:
    """SIGINT/SIGTERM are remembered, not acted on (while setting up, draining, writing: an interruption then
    would lose or cut the capture). `deferred_signal()` tells the caller, who exits 128+N when done."""
    def handler(signum: int, _frame: object) -> None:
        if not _deferred:
            _deferred.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def deferred_signal() -> int:
    return _deferred[0] if _deferred else 0


def pause_for_tests(phase: str) -> None:
    """Fault injection for the hardening tests: with WIRESTACK_PAUSE_AT=PHASE ("setup", "drain", "write") wirestack
    waits a second at that point, so a test can deliver a signal exactly then. Unset, it costs one lookup."""
    if os.environ.get("WIRESTACK_PAUSE_AT") == phase:
        time.sleep(1.0)


class Interrupted(Exception):
    """The run was interrupted (SIGINT/SIGTERM); `trace` holds what was recorded until then."""

    def __init__(self, trace: Trace, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.trace = trace
        self.signum = signum


OnFrame = Callable[[int, bytes], None]


def run_traced(client: Client, interface: str = "lo", timeout: float | None = 120.0,
               on_frame: OnFrame | None = None, user: tuple[int, int] | None = None, kernel: bool = True,
               snaplen: int = SNAPLEN, max_packets: int = MAX_PACKETS) -> Trace:
    """Capture on `interface` while `client` runs under the probe; return everything recorded.
    `on_frame(time_ns, raw)` is called for each frame as it is captured (live progress; all traffic on the
    interface, so filter before showing). `user` (uid, gid): run the client as that user."""
    defer_signals()  # setting up: an interruption now is acted on once the client has started
    capture = Capture(interface, snaplen, max_packets).open()
    recorder, kernel_off = None, "kernel layer off: --no-kernel"
    if kernel:
        try:
            recorder = tracefs.Recorder.start(client.python)
        except tracefs.KernelOff as exc:
            kernel_off = str(exc)
    kernel_text: tuple[str, int, list[str]] | None = None
    started = time.time_ns()
    signum, returncode, timed_out, pid = 0, None, False, 0
    with tempfile.TemporaryDirectory(prefix="wirestack-") as folder:
        try:
            if user is not None:
                os.chown(folder, *user)
            pause_for_tests("setup")
            child = _spawn(client, folder, user)
            pid = child.pid
            try:
                if deferred_signal():
                    raise Stop(_deferred.pop())
                stop_on_signals()
                timed_out = _pump(capture, child, timeout, on_frame)
                defer_signals()
            except (KeyboardInterrupt, Stop) as stop:
                defer_signals()  # a second Ctrl-C must not lose the capture
                _deferred.clear()
                signum = stop.signum if isinstance(stop, Stop) else signal.SIGINT
                _end_child(child)
            returncode = child.poll()
            pause_for_tests("drain")
            capture.stop()
        finally:
            capture.close()
            if recorder is not None:
                kernel_text = recorder.stop()
        records = _read_records(folder)
    error = next((r["text"] for r in records if isinstance(r, dict) and r.get("kind") == "error"), None)
    if error:
        raise ProgramError(error)
    if timed_out:
        records.append({"kind": "note", "text": f"the client was stopped after {timeout:g} s"})
    if capture.over:
        records.append({"kind": "note", "text": f"the capture kept the first {capture.max_packets} frames "
                        f"(--max-packets) and counted {capture.over} more without keeping them: packets after "
                        "that point are missing from the report and the file"})
    trace = build_trace(client, capture, records, started, returncode, pid)
    if kernel_text is not None:
        text, offset, notes = kernel_text
        events, _ = keep_kernel(parse_kernel(text, offset), trace.calls, trace.packets)
        trace = replace(trace, kernel=tuple(events), notes=trace.notes + tuple(notes))
    else:
        trace = replace(trace, kernel_off=kernel_off)
    if signum:
        raise Interrupted(trace, signum)
    return trace


def _spawn(client: Client, folder: str, user: tuple[int, int] | None) -> subprocess.Popen[bytes]:
    spec = {
        "records": folder, "mode": client.mode, "target": client.target, "args": list(client.args),
        "source": client.source, "filename": client.filename, "quiet": client.quiet,
        "modules": {name: (PACKAGE_DIR / f"{name}.py").read_text() for name in ("probe", "bootstrap")},
        "fastpath": _fastpath_for(client.python),
    }
    read_fd, write_fd = os.pipe()
    flags = ["-I", "-S"] if client.isolated else []
    kwargs: dict[str, Any] = {}
    if user is not None:
        kwargs = {"user": user[0], "group": user[1], "extra_groups": _groups(user), "env": _user_env(user[0])}
    try:
        child = subprocess.Popen([client.python, *flags, "-c", BOOT, str(read_fd)], pass_fds=[read_fd],
                                 stdin=subprocess.DEVNULL if client.quiet else None, **kwargs)
    except PermissionError:
        who = f"user {user[0]}" if user else "this user"
        raise ProgramError(f"{who} cannot run {client.python}: install wirestack where that user can read it, "
                           "or use --as-root") from None
    except OSError as exc:
        raise ProgramError(f"cannot start {client.python}: {exc.strerror}") from None
    finally:
        os.close(read_fd)
    with os.fdopen(write_fd, "wb") as pipe:  # well under the pipe's buffer is not guaranteed: write, then close
        pipe.write(json.dumps(spec).encode())
    return child


def _fastpath_for(python: str) -> str | None:
    """The probe's C short path (`_fastpath.c`), if it is built and the program runs on this very interpreter
    (an extension is built for one Python's ABI); else the probe runs in pure Python."""
    try:
        from . import _fastpath
    except ImportError:
        return None
    same = os.path.realpath(shutil.which(python) or python) == os.path.realpath(sys.executable)
    return _fastpath.__file__ if same else None


def _groups(user: tuple[int, int]) -> list[int]:
    try:
        name = pwd.getpwuid(user[0]).pw_name
        return os.getgrouplist(name, user[1])
    except KeyError:
        return [user[1]]


def _user_env(uid: int) -> dict[str, str]:
    env = dict(os.environ)
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return env
    env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
    return env


def _pump(capture: Capture, child: subprocess.Popen[bytes], timeout: float | None,
          on_frame: OnFrame | None = None) -> bool:
    """Capture while the child runs; True if it had to be stopped at the deadline."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        # The kernel queues frames for us (64 MiB): reading them while the program runs takes CPU from it (on 2
        # cores a 106,000-packet burst ran 1.0 s with reads every 50 ms, 0.55 s with reads deferred). So look
        # every 50 ms, but read only when the queue is a quarter full (or frames are shown live); the rest is
        # read when the program is done (capture.stop drains to the marker).
        try:
            child.wait(timeout=0.05)
            return False
        except subprocess.TimeoutExpired:
            pass
        if on_frame is None and capture.fill() < 0.25:
            if deadline is not None and time.monotonic() > deadline:
                _end_child(child)
                return True
            continue
        seen = len(capture.frames)
        capture.pump()
        if on_frame is not None:
            for i in range(seen, len(capture.frames)):
                on_frame(capture.frames.times[i], capture.frames.data[i])
        if deadline is not None and time.monotonic() > deadline:
            _end_child(child)
            return True


def _read_records(folder: str) -> list[Any]:
    """Every process's batches (FOLDER/PID.rec), in file order; a batch cut short by a killed process ends
    that file."""
    import marshal
    import struct

    items: list[Any] = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".rec"):
            continue
        data = Path(folder, name).read_bytes()
        pos = 0
        while pos + 4 <= len(data):
            (size,) = struct.unpack_from("<I", data, pos)
            if pos + 4 + size > len(data):
                break
            try:
                items.extend(marshal.loads(data[pos + 4 : pos + 4 + size]))
            except (EOFError, ValueError, TypeError):
                break
            pos += 4 + size
    return items


def _end_child(child: subprocess.Popen[bytes]) -> None:
    """Stop the client the way a terminal would (SIGINT: it raises KeyboardInterrupt, and the probe writes
    what it holds), then more firmly if it does not go."""
    for sig, wait in ((signal.SIGINT, 2.0), (signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
        if child.poll() is not None:
            return
        child.send_signal(sig)
        try:
            child.wait(wait)
        except subprocess.TimeoutExpired:
            continue


def build_trace(client: Client, capture: Capture, items: list[Any], started: int,
                returncode: int | None = None, pid: int = 0) -> Trace:
    """The probe's items from every traced process, and the captured frames, as one Trace. Call ids are
    renumbered in time order (1, 2, ...) and sockets in order of appearance; packet ids are frame numbers."""
    loader = Loader()
    loader.feed(items)
    raw_calls = sorted(loader.calls, key=lambda r: (r["start_ns"], r["id"]))
    new_id = {r["id"]: i + 1 for i, r in enumerate(raw_calls)}
    sockets: dict[int, int] = {}
    for r in raw_calls:
        if r.get("socket"):
            sockets.setdefault(r["socket"], len(sockets) + 1)
    calls = tuple(call_from({**r, "id": new_id[r["id"]], "socket": sockets.get(r.get("socket") or 0, 0)})
                  for r in raw_calls)
    records = loader.other
    raised = [r for r in records if r.get("kind") == "exception"]
    exc_rec = next((r for r in raised if r.get("pid") == pid), raised[0] if raised else None)
    exception = _renumber(exception_from(exc_rec), new_id)
    notes = [r["text"] for r in records if r.get("kind") == "note"] + _process_notes(calls, pid)
    frames = capture.frames
    decoded = [dissect(i, t, d, capture.linktype, n)
               for i, (t, n, d) in enumerate(zip(frames.times, frames.lengths, frames.data, strict=True))]
    kept = [p.id for p in traced_packets(calls, decoded)]
    # decoded again with their final ids (frame numbers in the file): cheaper than copying frozen records
    packets = tuple(dissect(n + 1, frames.times[i], frames.data[i], capture.linktype, frames.lengths[i])
                    for n, i in enumerate(kept))
    numbers = {c.errno for c in calls if c.errno} | ({exception.errno} if exception and exception.errno else set())
    info = CaptureInfo(capture.interface, None, len(packets), len(frames), capture.dropped, capture.linktype)
    return Trace(client.title, client.shown, packets, calls, exception, info, started, returncode, tuple(notes),
                 errnos.header_defines(n for n in numbers if n))


def _renumber(exc: ExceptionInfo | None, new_id: dict[int, int]) -> ExceptionInfo | None:
    if exc is None:
        return None
    return replace(exc, call=new_id.get(exc.call) if exc.call is not None else None,
                   cause=_renumber(exc.cause, new_id), context=_renumber(exc.context, new_id))


def _process_notes(calls: tuple[Call, ...], pid: int) -> list[str]:
    """Which processes were traced, and which were started but not traced."""
    notes = []
    forked = sorted({c.pid for c in calls if c.pid and c.pid != pid})
    if forked:
        notes.append(f"forked process{'es' if len(forked) > 1 else ''} {', '.join(map(str, forked))} inherited the "
                     "probe and were traced")
    for c in calls:
        if c.op == "spawn":
            argv = c.args.get("argv")
            shown = " ".join(argv) if isinstance(argv, list) else str(argv)
            if c.failed:
                notes.append(f"the program failed to start `{shown}`: {c.error}")
            else:
                notes.append(f"child process {c.result} (`{shown}`) was not traced: its socket calls are not "
                             "recorded and its packets are left out")
    return notes
