"""Running a traced client: capture in this process, the client and its probe in another.

    capture.open()  ->  spawn client (probe installed)  ->  read frames + records until it exits
                    ->  capture.stop() (drain to marker)  ->  a `Recording` (see `assemble` for the Trace)

The capture socket is bound before the client starts, so no packet of the client can precede the capture. The
client runs in its own interpreter: the capture reader never shares a GIL with it. The probe's records come
back over a socket this process created (`Hook`): nothing the program names is opened here.

It is long because one run is one sequence (start barrier, program as the user, records channel, capture pump, stop,
drain) whose order matters.
"""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import pwd
import py_compile
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ProgramError as ProgramError
from . import items as layout
from . import tracefs
from .capture import MAX_PACKETS, SNAPLEN, Frames
from .loader import Loader
from .reaper import Reaper
from .source import FrameSource, choose_source
from .spool import Spool

PACKAGE_DIR = Path(__file__).resolve().parent
PROBE_MODULES = ("items", "probe", "bootstrap")
MIN_PYTHON = (3, 10)

# A scenario's client: load the probe package from the hook folder, then run the client code (bootstrap.scenario)
BOOT = ("import sys, json; sys.path.insert(0, sys.argv[1]); from _wirestack_probe import bootstrap; "
        "del sys.path[0]; bootstrap.scenario(json.loads(sys.argv[2]))")


@dataclass(frozen=True)
class Client:
    """What to run. Scenarios give client code (`source`, shown in tracebacks as `filename`) and run isolated
    (`python -I -S`); `wirestack run` gives a script, module or command with its arguments, run by Python
    itself."""

    title: str
    source: str = ""
    filename: str = ""
    mode: str = "source"  # "source", "script", "module" or "command"
    target: str = ""
    args: tuple[str, ...] = ()
    python: str = sys.executable
    prefix: tuple[str, ...] = ()  # argv before the interpreter's: nsenter into a network lab's host

    @property
    def shown(self) -> str:
        """The client as a user would type it."""
        if self.mode == "source":
            return self.source
        head = {"script": [], "module": ["-m"], "command": ["-c"]}[self.mode]
        return " ".join(shlex.quote(a) for a in ["python", *head, self.target, *self.args])


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
    """SIGINT/SIGTERM are remembered, not acted on (while setting up and draining: an interruption then would lose
    or cut the capture). `deferred_signal()` tells the caller."""
    def handler(signum: int, _frame: object) -> None:
        if not _deferred:
            _deferred.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def deferred_signal() -> int:
    return _deferred[0] if _deferred else 0


def pause_for_tests(phase: str) -> None:
    """Fault injection for the hardening tests: with WIRESTACK_PAUSE_AT=PHASE ("setup", "drain", "write",
    "analyse"; "aside": the copy writing a large run's pcapng, before it starts) wirestack says so on stderr
    and waits a second at that point, so a test can deliver a signal exactly then."""
    if os.environ.get("WIRESTACK_PAUSE_AT") == phase:
        sys.stderr.write(f"wirestack: pausing at {phase} (WIRESTACK_PAUSE_AT)\n")
        sys.stderr.flush()
        time.sleep(1.0)


OnFrame = Callable[[int, bytes], None]


@dataclass
class Recording:
    """Everything a run recorded, as raw as it came: frames, the probe's items (loaded), kernel trace text."""

    client: Client
    interface: str
    frames: Frames
    linktype: int
    seen: int
    dropped: int
    loader: Loader
    started_ns: int
    returncode: int | None
    pid: int
    kernel_text: str = ""
    kernel_off: str = ""
    notes: list[str] = field(default_factory=list)
    python: str = ""
    frameless: bool = True
    signum: int = 0
    guarded: bool = False  # the program ran as a less privileged user than the capture (see core.admission)
    links: tuple[str, ...] = ()  # a capture on several links: each link's name, by the frames' `ifaces` ids
    network: dict[str, Any] = field(default_factory=dict)  # the network lab the program ran in, as recorded


