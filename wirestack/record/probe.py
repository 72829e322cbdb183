"""The probe: records the socket calls of the program it runs in, with their Python stacks.

It runs *inside* the traced program (installed by `bootstrap` before the program starts) and must stay cheap: a
call costs two `time_ns()`, a walk up the stack keeping `(tag, code, line)` per frame (once per place: the
stack is kept in the frame), and a tuple appended to a list. Everything else (file names, source lines, socket
families) is described once (see `items`), and batches are `marshal`led.

Rules:
- The program sees no difference. Wrappers call the original C methods and re-raise exactly what they raised.
  Where the C twin (`_fastpath.c`) is built for this interpreter, every wrapper is a C object: the program's
  tracebacks gain no frame of wirestack's. Without it the wrappers are Python functions, and a traceback shows
  one frame of the probe (`<wirestack probe>`); the report says so.
- The probe never calls a wrapped method itself (it uses `_socket.socket`'s originals), so it cannot recurse.
- Frame identity: a traceback holds the frame objects that were live when it was raised, and a call's stack
  held frames too; "this call happened below that traceback frame" means they share a frame *object*, not
  just a function (a retry loop calls the same function many times). Frames cannot be weak-referenced and
  holding them would keep their locals (sockets!) alive, so the probe tags each frame it walks through by
  storing a small `_Tag` in `frame.f_trace`, which CPython consults only while `sys.settrace` is active.
  When a tracer is active (a debugger, coverage) the probe leaves `f_trace` alone and falls back to
  `id(frame)`, which can confuse two runs of one function.
- Exception identity: the call that raised an exception marks the exception object (`_wirestack_call`), so
  the traceback that escapes later can name the very call it came from, even after re-raises and chaining.
- Errors are named in their own namespace (`fault_of`): a kernel errno, an OpenSSL error, a resolver EAI code,
  a Python timeout; never one for the other.
- Source lines are read here, by the traced process, as the user it runs as; wirestack opens none of its files.

It is one file on purpose: it is handed whole, as source, to the traced interpreter (which may not be able to import
wirestack), and its C twin mirrors it.
"""

from __future__ import annotations

import _socket
import itertools
import linecache
import marshal
import os
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from . import items as _items

try:  # the optional C twin (setup.py builds it where a compiler is); in a traced program, handed over by
    # runner.Hook when the program runs on the interpreter it was built for. Never on a free-threaded build
    # running without the GIL: its tables rely on the GIL (importing it there would turn the GIL back on, with a
    # RuntimeWarning that -W error makes an exception): the pure-Python probe runs there.
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        raise ImportError("free-threaded build: the probe runs in pure Python")
    from . import _fastpath
except Exception:  # ImportError, or a warning turned into an error
    _fastpath = None  # type: ignore[assignment]

_time_ns = time.time_ns
_getframe = sys._getframe
_current_thread = threading.current_thread
_get_ident = threading.get_ident
_native_id = threading.get_native_id
_threads: dict[int, Any] = getattr(threading, "_active", {})  # ident -> Thread (CPython's own map; `_name` read)
_FAMILY = _socket.socket.family.__get__  # the plain ints, without socket.py's enum conversion (~1 µs each)
_TYPE = _socket.socket.type.__get__
_ORIG_GETSOCKNAME = _socket.socket.getsockname
_ORIG_GETPEERNAME = _socket.socket.getpeername
_ORIG_GETTIMEOUT = _socket.socket.gettimeout
_ORIG_FILENO = _socket.socket.fileno

# pytest leaves frames whose globals (or locals) hold this out of its tracebacks: the Python wrappers are
# invisible there too, as they are in wirestack's own reports.
__tracebackhide__ = True

EXC_ATTR = "_wirestack_call"
# the probe's own code, as a module file and as the source wirestack hands to a traced program
PROBE_FILES = frozenset({__file__, "<wirestack probe>", "<wirestack items>", "<wirestack bootstrap>",
                         os.path.join(os.path.dirname(__file__), "probe.py")})
_WAITS = {11, 115, 114}  # EAGAIN, EINPROGRESS, EALREADY: a non-blocking socket waiting, not failing
FLUSH_NS = 50_000_000  # records reach wirestack within 50 ms of a call, or 512 calls, whichever comes first
FAILED_NS = 1_000_000  # a failure is flushed at once unless another one was within this (1 ms)
_CONNECTS = ("connect", "connect_ex")
_SEND, _SENDTO, _RECV, _RECVFROM = range(4)  # the kinds of `_fastpath.wrap`
_RECORDED_OPTIONS = {  # setsockopt options worth telling (they change what the wire shows); the rest pass by
    (socket.SOL_SOCKET, socket.SO_LINGER): "SO_LINGER", (socket.SOL_SOCKET, socket.SO_RCVBUF): "SO_RCVBUF",
    (socket.SOL_SOCKET, socket.SO_SNDBUF): "SO_SNDBUF", (socket.SOL_SOCKET, socket.SO_KEEPALIVE): "SO_KEEPALIVE",
    (socket.IPPROTO_TCP, socket.TCP_NODELAY): "TCP_NODELAY",
}
if hasattr(socket, "IP_TTL"):
    _RECORDED_OPTIONS[(socket.IPPROTO_IP, socket.IP_TTL)] = "IP_TTL"


class _Tag:
    """A frame's identity, parked in `frame.f_trace`. Callable so that a tracer turned on later does not crash:
    it hands the event on to the tracer that is active now."""

    __slots__ = ("n", "stacks")

    def __init__(self, n: int) -> None:
        self.n = n
        self.stacks: dict[int, Stack] | None = None  # f_lasti -> the stack of a call made there (see _stack)

    def __call__(self, frame: FrameType, event: str, arg: Any) -> Any:
        tracer: Any = sys.gettrace()
        return tracer(frame, event, arg) if tracer is not None else None


RawStack = list[tuple[int, CodeType, int]]  # (frame instance, code, line), innermost first
Stack = tuple[tuple[int, int, int], ...]  # as sent: (frame instance, code id, line), outermost first
_SUSPENDABLE = 0x20 | 0x80 | 0x200  # CO_GENERATOR, CO_COROUTINE, CO_ASYNC_GENERATOR: their caller changes
Done = Callable[..., None]  # done(result, args, kwargs, start, end) after a call that returned
Failed = Callable[..., None]  # failed(exc, args, kwargs, start, end) after a call that raised


