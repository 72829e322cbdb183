"""The probe: records the socket calls of the program it runs in, with their Python stacks.

It runs *inside* the traced program (installed by `wirestack.record.bootstrap` before the program starts) and must stay
cheap: a call costs two `time_ns()`, a walk up the stack keeping `(tag, code, line)` per frame (once per place:
the stack is kept in the frame), and a tuple appended to a list. Everything else (file names, source lines) is
described once, and batches are `marshal`led. The data calls of loops have a C twin (`_fastpath.c`, optional).

Rules:
- Wrappers call the original C methods and re-raise exactly what they raised; the program sees no difference.
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
"""

from __future__ import annotations

import _socket
import itertools
import linecache
import marshal
import os
import socket
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

try:  # the optional C short path (setup.py builds it where a compiler is); in a traced program, handed over by
    from . import _fastpath  # runner.BOOT when the program runs on wirestack's own interpreter
except ImportError:
    _fastpath = None  # type: ignore[assignment]

_time_ns = time.time_ns
_getframe = sys._getframe
_current_thread = threading.current_thread
_get_ident = threading.get_ident
_threads: dict[int, Any] = getattr(threading, "_active", {})  # ident -> Thread (CPython's own map; `_name` read)
_FAMILY = _socket.socket.family.__get__  # the plain ints, without socket.py's enum conversion (~1 µs each)
_TYPE = _socket.socket.type.__get__
_FILENO = _socket.socket.fileno
_ORIG_GETSOCKNAME = _socket.socket.getsockname
_ORIG_GETPEERNAME = _socket.socket.getpeername

# pytest leaves frames whose globals (or locals) hold this out of its tracebacks: the wrappers are invisible there
# too, as they are in wirestack's own reports.
__tracebackhide__ = True

EXC_ATTR = "_wirestack_call"
# the probe's own code, as a module file and as the source wirestack hands to a traced program
PROBE_FILES = frozenset({__file__, "<wirestack probe>", os.path.join(os.path.dirname(__file__), "probe.py")})
_WAITS = {11, 115, 114}  # EAGAIN, EINPROGRESS, EALREADY
FLUSH_NS = 50_000_000  # records reach wirestack within 50 ms of a call, or 512 calls, whichever comes first
FAILED_NS = 1_000_000  # a failure is flushed at once unless another one was within this (1 ms)
_NO_SOCKET = (0, "", "", None)
_CONNECTS = ("connect", "connect_ex")
_SEND, _SENDTO, _RECV, _RECVFROM = range(4)  # the kinds of `_fastpath.wrap`
DESCRIPTIONS = ("code", "lines", "socket", "local")  # item kinds that describe, for every later item


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