class Interrupted(Exception):
    """The run was interrupted (SIGINT/SIGTERM); `recording` holds what was recorded until then."""

    def __init__(self, recording: Recording, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.recording = recording
        self.signum = signum


@dataclass(frozen=True)
class PythonInfo:
    version: tuple[int, int, int]
    ext_suffix: str
    free_threaded: bool


def python_info(python: str, user: tuple[int, int] | None = None) -> PythonInfo:
    """What the interpreter that will run the program is (asked of it, as the user who will run it)."""
    if os.path.realpath(shutil.which(python) or python) == os.path.realpath(sys.executable):
        import sysconfig

        return PythonInfo(tuple(sys.version_info[:3]), str(sysconfig.get_config_var("EXT_SUFFIX") or ""),  # type: ignore[arg-type]
                          bool(sysconfig.get_config_var("Py_GIL_DISABLED")))
    code = ("import sys, sysconfig, json; print(json.dumps([list(sys.version_info[:3]), "
            "sysconfig.get_config_var('EXT_SUFFIX') or '', bool(sysconfig.get_config_var('Py_GIL_DISABLED'))]))")
    try:
        done = subprocess.run([python, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL, **as_user(user))
        version, suffix, free = json.loads(done.stdout)
        return PythonInfo((int(version[0]), int(version[1]), int(version[2])), str(suffix), bool(free))
    except (OSError, ValueError, TypeError, IndexError, subprocess.TimeoutExpired):
        raise ProgramError(f"{python} is not a Python interpreter wirestack can ask its version; wirestack's probe "
                           f"runs in Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} to 3.13: choose another with --python"
                           ) from None


class Hook:
    """A private folder for one run: the start-up hook (`sitecustomize` and the probe package) and the records
    socket. Created by wirestack, readable by the program's user, removed afterwards."""

    def __init__(self, user: tuple[int, int] | None, info: PythonInfo) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="wirestack-"))
        self.hook = self.folder / "hook"
        package = self.hook / "_wirestack_probe"
        package.mkdir(parents=True)
        _copy_probe(package, info)
        (package / "__init__.py").write_text("")
        from .bootstrap import SITECUSTOMIZE

        (self.hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.frameless = False
        fast = _fastpath_for(info)
        if fast is not None:
            shutil.copyfile(fast, package / ("_fastpath" + info.ext_suffix))
            self.frameless = True
        self.socket_path = str(self.folder / "records")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(self.socket_path)
        self.listener.listen(64)
        os.chmod(self.folder, 0o711)  # the program's user may reach the socket by its name, not list the folder
        for path in [self.hook, package, *self.hook.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if user is not None:
            os.chown(self.socket_path, *user)
        os.chmod(self.socket_path, 0o600)

    def remove(self) -> None:
        self.listener.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _copy_probe(package: Path, info: PythonInfo) -> None:
    """The probe's modules, with their compiled copies where wirestack's install has them (a fresh folder has no
    `__pycache__`: each run compiled the probe again, 20 ms of the program's start). The sources keep their
    mtime, so the copies stay valid for the interpreter that checks them; one that finds none compiles them."""
    cache = PACKAGE_DIR / "__pycache__"
    own = tuple(info.version[:2]) == tuple(sys.version_info[:2]) and not sys.dont_write_bytecode
    for name in PROBE_MODULES:
        source = PACKAGE_DIR / f"{name}.py"
        shutil.copy2(source, package / source.name)
        if own:  # as importing it would: compiled once into wirestack's own cache, if that can be written
            compiled = Path(importlib.util.cache_from_source(str(source)))
            if not compiled.is_file():
                try:
                    py_compile.compile(str(source), cfile=str(compiled), doraise=True)
                except (OSError, py_compile.PyCompileError):
                    pass
    if not cache.is_dir():
        return
    into = package / "__pycache__"
    for name in PROBE_MODULES:
        for compiled in cache.glob(f"{name}.*.pyc"):
            into.mkdir(exist_ok=True)
            shutil.copyfile(compiled, into / compiled.name)


def _fastpath_for(info: PythonInfo) -> str | None:
    """The C twin built for this interpreter's ABI, if any (it is built for wirestack's own); never for a
    free-threaded build (its tables rely on the GIL: the pure-Python probe runs there)."""
    if info.free_threaded or os.environ.get("WIRESTACK_PURE_PROBE"):
        return None
    candidate = PACKAGE_DIR / ("_fastpath" + info.ext_suffix)
    return str(candidate) if info.ext_suffix and candidate.is_file() else None


MAX_CALLS = 1_000_000  # the default cap on calls kept (about 1 KB each in memory)
MAX_RECORD_BYTES = 1 << 31  # what the program may send in all; beyond, its records are cut (and a note says so)


class Reader(threading.Thread):
    """Reads every traced process's messages from the records socket into a Loader, while the program runs.
    Each message is checked: unmarshalled with a size cap, a list of items, each validated by the Loader."""

    def __init__(self, hook: Hook) -> None:
        super().__init__(name="wirestack-records", daemon=True)
        self.hook = hook
        self.loader = Loader()
        self.received = 0
        self.bad_messages = 0
        self.cut = False
        self._finishing = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._conns: list[socket.socket] = []

    def run(self) -> None:
        listener = self.hook.listener
        while True:
            fds: list[Any] = [listener, *self._conns, self._wake_r]
            ready, _, _ = select.select(fds, [], [], 0.2)
            if listener in ready:
                try:
                    conn, _ = listener.accept()
                    conn.setblocking(False)
                    self._conns.append(conn)
                except OSError:
                    pass
            got = False
            for conn in [c for c in self._conns if c in ready]:
                got |= self._read(conn)
            if self._finishing.is_set() and not got:
                return

    def _read(self, conn: socket.socket) -> bool:
        got = False
        while True:
            try:
                data = conn.recv(layout.MAX_MESSAGE + 1)
            except BlockingIOError:
                return got
            except OSError:
                data = b""
            if not data:
                conn.close()
                self._conns.remove(conn)
                return got
            got = True
            self.received += len(data)
            if self.received > MAX_RECORD_BYTES:
                self.cut = True
                continue
            if len(data) > layout.MAX_MESSAGE:
                self.bad_messages += 1
                continue
            try:
                batch = marshal.loads(data)
            except (EOFError, ValueError, TypeError):
                self.bad_messages += 1
                continue
            if not isinstance(batch, list):
                self.bad_messages += 1
                continue
            self.loader.feed(batch)

    def finish(self, timeout: float = 5.0) -> Loader:
        """Read what is still queued (every process has exited or been killed), then stop."""
        self._finishing.set()
        os.write(self._wake_w, b"x")
        self.join(timeout)
        for conn in self._conns:
            conn.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        return self.loader


def run_traced(client: Client, interface: str = "lo", timeout: float | None = 120.0,
               on_frame: OnFrame | None = None, user: tuple[int, int] | None = None, kernel: bool = True,
               snaplen: int = SNAPLEN, max_packets: int = MAX_PACKETS, source: str | FrameSource = "auto",
               spool: Spool | None = None, max_calls: int = MAX_CALLS,
               warm: Callable[[], None] | None = None) -> Recording:
    """Capture on `interface` while `client` runs under the probe; return everything recorded.
    `on_frame(time_ns, raw)` is called for each frame as it is captured (live progress; all traffic on the
    interface, so filter before showing). `user` (uid, gid): run the client as that user. Raises
    `Interrupted` (holding the recording) when SIGINT/SIGTERM stopped it. `spool`: the frames also go to disk
    as they are read (see `spool`). `warm()`: run in a thread of its own while the program does (the imports
    the analysis needs), done before this returns."""
    info = python_info(client.python, user)
    if info.version[:2] < MIN_PYTHON:
        shown = ".".join(map(str, info.version))
        raise ProgramError(f"{client.python} is Python {shown}; wirestack's probe runs in Python "
                           f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} to 3.13: choose another with --python")
    defer_signals()  # setting up: an interruption now is acted on once the client has started
    # source: a backend's name (see record.source.WANTS), or a FrameSource itself (testing.fakes.FakeSource)
    capture = (choose_source(interface, source, snaplen, max_packets) if isinstance(source, str) else source).open()
    if spool is not None:
        spool.start(capture.linktype, snaplen, interface)
    recorder, kernel_off = None, "kernel layer off: --no-kernel"
    if kernel:
        try:
            recorder = tracefs.Recorder.start(client.python)
        except tracefs.KernelOff as exc:
            kernel_off = str(exc)
    kernel_text, kernel_notes = "", list[str]()
    started = time.time_ns()
    signum, returncode, timed_out, pid = 0, None, False, 0
    hook = Hook(user, info)
    reader = Reader(hook)
    reader.loader.max_calls = max_calls
    reader.start()
    reaper = Reaper()
    left: set[int] = set()
    warming: threading.Thread | None = None
    try:
        try:
            pause_for_tests("setup")
            child = _spawn(client, hook, user)
            pid = child.pid
            if warm is not None:
                warming = threading.Thread(target=_quietly, args=(warm,), name="wirestack-warm", daemon=True)
                warming.start()
            try:
                if deferred_signal():
                    raise Stop(_deferred.pop())
                stop_on_signals()
                timed_out = _pump(capture, child, timeout, on_frame, spool)
                defer_signals()
            except (KeyboardInterrupt, Stop) as stop:
                defer_signals()  # a second Ctrl-C must not lose the capture
                _deferred.clear()
                signum = stop.signum if isinstance(stop, Stop) else signal.SIGINT
                _end_child(child)
            returncode = child.poll()
            left = reaper.left(pid)
            if left and (signum or timed_out):  # a stopped run ends all of the program's processes
                reaper.end(left)
            pause_for_tests("drain")
            capture.stop()
            if spool is not None:
                spool.add(capture.frames)
        finally:
            capture.close()
            if recorder is not None:
                try:
                    kernel_text, kernel_notes = recorder.stop()
                except tracefs.KernelOff as exc:
                    recorder, kernel_off = None, str(exc)
        loader = reader.finish()
    finally:
        reaper.close()
        hook.remove()
        if warming is not None:
            warming.join()  # imports are not left running in a thread when the caller goes on
    notes = list(kernel_notes)
    if left:
        shown = ", ".join(map(str, sorted(left)[:10])) + (", ..." if len(left) > 10 else "")
        many = len(left) > 1
        notes.append(f"{len(left)} process{'es' if many else ''} the program started (pid {shown}) "
                     f"{'were' if many else 'was'} still running when it ended: "
                     + ("wirestack ended them with it" if signum or timed_out else
                        "left running, as under python; their packets after this point are not recorded"))
    error = next((r.get("text") for r in loader.other if r.get("kind") == "error"), None)
    if isinstance(error, str) and error:
        raise ProgramError(error[:300])
    if timed_out:
        notes.append(f"the client was stopped after {timeout:g} s")
    if capture.over:
        notes.append(f"the capture kept the first {capture.max_packets} frames (--max-packets) and counted "
                     f"{capture.over} more without keeping them: packets after that point are missing from the "
                     "report and the file")
    if loader.over:
        notes.append(f"the run kept its first {max_calls:,} calls (--max-calls) and counted {loader.over:,} more "
                     "without keeping them: calls after that point are missing from the report, and their packets "
                     "are left out")
    if reader.cut:
        notes.append(f"the traced program sent more than {MAX_RECORD_BYTES >> 20} MiB of records: the rest were "
                     "not read, and calls after that point are missing")
    if reader.bad_messages or loader.bad:
        notes.append(f"{reader.bad_messages + loader.bad} records from the traced program did not have the form "
                     "the probe writes and were left out")
    if not hook.frameless:
        notes.append("the probe ran in pure Python (no C twin for this interpreter): the program's tracebacks "
                     "show one frame of it, `<wirestack probe>`")
    recording = Recording(client, interface, capture.frames, capture.linktype, len(capture.frames) + capture.over,
                          capture.dropped,
                          loader, started, returncode, pid, kernel_text, "" if recorder else kernel_off, notes,
                          ".".join(map(str, info.version)), hook.frameless, signum, user is not None)
    if signum:
        raise Interrupted(recording, signum)
    return recording


def _quietly(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - the main thread meets the same error where it needs what failed
        pass


def _spawn(client: Client, hook: Hook, user: tuple[int, int] | None) -> subprocess.Popen[bytes]:
    kwargs: dict[str, Any] = as_user(user)
    env = dict(kwargs.pop("env", None) or os.environ)
    if client.mode == "source":
        spec = {"records": hook.socket_path, "source": client.source, "filename": client.filename}
        argv = [*client.prefix, client.python, "-I", "-S", "-c", BOOT, str(hook.hook), json.dumps(spec)]
        stdin: Any = subprocess.DEVNULL
    else:
        head = {"script": [], "module": ["-m"], "command": ["-c"]}[client.mode]
        argv = [*client.prefix, client.python, *head, client.target, *client.args]
        env["PYTHONPATH"] = os.pathsep.join([str(hook.hook), *([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                                                else [])])
        env["WIRESTACK_RECORDS"] = hook.socket_path
        stdin = None
    try:
        return subprocess.Popen(argv, stdin=stdin, env=env, **kwargs)
    except PermissionError:
        who = f"user {user[0]}" if user else "this user"
        raise ProgramError(f"{who} cannot run {client.python}: install wirestack where that user can read it, "
                           "or use --as-root") from None
    except OSError as exc:
        raise ProgramError(f"cannot start {client.python}: {exc.strerror}") from None


def as_user(user: tuple[int, int] | None) -> dict[str, Any]:
    if user is None:
        return {}
    return {"user": user[0], "group": user[1], "extra_groups": _groups(user), "env": _user_env(user[0])}


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


SPOOL_EVERY = 1.0  # seconds between reads of the capture while the program runs, at most (see _pump)


def _pump(capture: FrameSource, child: subprocess.Popen[bytes], timeout: float | None,
          on_frame: OnFrame | None = None, spool: Spool | None = None) -> bool:
    """Capture while the child runs; True if it had to be stopped at the deadline."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = time.monotonic()
    with _Exit(child) as exited:
        return _pump_until(exited, capture, child, deadline, last, on_frame, spool)


class _Exit:
    """Waits for the child's exit: at once through a pidfd (Linux 5.3+), where subprocess's own wait with a
    timeout polls (up to 50 ms late: the whole command waited for it)."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        self.child = child
        self.fd = -1

    def __enter__(self) -> _Exit:
        try:
            self.fd = os.pidfd_open(self.child.pid)
        except (AttributeError, OSError):
            self.fd = -1
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)

    def wait(self, seconds: float) -> bool:
        """True once the child has exited (and is reaped), within `seconds`."""
        if self.fd >= 0:
            select.select([self.fd], [], [], seconds)
            return self.child.poll() is not None
        try:
            self.child.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False


def _pump_until(exited: _Exit, capture: FrameSource, child: subprocess.Popen[bytes], deadline: float | None,
                last: float, on_frame: OnFrame | None, spool: Spool | None) -> bool:
    while True:
        # The kernel queues frames for us (64 MiB): reading them while the program runs takes CPU from it (on 2
        # cores a 106,000-packet burst ran 1.0 s with reads every 50 ms, 0.55 s with reads deferred). So look
        # every 50 ms, but read only when the queue is a quarter full, a second has passed (so the spool on disk
        # is at most a second behind), or frames are shown live; the rest is read when the program is done
        # (capture.stop drains to the marker).
        if exited.wait(0.05):
            return False
        now = time.monotonic()
        if on_frame is None and capture.fill() < 0.25 and (spool is None or now - last < SPOOL_EVERY):
            if deadline is not None and now > deadline:
                _end_child(child)
                return True
            continue
        last = now
        seen = len(capture.frames)
        capture.pump()
        if spool is not None:
            spool.add(capture.frames)
        if on_frame is not None:
            for i in range(seen, len(capture.frames)):
                on_frame(capture.frames.times[i], capture.frames.data[i])
        if deadline is not None and time.monotonic() > deadline:
            _end_child(child)
            return True


def end_process(child: subprocess.Popen[bytes], first: int = signal.SIGINT) -> None:
    """Stop a child with `first` (SIGINT: the way a terminal would; it raises KeyboardInterrupt and the probe
    writes what it holds), then SIGTERM, then SIGKILL, each after a wait, until it is gone."""
    for sig, wait in ((first, 2.0), (signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
        if child.poll() is not None:
            return
        child.send_signal(sig)
        try:
            child.wait(wait)
        except subprocess.TimeoutExpired:
            continue


def _end_child(child: subprocess.Popen[bytes]) -> None:
    end_process(child)