class Probe:
    def __init__(self, sink: Callable[[list[Any]], None], batch: int = 512) -> None:
        self._sink = sink
        self._batch = batch
        self._pending: list[Any] = []
        self._ids = itertools.count(1)
        self._tags = itertools.count(1)
        self._serials = itertools.count(1)
        # per live socket object, by id: [serial, family, type, local address once bound (datagram calls),
        # connect failed for good, a weak reference whose callback drops the entry when the socket is collected
        # (so ids are never confused), (local, remote) as last learned, closed]. A plain dict lookup is ~10x
        # cheaper than a WeakKeyDictionary's.
        self._sockets: dict[int, list[Any]] = {}
        self._names: dict[tuple[int, int], str] = {}  # (0 family | 1 type, number) -> "AF_INET", "SOCK_STREAM"
        self._failed = 0  # when a failure was last flushed at once (see record)
        self._codes: dict[int, CodeType] = {}  # code objects already described to wirestack (kept alive: ids stay)
        self._lines: set[tuple[int, int]] = set()  # (code id, line) whose source line was sent
        self._hidden_files: set[str] = {__file__}
        self._hidden_tags: set[int] = set()  # the runner's own frames (wirestack's bootstrap)
        self._lock = threading.Lock()
        self._saved: list[tuple[Any, str, Any]] = []
        self._unseen: set[str] = set()  # runtimes already named in a note
        self.pid = os.getpid()
        self._flushed = _time_ns()
        self.frameless = _fastpath is not None and not os.environ.get("WIRESTACK_PURE_PROBE")

    def after_fork(self) -> None:
        """In a forked child: keep recording, under the child's pid, with ids that cannot clash."""
        parent, self.pid = self.pid, os.getpid()
        self._pending.clear()  # the parent's, which the parent sends itself (the wrappers hold this list)
        self._lock = threading.Lock()
        base = self.pid << 32
        self._ids, self._tags, self._serials = (itertools.count(base + 1) for _ in range(3))
        self._pending.append({"kind": "process", "pid": self.pid, "parent": parent, "how": "fork", "argv": []})

    # -- stacks and identities -------------------------------------------------------------------------------

    def hide_frames(self, frame: FrameType | None) -> None:
        """`frame` and its callers are wirestack's runner, not the program: leave them out of stacks."""
        while frame is not None:
            self._hidden_tags.add(self.frame_tag(frame))
            frame = frame.f_back

    def hide_files(self, *files: str) -> None:
        """Outer frames from these files (runpy) are the runner's too."""
        self._hidden_files.update(files)

    def is_hidden(self, frame: FrameType) -> bool:
        name = frame.f_code.co_filename
        return name in self._hidden_files or name in PROBE_FILES or self.frame_tag(frame) in self._hidden_tags

    def frame_tag(self, frame: FrameType) -> int:
        tag = frame.f_trace
        if type(tag) is _Tag:
            return tag.n
        if tag is None and sys.gettrace() is None:
            new = _Tag(next(self._tags))
            frame.f_trace = new
            return new.n
        return -id(frame)  # a tracer owns f_trace: fall back to the address (negative, so it never clashes)

    def _stack(self, frame: FrameType | None) -> Stack:
        """The stack from `frame` (the program's frame that made the call) outwards, as sent (outermost first).
        Walked once per place: a frame that calls from the same instruction again has the same callers (while
        it runs, they wait where they are), so each walked frame keeps, in its own tag, its stack by
        instruction, and a later walk stops at the first frame that knows its stack from there. Generators and
        coroutines keep none: their caller changes between resumptions. Kept stacks die with their frames and
        never go stale."""
        tags, files = self._hidden_tags, self._hidden_files
        walked: RawStack = []
        marks: list[tuple[_Tag, int] | None] = []  # per walked frame: (its tag, instruction) if it may keep
        tail: Stack = ()
        while frame is not None:
            code = frame.f_code
            if code.co_filename in PROBE_FILES:  # another probe's wrapper (a traced program that traces too)
                frame = frame.f_back
                continue
            if code.co_filename in files:  # the runner (and runpy): everything further out is theirs too
                break
            mark = frame.f_trace
            if type(mark) is _Tag:
                if mark.stacks is not None:
                    known = mark.stacks.get(frame.f_lasti)
                    if known is not None:
                        tail = known
                        break
                tag = mark.n
            else:
                tag = self.frame_tag(frame)
                mark = frame.f_trace  # tagged now, unless a tracer owns f_trace
            if tag in tags:
                break
            walked.append((tag, code, frame.f_lineno))
            marks.append((mark, frame.f_lasti) if type(mark) is _Tag and not code.co_flags & _SUSPENDABLE
                         else None)
            frame = frame.f_back
        out = tail + self._sent(walked)
        n = len(out)
        for i, keep in enumerate(marks):  # walked frame i (0 innermost) has the stack without the i below it
            if keep is not None and n:
                if keep[0].stacks is None:
                    keep[0].stacks = {}
                keep[0].stacks[keep[1]] = out[: n - i] if i else out
        return out

    def _sent(self, stack: RawStack) -> Stack:
        """A walked stack as sent: outermost first, codes by id. A code (and each of its source lines) is
        described in the pending items before it is marked known, so any call naming it comes after."""
        codes, lines, pending, out = self._codes, self._lines, self._pending, []
        for tag, code, line in reversed(stack):
            key = id(code)
            if key not in codes:
                pending.append(("code", key, code.co_filename, code.co_name))
                codes[key] = code  # kept alive, so its id stays its own
            if (key, line) not in lines:
                lines.add((key, line))
                pending.append(("line", key, line, _source(code.co_filename, line)))
            out.append((tag, key, line))
        return tuple(out)

    def serial(self, sock: Any) -> int:
        return int(self._socket(sock)[0])

    def _socket(self, sock: Any) -> list[Any]:
        """What the probe keeps of a socket object (see `_sockets`), computed once."""
        key = id(sock)
        known = self._sockets.get(key)
        if known is None:
            sockets = self._sockets

            def gone(_: Any) -> None:
                sockets.pop(key, None)

            known = sockets[key] = [next(self._serials), self._name(0, _FAMILY(sock)), self._name(1, _TYPE(sock)),
                                    None, False, weakref.ref(sock, gone), None, False]
            self._pending.append(("socket", known[0], known[1], known[2]))  # what "data" items leave out
        return known

    def _name(self, which: int, number: int) -> str:
        name = self._names.get((which, number))
        if name is None:
            try:
                value: Any = (socket.AddressFamily if which == 0 else socket.SocketKind)(number)
            except ValueError:
                value = number
            name = self._names[(which, number)] = _enum_name(value)
        return name

    # -- recording -------------------------------------------------------------------------------------------

    def record(self, op: str, sock: Any, start: int, end: int, frame: FrameType | None, *,
               exc: BaseException | None = None, local: Any = None, remote: Any = None,
               args: dict[str, Any] | None = None, result: Any = None) -> int:
        """Record one call made from `frame` (the program's frame); `exc`: what it raised."""
        cid = next(self._ids)
        fault = None
        if exc is not None:
            fault = fault_of(exc)
            try:
                setattr(exc, EXC_ATTR, cid)
            except Exception:
                pass
        serial = 0
        if sock is not None:
            info = self._socket(sock)
            serial = info[0]
            if op in _CONNECTS:  # failed for good: not connected (close need not ask for a peer)
                code = fault[3] if fault is not None else (result if op == "connect_ex" else 0)
                info[4] = bool(code) and code not in _WAITS
            if local is not None or remote is not None:
                known = info[6] or (None, None)
                info[6] = (local if local is not None else known[0],
                           None if info[4] else remote if remote is not None else known[1])
        stack: Stack | None = None
        if frame is not None:
            mark = frame.f_trace
            if type(mark) is _Tag and mark.stacks is not None:
                stack = mark.stacks.get(frame.f_lasti)
        if stack is None:
            stack = self._stack(frame)
        thread = _threads.get(_get_ident())
        item = ("call", cid, op, thread._name if thread is not None else _current_thread().name, _native_id(),
                start, end, stack, serial, fault, local, remote, args or {}, result, self.pid)
        pending = self._pending
        pending.append(item)
        # A failure is flushed at once (the program may be killed next), unless one was a moment ago (a storm of
        # failures rides with the batch, flushed within FLUSH_NS); the waits of non-blocking sockets (EAGAIN,
        # EINPROGRESS) are not failures and ride with the batch too.
        if len(pending) >= self._batch or end - self._flushed > FLUSH_NS:
            self.flush()
        elif fault is not None and fault[3] not in _WAITS and end - self._failed > FAILED_NS:
            self._failed = end
            self.flush()
        return cid

    def _note(self, op: str, sock: Any, start: int, end: int, n: int, result: Any, where: int = 0,
              remote: Any = None, depth: int = 2) -> None:
        """`record` for the calls that move data and succeeded (the hot path: loops of sends and receives),
        called by the wrapper itself. `n`: the byte count or buffer size; `where`: 1 for a datagram call, whose
        remote address is `remote` and whose local address, once known, is described once ("local") and left
        out of the item. The item is a "data" one (see `items.DATA`). `depth`: 2 from a Python wrapper, 1 from
        the C one (`_fastpath`, which has no frame), which calls this only for what it does not know yet."""
        info = self._sockets.get(id(sock))
        if info is None:
            info = self._socket(sock)
        if where and info[3] is None:
            self._ends(sock, None, "cached")
        frame = _getframe(depth)
        mark, stack = frame.f_trace, None
        if type(mark) is _Tag and mark.stacks is not None:
            stack = mark.stacks.get(frame.f_lasti)
        if stack is None:
            stack = self._stack(frame)
        thread = _threads.get(_get_ident())
        pending = self._pending
        pending.append(("data", next(self._ids), op, thread._name if thread is not None else _current_thread().name,
                        _native_id(), start, end, stack, info[0], n, result, remote, self.pid))
        if len(pending) >= self._batch or end - self._flushed > FLUSH_NS:
            self.flush()

    def flush(self) -> None:
        """Hand the pending items to the sink (layouts: see `items`)."""
        self._flushed = _time_ns()
        with self._lock:
            # Copy, then cut what was copied: a thread appending meanwhile appends to the same list, so nothing
            # is lost between the two (each is one step under the GIL).
            whole = self._pending
            batch = whole[:]
            del whole[: len(batch)]
            if batch:
                self._sink(batch)

    # -- installing ------------------------------------------------------------------------------------------

    def install(self) -> None:
        cls = socket.socket
        for name in ("connect", "connect_ex", "send", "sendall", "sendto", "sendmsg", "recv", "recv_into",
                     "recvfrom", "recvfrom_into", "recvmsg", "shutdown", "getsockopt", "setsockopt", "accept",
                     "bind", "listen", "_real_close", "__init__"):
            self._patch(cls, name, getattr(self, "_w_" + name.strip("_"))(getattr(cls, name)))
        self._patch(socket, "getaddrinfo", self._w_getaddrinfo(socket.getaddrinfo))
        self._finders = [_when_imported("ssl", self._patch_ssl), _when_imported("subprocess", self._patch_subprocess),
                         _when_imported("gevent._socket3", self._patch_gevent),
                         _when_imported("gevent._socketcommon", self._patch_gevent_resolver),
                         *(_when_imported(name, self._unseen_runtime) for name in UNSEEN_RUNTIMES)]
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self.after_fork)
        self._patch(os, "_exit", self._w_exit(os._exit))

    def uninstall(self) -> None:
        for finder in getattr(self, "_finders", ()):
            if finder in sys.meta_path:
                sys.meta_path.remove(finder)
        for owner, name, orig in reversed(self._saved):
            setattr(owner, name, orig)
        self._saved.clear()

    def _patch(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        self._saved.append((owner, name, owner.__dict__.get(name, getattr(owner, name))))
        setattr(owner, name, wrapper)

    def _w_exit(self, orig: Callable[[int], Any]) -> Callable[[int], Any]:
        probe = self

        def _exit(code: int) -> Any:  # forked children (multiprocessing too) leave through os._exit: no atexit
            try:
                probe.flush()
            except Exception:
                pass
            return orig(code)

        return _exit

    # Every wrapper has one shape: time the original, then `done(result, args, kwargs, start, end)` or
    # `failed(exc, args, kwargs, start, end)` records it, and the result or the very exception goes back. The
    # C twin makes that shape without a Python frame (`_fastpath.shim`); the Python fallback is `_python_shim`.

    def _shim(self, orig: Callable[..., Any], op: str, done: Callable[[int], Done],
              failed: Callable[[int], Failed]) -> Callable[..., Any]:
        """`done(depth)`/`failed(depth)` build the callbacks: `depth` is how far up the program's frame is."""
        if self.frameless:
            return _named(_fastpath.shim(orig, done(1), failed(1)), orig, op)
        return _named(_python_shim(orig, done(2), failed(2)), orig, op)

    def _simple(self, op: str, orig: Callable[..., Any], *, args_of: Callable[..., dict[str, Any]],
                result_of: Callable[[Any], Any] = lambda r: r, addresses: bool | str = False,
                remote_of: Callable[[tuple[Any, ...], Any], Any] | None = None) -> Callable[..., Any]:
        """A method of a socket (args[0]) recorded with what `args_of(*args[1:], **kw)` tells of its arguments
        and `result_of(result)` of what it returned; `addresses`: ask the socket's ends after the call."""
        probe = self

        def done(depth: int) -> Done:
            def done(r: Any, a: tuple[Any, ...], kw: dict[str, Any] | None, start: int, end: int) -> None:
                sock = a[0]
                local, remote = probe._ends(sock, remote_of(a, r) if remote_of else None, addresses)
                probe.record(op, sock, start, end, _getframe(depth), local=local, remote=remote,
                             args=_args(args_of, a[1:], kw), result=result_of(r))

            return done

        def failed(depth: int) -> Failed:
            def failed(exc: BaseException, a: tuple[Any, ...], kw: dict[str, Any] | None, start: int,
                       end: int) -> None:
                sock = a[0]
                local, remote = probe._ends(sock, remote_of(a, None) if remote_of else None, addresses)
                args = _args(args_of, a[1:], kw)
                args["timeout"] = _timeout(sock)
                probe.record(op, sock, start, end, _getframe(depth), exc=exc, local=local, remote=remote, args=args)

            return failed

        return self._shim(orig, op, done, failed)

    def _ends(self, sock: Any, remote: Any, addresses: bool | str) -> tuple[Any, Any]:
        """The socket's local and remote address, where the call could have changed or revealed them.
        addresses="cached": a datagram call, whose local address, once bound, does not change (asking the
        kernel every time would cost a syscall per datagram)."""
        if not addresses:
            return None, None
        known = self._socket(sock) if addresses == "cached" else None
        local = known[3] if known is not None else None
        if local is None:
            try:
                local = _ORIG_GETSOCKNAME(sock)
            except OSError:
                local = None
            if known is not None and isinstance(local, tuple) and len(local) >= 2 and local[1]:
                known[3] = local
                self._pending.append(("local", known[0], local))
        if remote is None:
            try:
                remote = _ORIG_GETPEERNAME(sock)
            except OSError:
                remote = None
        return local, remote

    def _w_connect(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        probe = self

        def done(depth: int) -> Done:
            def done(r: Any, a: tuple[Any, ...], kw: dict[str, Any] | None, start: int, end: int) -> None:
                sock = a[0]
                address = a[1] if len(a) > 1 else (kw or {}).get("address")
                local, remote = probe._ends(sock, address, True)
                probe.record("connect", sock, start, end, _getframe(depth), local=local, remote=remote,
                             args={"address": address, "timeout": _timeout(sock)})

            return done

        def failed(depth: int) -> Failed:
            def failed(exc: BaseException, a: tuple[Any, ...], kw: dict[str, Any] | None, start: int,
                       end: int) -> None:
                sock = a[0]
                address = a[1] if len(a) > 1 else (kw or {}).get("address")
                local, remote = probe._ends(sock, address, True)
                probe.record("connect", sock, start, end, _getframe(depth), exc=exc, local=local, remote=remote,
                             args={"address": address, "timeout": _timeout(sock)})

            return failed

        return self._shim(orig, "connect", done, failed)

    def _w_connect_ex(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._simple("connect_ex", orig, args_of=lambda addr: {"address": addr}, addresses=True,
                            remote_of=lambda a, r: a[1] if len(a) > 1 else None)

    # The calls that move data run in loops: their wrappers take the short way (`_note`) when they succeed.

    def _moving(self, kind: int, op: str, orig: Callable[..., Any],
                failed: Callable[[int], Callable[..., Any]]) -> Callable[..., Any]:
        """send/sendall (data, flags), sendto (data, [flags,] address), recv (bufsize, flags) and recvfrom
        (bufsize, flags), which returns (data, address). `failed(depth)`: the slow way for a call that raised.
        The Python wrapper, or its C twin (`_fastpath.c`: the same items, built without the interpreter for the
        calls of a loop) when that is built and not turned off (WIRESTACK_PURE_PROBE=1)."""
        probe, fail = self, failed(4)

        def wrapper(sock: Any, first: Any, *rest: Any) -> Any:
            start = _time_ns()
            try:
                r = orig(sock, first, *rest)
            except BaseException as exc:
                fail(exc, sock, first, *rest, _start=start)
                raise
            if kind == _SEND:
                probe._note(op, sock, start, _time_ns(), len(first), r)
            elif kind == _SENDTO:
                probe._note(op, sock, start, _time_ns(), len(first), r, 1, rest[-1])
            elif kind == _RECV:
                probe._note(op, sock, start, _time_ns(), first, len(r))
            else:
                probe._note(op, sock, start, _time_ns(), first, len(r[0]), 1, r[1])
            return r

        python = _named(wrapper, orig, op)
        if not self.frameless:
            return python
        return _named(_fastpath.wrap(kind, op, orig, python, failed(3), self._note, self, self._sockets,
                                     self._pending, _threads, _Tag, self._batch), orig, op)

    def _failed_data(self, op: str, args_of: Callable[..., dict[str, Any]], addresses: bool | str = False,
                     remote_of: Callable[..., Any] | None = None) -> Callable[[int], Callable[..., Any]]:
        """The slow way, for a data call that raised: the wrapper calls it with the exception, the same
        arguments and the start time, then re-raises (depth 4: record's caller chain up to the program's frame
        from the Python wrapper; 3 from the C twin, which has no frame)."""
        probe = self

        def make(depth: int) -> Callable[..., Any]:
            def failed(exc: BaseException, sock: Any, *a: Any, _start: int, **kw: Any) -> None:
                end = _time_ns()
                local, remote = probe._ends(sock, remote_of(a) if remote_of else None, addresses)
                args = _args(args_of, a, kw)
                args["timeout"] = _timeout(sock)
                probe.record(op, sock, _start, end, _getframe(depth - 2), exc=exc, local=local, remote=remote,
                             args=args)

            return failed

        return make

    def _w_send(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._moving(_SEND, "send", orig, self._failed_data("send", _bytes_of))

    def _w_sendall(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._moving(_SEND, "sendall", orig, self._failed_data("sendall", _bytes_of))

    def _w_sendto(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._moving(_SENDTO, "sendto", orig, self._failed_data(
            "sendto", lambda data, *rest: {"bytes": len(data), "address": rest[-1] if rest else None},
            addresses="cached", remote_of=lambda a: a[-1] if len(a) > 1 else None))

    def _w_recv(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._moving(_RECV, "recv", orig, self._failed_data("recv", _bufsize_of))

    def _w_recvfrom(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._moving(_RECVFROM, "recvfrom", orig, self._failed_data("recvfrom", _bufsize_of,
                                                                           addresses="cached"))

    def _w_sendmsg(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._simple("sendmsg", orig, args_of=lambda bufs, *rest, **kw: {"bytes": sum(map(len, bufs))})

    def _w_recv_into(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._simple("recv_into", orig,
                            args_of=lambda buffer=b"", nbytes=0, *r, **kw: {"bufsize": nbytes or len(buffer)})

    def _w_recvfrom_into(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._simple("recvfrom_into", orig, args_of=lambda buf, nbytes=0, *r, **kw: {
                            "bufsize": nbytes or len(buf)}, result_of=lambda r: r[0], addresses=True,
                            remote_of=lambda a, r: r[1] if r else None)

    def _w_recvmsg(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._simple("recvmsg", orig, args_of=lambda n=0, *r, **kw: {"bufsize": n},
                            result_of=lambda r: len(r[0]))

    def _w_shutdown(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._simple("shutdown", orig, args_of=lambda how: {"how": how}, result_of=lambda r: None,
                            addresses=True)

    def _w_bind(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._simple("bind", orig, args_of=lambda address: {"address": address}, result_of=lambda r: None,
                            addresses=True)

    def _w_listen(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._simple("listen", orig, args_of=lambda backlog=-1: {"backlog": backlog},
                            result_of=lambda r: None, addresses=True)

    def _w_getsockopt(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        """Only SO_ERROR is recorded: it is how a non-blocking connect learns its errno."""
        inner = self._simple("getsockopt", orig, args_of=lambda level, opt, *r: {"option": "SO_ERROR"})
        return self._choose(orig, inner, frozenset({(socket.SOL_SOCKET, socket.SO_ERROR)}), 3, "getsockopt")

    def _w_setsockopt(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        def args_of(level: int, opt: int, value: Any = None, *rest: Any) -> dict[str, Any]:
            name = _RECORDED_OPTIONS.get((level, opt))
            shown = value.hex() if isinstance(value, (bytes, bytearray)) else value
            return {"option": name or f"{level}/{opt}", "value": shown}

        inner = self._simple("setsockopt", orig, args_of=args_of, result_of=lambda r: None, addresses=True)
        return self._choose(orig, inner, frozenset(_RECORDED_OPTIONS), 0, "setsockopt")

    def _choose(self, orig: Callable[..., Any], inner: Callable[..., Any], pairs: frozenset[tuple[int, int]],
                nargs: int, op: str) -> Callable[..., Any]:
        """(sock, level, option, ...) goes to `inner` (which records) when (level, option) is in `pairs` (and
        the call has `nargs` arguments, if given), else straight to `orig`."""
        if self.frameless:  # the choice itself in C: a Python frame here would show in tracebacks
            return _named(_fastpath.choose(orig, inner, pairs, nargs), orig, op)

        def chooser(sock: Any, level: Any, opt: Any, *rest: Any) -> Any:
            if (level, opt) in pairs and (not nargs or 3 + len(rest) == nargs):
                return inner(sock, level, opt, *rest)
            return orig(sock, level, opt, *rest)

        return _named(chooser, orig, op)

    def _w_accept(self, orig: Callable[..., Any], raw: Callable[[Any], Any] = lambda s: s) -> Callable[..., Any]:
        """`raw`: the `_socket.socket` inside a socket object of another library (gevent's `_sock`)."""
        probe = self

        def done(depth: int) -> Done:
            def done(r: Any, a: tuple[Any, ...], kw: dict[str, Any] | None, start: int, end: int) -> None:
                conn, addr = r
                conn, a = raw(conn), (raw(a[0]), *a[1:])
                try:
                    local = _ORIG_GETSOCKNAME(conn)
                except OSError:
                    local = None
                # The call belongs to the new connection's flow; the listener is an argument.
                probe.record("accept", conn, start, end, _getframe(depth), local=local, remote=addr,
                             args={"listener": probe.serial(a[0])})

            return done

        def failed(depth: int) -> Failed:
            def failed(exc: BaseException, a: tuple[Any, ...], kw: dict[str, Any] | None, start: int,
                       end: int) -> None:
                sock = raw(a[0])
                probe.record("accept", sock, start, end, _getframe(depth), exc=exc,
                             args={"listener": probe.serial(sock), "timeout": _timeout(sock)})

            return failed

        return self._shim(orig, "accept", done, failed)

    def _w_real_close(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        """close() records the socket's ends as earlier calls learned them (once closed, the kernel would not
        say), and only the first close of a socket (a second one makes no syscall)."""
        probe = self

        def done(depth: int) -> Done:
            def done(r: Any, a: tuple[Any, ...], kw: dict[str, Any] | None, start: int, end: int) -> None:
                info = probe._sockets.get(id(a[0]))
                if info is None or info[7]:
                    return
                info[7] = True
                local, remote = info[6] or (info[3], None)
                probe.record("close", a[0], start, end, _getframe(depth), local=local, remote=remote)

            return done

        def failed(depth: int) -> Failed:
            def failed(exc: BaseException, a: tuple[Any, ...], kw: dict[str, Any] | None, start: int,
                       end: int) -> None:
                probe.record("close", a[0], start, end, _getframe(depth), exc=exc)

            return failed

        return self._shim(orig, "_real_close", done, failed)

    def _w_init(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        probe = self

        def done(depth: int) -> Done:
            def done(r: Any, a: tuple[Any, ...], kw: dict[str, Any] | None, start: int, end: int) -> None:
                fileno = a[4] if len(a) > 4 else (kw or {}).get("fileno")
                if fileno is None:  # accept() and fromfd() make socket objects too, for sockets that exist
                    sock = a[0]
                    probe.record("socket", sock, start, end, _getframe(depth), args={"proto": sock.proto},
                                 result=_ORIG_FILENO(sock))

            return done

        def failed(depth: int) -> Failed:
            def failed(exc: BaseException, a: tuple[Any, ...], kw: dict[str, Any] | None, start: int,
                       end: int) -> None:
                probe.record("socket", None, start, end, _getframe(depth), exc=exc)

            return failed

        return self._shim(orig, "__init__", done, failed)

    def _w_getaddrinfo(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        probe = self

        def args_of(a: tuple[Any, ...], kw: dict[str, Any] | None) -> dict[str, Any]:
            host = a[0] if a else (kw or {}).get("host")
            port = a[1] if len(a) > 1 else (kw or {}).get("port")
            return {"host": _plain(host), "port": _plain(port)}

        def done(depth: int) -> Done:
            def done(r: Any, a: tuple[Any, ...], kw: dict[str, Any] | None, start: int, end: int) -> None:
                result = [[_enum_name(fam), _enum_name(kind), _addr(sa)] for fam, kind, _, _, sa in r]
                probe.record("getaddrinfo", None, start, end, _getframe(depth), args=args_of(a, kw), result=result)

            return done

        def failed(depth: int) -> Failed:
            def failed(exc: BaseException, a: tuple[Any, ...], kw: dict[str, Any] | None, start: int,
                       end: int) -> None:
                probe.record("getaddrinfo", None, start, end, _getframe(depth), exc=exc, args=args_of(a, kw))

            return failed

        wrapper = self._shim(orig, "getaddrinfo", done, failed)
        try:
            wrapper.__wrapped__ = orig  # type: ignore[attr-defined]
        except AttributeError:
            pass
        return wrapper

    def _patch_ssl(self, ssl: Any) -> None:
        """TLS: the SSLSocket operations that put records on the wire (SSLSocket.send writes through its
        SSLObject directly, so it is wrapped too), and SSLObject's handshake (asyncio's TLS, memory BIOs)."""
        cls = ssl.SSLSocket
        self._patch(cls, "do_handshake", self._simple("do_handshake", cls.do_handshake,
                                                      args_of=lambda *a, **kw: {}, addresses=True,
                                                      result_of=lambda r: None))
        self._patch(cls, "read", self._simple("read", cls.read,
                                              args_of=lambda n=1024, buf=None: {"bufsize": n},
                                              result_of=lambda r: r if isinstance(r, int) else len(r)))
        self._patch(cls, "write", self._simple("write", cls.write, args_of=lambda data: {"bytes": len(data)}))
        self._patch(cls, "send", self._simple("send", cls.send, args_of=lambda data, flags=0: {"bytes": len(data)}))
        self._patch(cls, "unwrap", self._simple("unwrap", cls.unwrap, args_of=lambda: {}, result_of=lambda r: None))
        obj = getattr(ssl, "SSLObject", None)
        if obj is not None:
            probe = self

            def done(depth: int) -> Done:
                def done(r: Any, a: tuple[Any, ...], kw: dict[str, Any] | None, start: int, end: int) -> None:
                    return None  # a memory-BIO handshake step that worked puts nothing of its own on the wire

                return done

            def failed(depth: int) -> Failed:
                def failed(exc: BaseException, a: tuple[Any, ...], kw: dict[str, Any] | None, start: int,
                           end: int) -> None:
                    if fault_of(exc)[4] in ("SSL_ERROR_WANT_READ", "SSL_ERROR_WANT_WRITE"):
                        return  # the handshake waiting for bytes, not failing
                    probe.record("do_handshake", None, start, end, _getframe(depth), exc=exc,
                                 args={"memory_bio": True})

                return failed

            self._patch(obj, "do_handshake", self._shim(obj.do_handshake, "do_handshake", done, failed))

    def _patch_subprocess(self, subprocess: Any) -> None:
        """Child processes are not traced (unless forked): record that they were started, and what."""
        probe = self
        orig = subprocess.Popen.__init__

        def __init__(popen: Any, args: Any, *a: Any, **kw: Any) -> None:
            start = _time_ns()
            argv = [str(x) for x in args] if isinstance(args, (list, tuple)) else [str(args)]
            try:
                orig(popen, args, *a, **kw)
            except BaseException as exc:
                probe.record("spawn", None, start, _time_ns(), _getframe(1), exc=exc, args={"argv": argv})
                raise
            probe.record("spawn", None, start, _time_ns(), _getframe(1), args={"argv": argv}, result=popen.pid)

        self._patch(subprocess.Popen, "__init__", __init__)

    # -- runtimes with sockets of their own ------------------------------------------------------------------

    def _patch_gevent(self, module: Any) -> None:
        """gevent's socket class is Python, and every syscall it makes goes through the `_socket.socket` it holds
        (`_sock`, of gevent's own subclass `_wrefsocket`): wrapping that subclass's methods records each call as
        for the standard socket (gevent's non-blocking connect: connect_ex → EINPROGRESS, then SO_ERROR). Its
        `accept` hands out gevent sockets: wrapped at gevent's level, the new connection named by its `_sock`."""
        inner = getattr(module, "_wrefsocket", None)
        outer = getattr(module, "socket", None)
        if not isinstance(inner, type) or not issubclass(inner, _socket.socket) or not isinstance(outer, type):
            self._pending.append({"kind": "note", "text": UNSEEN_PREFIX + "gevent's sockets (a gevent version "
                                  "whose socket class the probe does not know): their calls are not recorded"})
            return
        base = _socket.socket
        for name in ("connect", "connect_ex", "send", "sendall", "sendto", "sendmsg", "recv", "recv_into",
                     "recvfrom", "recvfrom_into", "recvmsg", "shutdown", "getsockopt", "setsockopt", "bind",
                     "listen"):
            if hasattr(base, name):
                self._patch(inner, name, getattr(self, "_w_" + name)(getattr(base, name)))
        self._patch(inner, "close", self._w_real_close(base.close))
        self._patch(inner, "__init__", self._w_init(base.__init__))
        accept = outer.__dict__.get("accept")
        if callable(accept):
            self._patch(outer, "accept", self._w_accept(accept, raw=_gevent_raw))

    def _patch_gevent_resolver(self, module: Any) -> None:
        """gevent's getaddrinfo (what `monkey.patch_all()` puts in socket) resolves in its hub's resolver, not
        through socket.getaddrinfo: wrapped where gevent defines it, before gevent.socket copies it."""
        orig = getattr(module, "getaddrinfo", None)
        if callable(orig):
            self._patch(module, "getaddrinfo", self._w_getaddrinfo(orig))

    def _unseen_runtime(self, module: Any) -> None:
        """A runtime whose sockets live in C where no wrapper reaches (uvloop: libuv): say so, once."""
        name = getattr(module, "__name__", "?")
        text = UNSEEN_RUNTIMES.get(name)
        if text and name not in self._unseen:
            self._unseen.add(name)
            self._pending.append({"kind": "note", "text": UNSEEN_PREFIX + text, "runtime": name})
            self.flush()


def _gevent_raw(sock: Any) -> Any:
    raw = getattr(sock, "_sock", None)
    return raw if isinstance(raw, _socket.socket) else sock


UNSEEN_PREFIX = _items.UNSEEN_PREFIX
UNSEEN_RUNTIMES = {  # module -> which calls the probe cannot see (shown in the report as one line)
    "uvloop": "uvloop runs the event loop's sockets in libuv (C): their connect, send, recv, accept and close "
              "are not recorded (sockets the program makes itself with socket.socket still are)",
    "eventlet": "eventlet's green sockets are built on a copy of the socket module that the probe did not wrap: "
                "calls through them may be missing",
}


def _again(callback: Callable[..., Any], *args: Any) -> None:
    """The callback was cut short by a signal's exception (its handler has run): record once more. Unlike the C
    twin, Python code cannot hand the interrupt back to the program's next check (any call it makes after
    re-arming it is such a check): the signal's exception goes on from here, the call recorded."""
    try:
        callback(*args, _time_ns())
    except BaseException:
        pass


def _python_shim(orig: Callable[..., Any], done: Done, failed: Failed) -> Callable[..., Any]:
    """The wrapper's shape in Python, where the C twin is not built (its frame shows in tracebacks)."""

    def wrapper(*a: Any, **kw: Any) -> Any:
        start = _time_ns()
        try:
            r = orig(*a, **kw)
        except BaseException as exc:
            try:  # every call from here on is a point where a signal that came meanwhile can raise
                failed(exc, a, kw or None, start, _time_ns())
            except Exception:
                pass  # a failure to record never replaces the program's own exception
            except BaseException:  # a signal's exception, raised meanwhile
                _again(failed, exc, a, kw or None, start)
                raise
            raise
        try:
            done(r, a, kw or None, start, _time_ns())
        except Exception:
            pass
        except BaseException:  # Ctrl-C during a call that finished anyway
            _again(done, r, a, kw or None, start)
            raise
        return r

    return wrapper


# -- serialising ---------------------------------------------------------------------------------------------


def _args(args_of: Callable[..., dict[str, Any]], a: tuple[Any, ...], kw: dict[str, Any] | None) -> dict[str, Any]:
    """What a call was asked, as plain data; a call shape `args_of` does not know records nothing."""
    try:
        out = args_of(*a, **(kw or {}))
    except Exception:
        return {}
    return {k: _plain(v) for k, v in out.items()}


def _bytes_of(data: Any, *rest: Any) -> dict[str, Any]:
    return {"bytes": len(data)}


def _bufsize_of(n: Any, *rest: Any) -> dict[str, Any]:
    return {"bufsize": n}


def _timeout(sock: Any) -> float | None:
    try:
        value = _ORIG_GETTIMEOUT(sock)
    except Exception:
        return None
    return value if isinstance(value, float) else None


MAX_SOURCE_BYTES = 16 << 20  # a source file larger than this is not read for one line


def _source(file: str, line: int) -> str:
    """The source line, as a traceback would show it; but only from a regular file of sane size: a frame whose
    file name is a device or a FIFO (compiled code can name anything) must not make the probe read forever,
    where python itself would not read at all."""
    try:
        if file not in linecache.cache and not _readable_source(file):
            return ""
        return linecache.getline(file, line).strip()[:500]
    except Exception:  # a loader that fails, a file that vanished: no source line, no crash
        return ""


def _readable_source(file: str) -> bool:
    """Is the file linecache would open for FILE (as it is, or under a sys.path entry) a regular file?"""
    import stat

    candidates = [file] if os.path.isabs(file) else [file, *(os.path.join(d, file) for d in sys.path
                                                           if isinstance(d, str))]
    for path in candidates:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            continue
        return stat.S_ISREG(st.st_mode) and st.st_size <= MAX_SOURCE_BYTES
    return False


def _named(wrapper: Callable[..., Any], orig: Callable[..., Any], op: str) -> Callable[..., Any]:
    """The wrapper looks like the method it wraps (name, doc, `__wrapped__`)."""
    for attr, value in (("__wrapped__", orig), ("__name__", getattr(orig, "__name__", op)),
                        ("__qualname__", getattr(orig, "__qualname__", op)), ("__doc__", getattr(orig, "__doc__",
                                                                                                  None))):
        try:
            setattr(wrapper, attr, value)
        except (AttributeError, TypeError):
            pass
    return wrapper


def frame_dict(instance: int, file: str, line: int, function: str) -> dict[str, Any]:
    return {"file": file, "line": line, "function": function, "code": _source(file, line), "instance": instance}


MAX_DEPTH = 64  # chained and grouped exceptions kept at most this deep


def exception_dict(exc: BaseException, probe: Probe, skip: Callable[[FrameType], bool],
                   seen: set[int] | None = None, depth: int = 0) -> dict[str, Any]:
    """An exception and its chain (and an ExceptionGroup's exceptions) as plain data, frames outermost first;
    `skip` drops wirestack's own frames."""
    seen = seen if seen is not None else set()
    seen.add(id(exc))
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        if not skip(tb.tb_frame):  # the runner's frames and the probe's wrappers are invisible
            code = tb.tb_frame.f_code
            frames.append(frame_dict(probe.frame_tag(tb.tb_frame), code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    fault = fault_of(exc)

    def chained(e: BaseException | None) -> dict[str, Any] | None:
        if e is None or id(e) in seen or depth >= MAX_DEPTH:
            return None
        return exception_dict(e, probe, skip, seen, depth + 1)

    subs = getattr(exc, "exceptions", None) if _is_group(exc) else None
    group = [d for d in (chained(e) for e in (subs or ()) if isinstance(e, BaseException)) if d is not None]
    call = getattr(exc, EXC_ATTR, None)
    return {
        "type": fault[1], "message": fault[2], "fault": fault, "call": call if isinstance(call, int) else None,
        "frames": frames, "cause": chained(exc.__cause__), "context": chained(exc.__context__),
        "suppress_context": bool(exc.__suppress_context__), "group": group, "pid": os.getpid(),
    }


def _is_group(exc: BaseException) -> bool:
    return any(c.__name__ in ("BaseExceptionGroup", "ExceptionGroup") for c in type(exc).__mro__)


def exc_type_name(exc: BaseException) -> str:
    """The name Python's traceback prints: `ConnectionRefusedError`, `urllib.error.URLError`."""
    cls = type(exc)
    mod = getattr(cls, "__module__", "") or ""
    name = getattr(cls, "__qualname__", cls.__name__)
    return name if mod in ("builtins", "__main__") else f"{mod}.{name}"


def _safe(get: Callable[[], Any]) -> Any:
    try:
        return get()
    except Exception:  # an exception whose attribute or __str__ raises: record what can be read
        return None


_SSL_NAMES: dict[int, str] = {}
_EAI_NAMES = {getattr(socket, n): n for n in dir(socket) if n.startswith("EAI_") and isinstance(getattr(socket, n),
                                                                                                 int)}
_H_NAMES = {1: "HOST_NOT_FOUND", 2: "TRY_AGAIN", 3: "NO_RECOVERY", 4: "NO_DATA"}


def fault_of(exc: BaseException) -> tuple[Any, ...]:
    """An exception as a FAULT tuple (see `items.FAULT`), named in its own namespace."""
    import errno as _errno

    typ = _safe(lambda: exc_type_name(exc)) or "?"
    text = _safe(lambda: str(exc))
    message = text[:2000] if isinstance(text, str) else ""
    code = _safe(lambda: exc.errno)  # type: ignore[attr-defined]
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    mro = [(getattr(c, "__module__", ""), c.__name__) for c in type(exc).__mro__]
    if ("ssl", "SSLError") in mro:
        if not _SSL_NAMES and "ssl" in sys.modules:
            ssl = sys.modules["ssl"]
            _SSL_NAMES.update({getattr(ssl, n): n for n in dir(ssl) if n.startswith("SSL_ERROR_")
                               and isinstance(getattr(ssl, n), int)})
        reason, library = _safe(lambda: exc.reason), _safe(lambda: exc.library)  # type: ignore[attr-defined]
        detail = _safe(lambda: exc.verify_message)  # type: ignore[attr-defined]
        return ("openssl", typ, message, code, _SSL_NAMES.get(code, "") if code is not None else "",
                str(library or ""), str(reason or ""), str(detail or ""))
    if ("socket", "gaierror") in mro:
        return ("eai", typ, message, code, _EAI_NAMES.get(code, "") if code is not None else "", "", "", "")
    if ("socket", "herror") in mro:
        return ("h_errno", typ, message, code, _H_NAMES.get(code, "") if code is not None else "", "", "", "")
    if code is not None and isinstance(exc, OSError):
        return ("errno", typ, message, code, _errno.errorcode.get(code, ""), "", "", "")
    if any(name == "TimeoutError" for _, name in mro):
        return ("timeout", typ, message, None, "", "", "", "")
    return ("python", typ, message, None, "", "", "", "")


def _enum_name(value: Any) -> str:
    return getattr(value, "name", None) or str(value)


def _addr(sa: Any) -> Any:
    """A socket address as [host, port] (IPv6 flow info and scope dropped), a path, or None."""
    if isinstance(sa, tuple) and len(sa) >= 2 and isinstance(sa[1], int):
        return [str(sa[0]), sa[1]]
    if isinstance(sa, (str, bytes)):
        return sa if isinstance(sa, str) else sa.decode("utf-8", "replace")
    return None


def socket_sink(fd: int) -> Callable[[list[Any]], None]:
    """A sink sending each batch as messages on `fd`, a SOCK_SEQPACKET socket that wirestack created and handed to
    the program (forked children share it: each message arrives whole, never interleaved). Each message is one
    `marshal`led list of items of at most `items.MAX_MESSAGE` bytes: a larger batch is split. marshal is C-fast
    and only takes plain data; a batch it refuses is sent again made plain."""
    limit = _items.MAX_MESSAGE

    def emit(batch: list[Any]) -> None:
        try:
            data = marshal.dumps(batch)
        except ValueError:
            data = marshal.dumps([_plain(item) for item in batch])
        if len(data) > limit and len(batch) > 1:
            half = len(batch) // 2
            emit(batch[:half])
            emit(batch[half:])
            return
        if len(data) > limit:  # one item alone over the limit (a huge argument): sent made short
            data = marshal.dumps([_plain(batch[0], short=True)])
        try:
            os.write(fd, data)  # a write on a SEQPACKET socket is one message
        except OSError:
            pass  # wirestack is gone: the program goes on untraced

    return emit


def _plain(value: Any, short: bool = False) -> Any:
    """Anything a program passed us (an address tuple holding some object) as marshal-able data."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (str, bytes)):
        return value[:200] if short else value
    if isinstance(value, tuple):
        return tuple(_plain(v, short) for v in value[:64])
    if isinstance(value, list):
        return [_plain(v, short) for v in value[:64]]
    if isinstance(value, dict):
        return {str(k): _plain(v, short) for k, v in list(value.items())[:64]}
    try:
        return repr(value)[:200]
    except Exception:
        return "?"


def _when_imported(name: str, patch: Callable[[Any], None]) -> Any:
    """Run `patch(module)` now if `name` is imported, else right after it is (without importing it ourselves:
    the probe must not slow down programs that never use it)."""
    if name in sys.modules:
        patch(sys.modules[name])
        return None

    class Finder:
        @staticmethod
        def find_spec(fullname: str, path: Any = None, target: Any = None) -> Any:
            if fullname != name:
                return None
            sys.meta_path.remove(Finder)
            import importlib.util

            spec = importlib.util.find_spec(fullname)
            if spec is None or spec.loader is None:
                return spec
            loader, exec_module = spec.loader, spec.loader.exec_module

            def patched_exec(module: Any) -> None:
                exec_module(module)
                patch(module)

            loader.exec_module = patched_exec  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, Finder)
    return Finder