class Probe:
    def __init__(self, sink: Callable[[list[Any]], None], batch: int = 512) -> None:
        self._sink = sink
        self._batch = batch
        self._pending: list[tuple[Any, ...]] = []
        self._ids = itertools.count(1)
        self._tags = itertools.count(1)
        self._serials = itertools.count(1)
        # per live socket object, by id: [serial, family, type, local address once bound (datagram calls),
        # (local, remote) once connected, a weak reference whose callback drops the entry when the socket is
        # collected (so ids are never confused)]. A plain dict lookup is ~10x cheaper than a WeakKeyDictionary's.
        self._sockets: dict[int, list[Any]] = {}
        self._names: dict[tuple[int, int], str] = {}  # (0 family | 1 type, number) -> "AF_INET", "SOCK_STREAM"
        self._errors: dict[int, tuple[str, str]] = {}  # errno -> (name, "ECONNREFUSED: Connection refused")
        self._failed = 0  # when a failure was last flushed at once (see record)
        self._codes: dict[int, CodeType] = {}  # code objects already described to wirestack (kept alive: ids stay)
        self._files: set[str] = set()  # pseudo-files ("<string>") whose lines were sent
        self._hidden_files: set[str] = {__file__}
        self._hidden_tags: set[int] = set()  # the runner's own frames (wirestack's bootstrap)
        self._lock = threading.Lock()
        self._saved: list[tuple[Any, str, Any]] = []
        self.pid = os.getpid()
        self._flushed = _time_ns()

    def after_fork(self) -> None:
        """In a forked child: keep recording, under the child's pid, with ids that cannot clash."""
        self.pid = os.getpid()
        self._pending.clear()  # the parent's, which the parent sends itself (the wrappers hold this list)
        self._lock = threading.Lock()
        base = self.pid << 32
        self._ids, self._tags, self._serials = (itertools.count(base + 1) for _ in range(3))

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

    def _stack(self, depth: int) -> Stack:
        """The caller's stack, as sent (outermost first). Walked once per place: a frame that calls from the same
        instruction again has the same callers (while it runs, they wait where they are), so each walked frame
        keeps, in its own tag, its stack by instruction, and a later walk stops at the first frame that knows
        its stack from there. Generators and coroutines keep none: their caller changes between resumptions.
        Kept stacks die with their frames and never go stale."""
        frame: FrameType | None = _getframe(depth)
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
        """A walked stack as sent: outermost first, codes by id. A code (and a pseudo-file's lines) is described
        in the pending records before it is marked known, so any call naming it comes after its description."""
        codes, out = self._codes, []
        for tag, code, line in reversed(stack):
            key = id(code)
            if key not in codes:
                name = code.co_filename
                if name.startswith("<") and name not in self._files:
                    self._files.add(name)
                    self._pending.append(("lines", name, tuple(linecache.getlines(name))))
                self._pending.append(("code", key, name, code.co_name))
                codes[key] = code  # kept alive, so its id stays its own
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
                                    None, None, weakref.ref(sock, gone)]
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

    def _error(self, number: int) -> tuple[str, str]:
        known = self._errors.get(number)
        if known is None:
            name = errno_name(number)
            known = self._errors[number] = (name, f"{name}: {os.strerror(number)}")
        return known

    # -- recording -------------------------------------------------------------------------------------------

    def record(self, op: str, sock: Any, start: int, end: int, *, exc: BaseException | None = None,
               local: Any = None, remote: Any = None, args: dict[str, Any] | None = None,
               result: Any = None, depth: int = 3, reported: int = 0) -> int:
        """Record one call. `exc`: what it raised; `reported`: an errno it returned without raising
        (connect_ex, getsockopt(SO_ERROR))."""
        cid = next(self._ids)
        errno = error = None
        if reported:
            errno, error = reported, self._error(reported)[1]
        if exc is not None:
            err = getattr(exc, "errno", None)
            errno = err if isinstance(err, int) else None
            error = _exc_line(exc)
            try:
                setattr(exc, EXC_ATTR, cid)
            except Exception:
                pass
        if sock is None:
            info: Any = _NO_SOCKET
        else:
            info = self._socket(sock)
            if op in _CONNECTS:  # failed for good: not connected (close need not ask for a peer)
                info[4] = errno is not None and errno not in _WAITS
        frame = _getframe(depth - 1)  # the program's frame: its stack from this instruction may be known
        mark, stack = frame.f_trace, None
        if type(mark) is _Tag and mark.stacks is not None:
            stack = mark.stacks.get(frame.f_lasti)
        if stack is None:
            stack = self._stack(depth)
        item = ("call", cid, op, _thread_name(), start, end, stack, info[0], info[1], info[2], errno, error or "",
                local, remote, args or {}, result, self.pid)
        pending = self._pending
        pending.append(item)
        # A failure is flushed at once (the program may be killed next), unless one was a moment ago (a storm of
        # failures rides with the batch, flushed within FLUSH_NS); the waits of non-blocking sockets (EAGAIN,
        # EINPROGRESS) are not failures and ride with the batch too.
        if len(pending) >= self._batch or end - self._flushed > FLUSH_NS:
            self.flush()
        elif error is not None and errno not in _WAITS and end - self._failed > FAILED_NS:
            self._failed = end
            self.flush()
        return cid

    def _note(self, op: str, sock: Any, start: int, end: int, n: int, result: Any, where: int = 0,
              remote: Any = None, depth: int = 2) -> None:
        """`record` for the calls that move data and succeeded (the hot path: loops of sends and receives),
        called by the wrapper itself. `n`: the byte count or buffer size; `where`: 1 for a datagram call, whose
        remote address is `remote` and whose local address, once known, is described once ("local") and left
        out of the item. The item is a "data" one (see `flush`): what every call of a socket shares (family,
        type, local address) is described once, not sent per call. `depth`: 2 from a Python wrapper, 1 from
        the C one (`_fastpath`, which has no frame), which calls this only for what it does not know yet."""
        info = self._sockets.get(id(sock))
        if info is None:
            info = self._socket(sock)
        if where and info[3] is None:
            self._ends(sock, (), None, "cached")
        frame = _getframe(depth)
        mark, stack = frame.f_trace, None
        if type(mark) is _Tag and mark.stacks is not None:
            stack = mark.stacks.get(frame.f_lasti)
        if stack is None:
            stack = self._stack(depth + 1)
        thread = _threads.get(_get_ident())
        pending = self._pending
        pending.append(("data", next(self._ids), op, thread._name if thread is not None else _current_thread().name,
                        start, end, stack, info[0], n, result, remote, self.pid))
        if len(pending) >= self._batch or end - self._flushed > FLUSH_NS:
            self.flush()

    def flush(self) -> None:
        """Hand the pending items to the sink. They are built ready to send (see `records.Loader`): a call is
        ("call", id, op, thread, start, end, stack, socket, family, type, errno, error, local, remote, args,
        result, pid), whose stack names frames as (instance, code id, line); a data call that succeeded is
        ("data", id, op, thread, start, end, stack, socket, size, result, remote, pid), `size` its byte count or
        buffer size. Described once, before the first item naming them: code objects ("code", id, file,
        function), the lines of pseudo-files ("lines", file, lines), sockets ("socket", serial, family, type)
        and a datagram socket's local address ("local", serial, address)."""
        self._flushed = _time_ns()
        with self._lock:
            # Copy, then cut what was copied: a thread appending meanwhile appends to the same list, so nothing
            # is lost between the two (each is one step under the GIL).
            whole = self._pending
            items = whole[:]
            del whole[: len(items)]
            if items:
                self._sink(items)

    # -- installing ------------------------------------------------------------------------------------------

    def install(self) -> None:
        cls = socket.socket
        for name in ("connect", "connect_ex", "send", "sendall", "sendto", "sendmsg", "recv", "recv_into",
                     "recvfrom", "recvfrom_into", "recvmsg", "shutdown", "getsockopt", "accept", "_real_close",
                     "__init__"):
            self._patch(cls, name, getattr(self, "_w_" + name.strip("_"))(getattr(cls, name)))
        self._patch(socket, "getaddrinfo", self._w_getaddrinfo(socket.getaddrinfo))
        self._finders = [_when_imported("ssl", self._patch_ssl), _when_imported("subprocess", self._patch_subprocess)]
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self.after_fork)
        self._patch(os, "_exit", self._w_exit(os._exit))

    def _w_exit(self, orig: Callable[[int], Any]) -> Callable[[int], Any]:
        probe = self

        def _exit(code: int) -> Any:  # forked children (multiprocessing too) leave through os._exit: no atexit
            try:
                probe.flush()
            except Exception:
                pass
            return orig(code)

        return _exit

    def _patch_ssl(self, ssl: Any) -> None:
        """TLS: the SSLSocket operations that put records on the wire (send/recv/sendall go through these)."""
        cls = ssl.SSLSocket
        self._patch(cls, "do_handshake", self._simple("do_handshake", cls.do_handshake, args_of=lambda *a: {},
                                                      addresses=True, result_of=lambda r: None))
        self._patch(cls, "read", self._simple("read", cls.read, args_of=lambda n=1024, buf=None: {"bufsize": n},
                                              result_of=lambda r: r if isinstance(r, int) else len(r)))
        self._patch(cls, "write", self._simple("write", cls.write, args_of=lambda data: {"bytes": len(data)}))
        self._patch(cls, "send", self._simple("send", cls.send, args_of=lambda data, flags=0: {"bytes": len(data)}))
        self._patch(cls, "unwrap", self._simple("unwrap", cls.unwrap, args_of=lambda: {}, result_of=lambda r: None))

    def _patch_subprocess(self, subprocess: Any) -> None:
        """Child processes are not traced (unless forked): record that they were started, and what."""
        probe = self
        orig = subprocess.Popen.__init__

        def __init__(popen: Any, args: Any, *a: Any, **kw: Any) -> None:
            start = _time_ns()
            argv = [str(x) for x in args] if isinstance(args, (list, tuple)) else str(args)
            try:
                orig(popen, args, *a, **kw)
            except BaseException as exc:
                probe.record("spawn", None, start, _time_ns(), exc=exc, args={"argv": argv})
                raise
            probe.record("spawn", None, start, _time_ns(), args={"argv": argv}, result=popen.pid)

        self._patch(subprocess.Popen, "__init__", __init__)

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

    # Each _w_* builds the wrapper for one method. They share one shape: time, call, record, return or re-raise.

    def _simple(self, op: str, orig: Callable[..., Any], *, args_of: Callable[..., dict[str, Any]],
                result_of: Callable[[Any], Any] = lambda r: r, addresses: bool | str = False,
                remote_of: Callable[..., Any] | None = None, depth: int = 3) -> Callable[..., Any]:
        probe = self

        def wrapper(sock: Any, *a: Any, **kw: Any) -> Any:
            start = _time_ns()
            try:
                r = orig(sock, *a, **kw)
            except BaseException as exc:
                end = _time_ns()
                local, remote = probe._ends(sock, a, remote_of, addresses)
                probe.record(op, sock, start, end, exc=exc, local=local, remote=remote, args=args_of(*a, **kw),
                             depth=depth)
                raise
            end = _time_ns()
            local, remote = probe._ends(sock, a, remote_of, addresses, r)
            probe.record(op, sock, start, end, local=local, remote=remote, args=args_of(*a, **kw),
                         result=result_of(r), depth=depth)
            return r

        return _named(wrapper, orig, op)

    def _ends(self, sock: Any, a: tuple[Any, ...], remote_of: Callable[..., Any] | None, addresses: bool | str,
              r: Any = None) -> tuple[Any, Any]:
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
        remote = remote_of(a, r) if remote_of else None
        if remote is None:
            try:
                remote = _ORIG_GETPEERNAME(sock)
            except OSError:
                remote = None
        return local, remote

    def _w_connect(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._simple("connect", orig, args_of=lambda addr: {"address": addr}, addresses=True,
                            remote_of=lambda a, r: a[0] if a else None)

    def _w_connect_ex(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        probe = self

        def connect_ex(sock: Any, addr: Any) -> int:
            start = _time_ns()
            r: int = orig(sock, addr)  # connect_ex returns the errno instead of raising
            end = _time_ns()
            local, remote = probe._ends(sock, (addr,), lambda a, _: a[0], True)
            probe.record("connect_ex", sock, start, end, local=local, remote=remote, args={"address": addr},
                         result=r, reported=r)
            return r

        return connect_ex

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
        if _fastpath is None or os.environ.get("WIRESTACK_PURE_PROBE"):
            return python
        return _named(_fastpath.wrap(kind, op, orig, python, failed(3), self._note, self, self._sockets,
                                     self._pending, _threads, _Tag, self._batch), orig, op)

    def _w_send(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._moving(_SEND, "send", orig, lambda depth: self._failed_call("send", _bytes_of, depth=depth))

    def _w_sendall(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._moving(_SEND, "sendall", orig,
                            lambda depth: self._failed_call("sendall", _bytes_of, depth=depth))

    def _w_sendto(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        def failed(depth: int) -> Callable[..., Any]:
            return self._failed_call("sendto", lambda data, *rest: {"bytes": len(data), "address": rest[-1]},
                                     addresses="cached", remote_of=lambda a, r: a[-1], depth=depth)

        return self._moving(_SENDTO, "sendto", orig, failed)

    def _failed_call(self, op: str, args_of: Callable[..., dict[str, Any]], addresses: bool | str = False,
                     remote_of: Callable[..., Any] | None = None, depth: int = 4) -> Callable[..., Any]:
        """The slow way, for a call that raised: the wrapper calls it with the exception, the same arguments and
        the start time, then re-raises (depth 4: record, this, the wrapper, the program's frame; 3 for the C
        twin, which has no frame)."""
        probe = self

        def failed(exc: BaseException, sock: Any, *a: Any, _start: int, **kw: Any) -> None:
            end = _time_ns()
            local, remote = probe._ends(sock, a, remote_of, addresses)
            probe.record(op, sock, _start, end, exc=exc, local=local, remote=remote, args=args_of(*a, **kw),
                         depth=depth)

        return failed

    def _w_sendmsg(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._simple("sendmsg", orig, args_of=lambda bufs, *rest, **kw: {"bytes": sum(map(len, bufs))})

    def _w_recv(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._moving(_RECV, "recv", orig, lambda depth: self._failed_call("recv", _bufsize_of, depth=depth))

    def _w_recv_into(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        probe = self
        failed = self._failed_call("recv_into", lambda buffer=b"", *r, **kw: {"bufsize": len(buffer)})

        def recv_into(sock: Any, *a: Any, **kw: Any) -> Any:  # (buffer, nbytes=0, flags=0), keywords allowed
            start = _time_ns()
            try:
                r = orig(sock, *a, **kw)
            except BaseException as exc:
                failed(exc, sock, *a, _start=start, **kw)
                raise
            probe._note("recv_into", sock, start, _time_ns(), len(a[0] if a else kw["buffer"]), r)
            return r

        return _named(recv_into, orig, "recv_into")

    def _w_recvfrom(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._moving(_RECVFROM, "recvfrom", orig, lambda depth: self._failed_call(
            "recvfrom", _bufsize_of, addresses="cached", depth=depth))

    def _w_recvfrom_into(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._simple("recvfrom_into", orig, args_of=lambda buf, *r, **kw: {"bufsize": len(buf)},
                            result_of=lambda r: r[0], addresses=True, remote_of=lambda a, r: r[1] if r else None)

    def _w_recvmsg(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._simple("recvmsg", orig, args_of=lambda n=0, *r: {"bufsize": n}, result_of=lambda r: len(r[0]))

    def _w_shutdown(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        return self._simple("shutdown", orig, args_of=lambda how: {"how": how}, result_of=lambda r: None)

    def _w_getsockopt(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        probe = self

        def getsockopt(sock: Any, level: int, opt: int, *rest: Any) -> Any:
            # Only SO_ERROR matters here: it is how a non-blocking connect learns its errno.
            if level != socket.SOL_SOCKET or opt != socket.SO_ERROR or rest:
                return orig(sock, level, opt, *rest)
            start = _time_ns()
            r = orig(sock, level, opt)
            probe.record("getsockopt", sock, start, _time_ns(), args={"option": "SO_ERROR"}, result=r,
                         reported=r if isinstance(r, int) else 0)
            return r

        return getsockopt

    def _w_accept(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        probe = self

        def accept(sock: Any) -> Any:
            start = _time_ns()
            try:
                conn, addr = orig(sock)
            except BaseException as exc:
                probe.record("accept", sock, start, _time_ns(), exc=exc)
                raise
            end = _time_ns()
            try:
                local = _ORIG_GETSOCKNAME(conn)
            except OSError:
                local = None
            # The call belongs to the new connection's flow; the listener is an argument.
            probe.record("accept", conn, start, end, local=local, remote=addr,
                         args={"listener": probe.serial(sock)})
            return conn, addr

        return accept

    def _w_real_close(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        probe = self

        def _real_close(sock: Any, *a: Any, **kw: Any) -> Any:
            if sock.fileno() < 0:  # already closed: no syscall, nothing to record
                return orig(sock, *a, **kw)
            start = _time_ns()
            info = probe._sockets.get(id(sock))
            if info is not None and info[4]:  # its connect failed: there is no peer to ask for
                try:
                    local, remote = _ORIG_GETSOCKNAME(sock), None
                except OSError:
                    local = remote = None
            else:
                local, remote = probe._ends(sock, (), None, True)
            r = orig(sock, *a, **kw)
            probe.record("close", sock, start, _time_ns(), local=local, remote=remote)
            return r

        return _real_close

    def _w_init(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        probe = self

        def __init__(sock: Any, family: Any = -1, type: Any = -1, proto: Any = -1, fileno: Any = None) -> None:
            start = _time_ns()
            orig(sock, family, type, proto, fileno)
            if fileno is None:  # accept() and fromfd() make sockets too; those are not new endpoints
                probe.record("socket", sock, start, _time_ns(), args={"proto": sock.proto}, result=sock.fileno())

        return __init__

    def _w_getaddrinfo(self, orig: Callable[..., Any]) -> Callable[..., Any]:
        probe = self

        def getaddrinfo(host: Any, port: Any, *a: Any, **kw: Any) -> Any:
            start = _time_ns()
            args = {"host": host, "port": port}
            try:
                r = orig(host, port, *a, **kw)
            except BaseException as exc:
                probe.record("getaddrinfo", None, start, _time_ns(), exc=exc, args=args)
                raise
            result = [[_enum_name(fam), _enum_name(kind), _addr(sa)] for fam, kind, _, _, sa in r]
            probe.record("getaddrinfo", None, start, _time_ns(), args=args, result=result)
            return r

        getaddrinfo.__wrapped__ = orig  # type: ignore[attr-defined]
        return getaddrinfo


# -- serialising ---------------------------------------------------------------------------------------------


def _bytes_of(data: Any, *rest: Any) -> dict[str, Any]:
    return {"bytes": len(data)}


def _bufsize_of(n: Any, *rest: Any) -> dict[str, Any]:
    return {"bufsize": n}


def _thread_name() -> str:
    thread = _threads.get(_get_ident())  # `_name`, not the `name` property: a Python call less
    return thread._name if thread is not None else _current_thread().name


def _named(wrapper: Callable[..., Any], orig: Callable[..., Any], op: str) -> Callable[..., Any]:
    """The wrapper looks like the method it wraps (name, doc, `__wrapped__`)."""
    wrapper.__wrapped__ = orig  # type: ignore[attr-defined]
    wrapper.__name__ = getattr(orig, "__name__", op)
    wrapper.__doc__ = getattr(orig, "__doc__", None)
    return wrapper


def frame_dict(instance: int, file: str, line: int, function: str) -> dict[str, Any]:
    return {"file": file, "line": line, "function": function, "code": linecache.getline(file, line).strip(),
            "instance": instance}


def exception_dict(exc: BaseException, probe: Probe, skip: Callable[[FrameType], bool],
                   seen: set[int] | None = None) -> dict[str, Any]:
    """An exception and its chain as plain data, frames outermost first; `skip` drops wirestack's own frames."""
    seen = seen if seen is not None else set()
    seen.add(id(exc))
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        if not skip(tb.tb_frame):  # the runner's frames and the probe's wrappers are invisible
            code = tb.tb_frame.f_code
            frames.append(frame_dict(probe.frame_tag(tb.tb_frame), code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    err = getattr(exc, "errno", None)

    def chained(e: BaseException | None) -> dict[str, Any] | None:
        return exception_dict(e, probe, skip, seen) if e is not None and id(e) not in seen else None

    return {
        "type": exc_type_name(exc), "message": str(exc), "errno": err if isinstance(err, int) else None,
        "call": getattr(exc, EXC_ATTR, None), "frames": frames, "cause": chained(exc.__cause__),
        "context": chained(exc.__context__), "suppress_context": exc.__suppress_context__,
    }


def exc_type_name(exc: BaseException) -> str:
    """The name Python's traceback prints: `ConnectionRefusedError`, `urllib.error.URLError`."""
    cls = type(exc)
    mod = cls.__module__
    return cls.__qualname__ if mod in ("builtins", "__main__") else f"{mod}.{cls.__qualname__}"


def _exc_line(exc: BaseException) -> str:
    text = str(exc)
    return f"{exc_type_name(exc)}: {text}" if text else exc_type_name(exc)


def errno_name(number: int) -> str:
    import errno

    return errno.errorcode.get(number, f"errno {number}")


def _enum_name(value: Any) -> str:
    return getattr(value, "name", None) or str(value)


def _addr(sa: Any) -> Any:
    """A socket address as [host, port] (IPv6 flow info and scope dropped), a path, or None."""
    if isinstance(sa, tuple) and len(sa) >= 2 and isinstance(sa[1], int):
        return [str(sa[0]), sa[1]]
    if isinstance(sa, (str, bytes)):
        return sa if isinstance(sa, str) else sa.decode("utf-8", "replace")
    return None


def dir_sink(folder: str) -> Callable[[list[Any]], None]:
    """A sink appending batches to FOLDER/PID.rec (one file per process, so forked children, which inherit
    the probe, never interleave with their parent): each batch a 4-byte length and a `marshal`led list of
    tuples. marshal is C-fast and only takes plain data; a batch it refuses is sent again made plain."""
    fds: dict[int, int] = {}

    def sink(items: list[Any]) -> None:
        pid = os.getpid()
        if pid not in fds:
            fds.clear()  # a forked child must not write to its parent's file
            fds[pid] = os.open(os.path.join(folder, f"{pid}.rec"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            data = marshal.dumps(items)
        except ValueError:
            data = marshal.dumps([_plain(item) for item in items])
        view = memoryview(struct.pack("<I", len(data)) + data)
        while view:
            view = view[os.write(fds[pid], view):]

    return sink


def _plain(value: Any) -> Any:
    """Anything a program passed us (an address tuple holding some object) as marshal-able data."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


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
