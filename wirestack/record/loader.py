"""The probe's items (see `items`) back to model records. Pure.

The items come from the traced program, which runs as the user while wirestack may hold root's capture: they are
untrusted. Every item is checked against its layout (kind, length, the type of each field, sizes); one that does
not fit is counted and left out, never a crash. Nothing here opens a file: source lines arrive as LINE items,
read by the traced process itself.

Code objects, source lines, sockets and datagram sockets' local addresses arrive once and are looked up after;
frames are shared between calls (one `Frame` per frame instance and line), so 100,000 calls from one loop cost
one frame list.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..model import Addr, Call, ExceptionInfo, Fault, Frame
from . import items as layout

SIZE_ARG = {"send": "bytes", "sendall": "bytes", "sendto": "bytes", "recv": "bufsize", "recv_into": "bufsize",
            "recvfrom": "bufsize"}
DATAGRAM_OPS = ("sendto", "recvfrom")  # data calls whose local address is the socket's ("local" item)
OPS = frozenset({"getaddrinfo", "socket", "connect", "connect_ex", "send", "sendall", "sendto", "sendmsg", "recv",
                 "recv_into", "recvfrom", "recvfrom_into", "recvmsg", "shutdown", "getsockopt", "setsockopt",
                 "accept", "bind", "listen", "close", "do_handshake", "read", "write", "unwrap", "spawn"})
NAMESPACES = frozenset({"errno", "openssl", "eai", "h_errno", "timeout", "python"})
MAX_TEXT = 2000  # characters of any string kept from an item
MAX_STACK = 1000  # frames in one stack
MAX_DEPTH = 64  # nesting of exception chains and groups
MAX_PLAIN = 256  # elements of one argument or result kept


class BadItem(Exception):
    pass


def _int(v: Any) -> int:
    if type(v) is not int:
        raise BadItem
    return v


def _str(v: Any, limit: int = MAX_TEXT) -> str:
    if type(v) is not str:
        raise BadItem
    return v[:limit]


def _addr(value: Any) -> Addr | None:
    """(host, port) from [host, port, ...] as a socket gives it; None for anything else (an AF_UNIX path...)."""
    if isinstance(value, (list, tuple)) and len(value) >= 2 and type(value[0]) is str and type(value[1]) is int:
        if 0 <= value[1] <= 65535 and len(value[0]) <= 256:
            return (value[0], value[1])
    return None


def plain(value: Any, depth: int = 0) -> Any:
    """An argument or result as JSON-able data: tuples as lists, bytes as text, sizes capped; floats finite."""
    if value is None or type(value) in (bool, int, str):
        return value[:MAX_TEXT] if type(value) is str else value
    if type(value) is float:
        return value if math.isfinite(value) else None
    if depth > 8:
        return None
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value[:MAX_PLAIN]]
    if isinstance(value, dict):
        return {str(k)[:100]: plain(v, depth + 1) for k, v in list(value.items())[:MAX_PLAIN]}
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[:MAX_TEXT]).decode("utf-8", "replace")
    return None


def _args(args: Any) -> dict[str, Any]:
    if not isinstance(args, dict):
        raise BadItem
    out = {}
    for k, v in list(args.items())[:32]:
        if type(k) is not str:
            raise BadItem
        if k == "address" and isinstance(v, (list, tuple)) and len(v) >= 2:
            v = [v[0], v[1]]  # drop IPv6 flowinfo and scope, as for local/remote
        out[k[:100]] = plain(v)
    return out


def fault_from(value: Any) -> Fault | None:
    """A FAULT tuple (or its JSON list form) as a `Fault`."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != len(layout.FAULT):
        raise BadItem
    namespace, typ, message, code, name, library, reason, detail = value
    if namespace not in NAMESPACES or (code is not None and type(code) is not int):
        raise BadItem
    if namespace in ("timeout", "python"):
        code, name = None, ""
    return Fault(namespace, _str(typ, 300), _str(message), code, _str(name, 64), _str(library, 64),
                 _str(reason, 128), _str(detail, 300))


@dataclass
class _Raw:
    """A call as read, before its final id (ids are given in time order once every process's items are in)."""

    start: int
    key: int  # the probe's id
    op: str
    thread: str
    tid: int
    end: int
    frames: tuple[Frame, ...]
    serial: int
    fault: Fault | None
    local: Addr | None
    remote: Addr | None
    args: dict[str, Any]
    result: Any
    pid: int


@dataclass
class Loader:
    """Feed it the batches of every traced process (`feed`), then take `calls()`."""

    other: list[dict[str, Any]] = field(default_factory=list)  # exceptions, notes, errors, processes
    bad: int = 0  # items that did not fit their layout
    _raw: list[_Raw] = field(default_factory=list)
    _codes: dict[int, tuple[str, str]] = field(default_factory=dict)
    _lines: dict[tuple[int, int], str] = field(default_factory=dict)
    _sockets: dict[int, tuple[str, str]] = field(default_factory=dict)  # serial -> (family, type)
    _locals: dict[int, Addr | None] = field(default_factory=dict)  # serial -> local address (datagram sockets)
    _frames: dict[tuple[int, int, int], Frame] = field(default_factory=dict)
    _stacks: dict[tuple[Any, ...], tuple[Frame, ...]] = field(default_factory=dict)  # as read -> as built
    _pending: list[tuple[Any, ...]] = field(default_factory=list)
    _kept: list[tuple[Any, ...]] = field(default_factory=list)  # every call item as read, for `export`
    ports: set[tuple[int, int]] = field(default_factory=set)  # (local, remote) ports the calls name
    max_calls: int = 1_000_000  # calls kept; later ones are counted in `over`
    over: int = 0

    def feed(self, batch: Iterable[Any]) -> None:
        """One batch. Descriptions are taken at once and calls kept until `calls()`: a forked child's calls may
        name codes its parent described in a batch that arrives later."""
        for item in batch:
            try:
                self._item(item)
            except (BadItem, TypeError, ValueError, KeyError, IndexError):
                self.bad += 1

    def _item(self, item: Any) -> None:
        if isinstance(item, dict):
            kind = item.get("kind")
            if kind not in ("exception", "note", "error", "process") or len(item) > 32:
                raise BadItem
            self.other.append(item)
            return
        if not isinstance(item, tuple) or not item or item[0] not in layout.LAYOUTS:
            raise BadItem
        kind = item[0]
        if len(item) != len(layout.LAYOUTS[kind]):
            raise BadItem
        if kind == "call" or kind == "data":
            if len(self._kept) >= self.max_calls:
                self.over += 1  # counted, not kept: memory stays bounded in a long run
                return
            self._pending.append(item)
            self._kept.append(item)
            local = item[10] if kind == "call" else self._locals.get(item[8])
            remote = item[11]
            if isinstance(local, (tuple, list)) and len(local) >= 2 and type(local[1]) is int and local[1] and \
                    isinstance(remote, (tuple, list)) and len(remote) >= 2 and type(remote[1]) is int:
                self.ports.add((local[1], remote[1]))
        elif kind == "code":
            self._codes[_int(item[1])] = (_str(item[2], 1000), _str(item[3], 300))
        elif kind == "line":
            self._lines[(_int(item[1]), _int(item[2]))] = _str(item[3], 500).strip()
        elif kind == "socket":
            self._sockets[_int(item[1])] = (_str(item[2], 40), _str(item[3], 40))
        elif kind == "local":
            self._locals[_int(item[1])] = _addr(item[2])

    def _frame(self, entry: Any) -> Frame:
        if not isinstance(entry, tuple) or len(entry) != 3:
            raise BadItem
        tag, code, line = entry
        key = (_int(tag), _int(code), _int(line))
        frame = self._frames.get(key)
        if frame is None:
            file, function = self._codes.get(code, ("?", "?"))
            frame = self._frames[key] = Frame(file, line, function, self._lines.get((code, line), ""), tag)
        return frame

    def _stack(self, stack: Any) -> tuple[Frame, ...]:
        if type(stack) is not tuple or len(stack) > MAX_STACK:
            raise BadItem
        try:  # a loop's calls repeat their stack exactly (a third of them in 10,000 refused connects)
            return self._stacks[stack]
        except KeyError:
            pass
        except TypeError:  # an unhashable entry: not a stack
            raise BadItem from None
        frames = self._stacks[stack] = tuple(self._frame(e) for e in stack)
        return frames

    def _times(self, start: Any, end: Any) -> tuple[int, int]:
        start, end = _int(start), _int(end)
        if not 0 < start <= end < 1 << 62:
            raise BadItem
        return start, end

    def _call(self, item: tuple[Any, ...]) -> _Raw:
        _, cid, op, thread, tid, start, end, stack, serial, fault, local, remote, args, result, pid = item
        if op not in OPS:
            raise BadItem
        start, end = self._times(start, end)
        return _Raw(start, _int(cid), op, _str(thread, 200), _int(tid), end, self._stack(stack), _int(serial),
                    fault_from(fault), _addr(local), _addr(remote), _args(args), plain(result), _int(pid))

    def _data(self, item: tuple[Any, ...]) -> _Raw:
        """A data call that succeeded: what its socket's description holds is filled in."""
        _, cid, op, thread, tid, start, end, stack, serial, size, result, remote, pid = item
        if op not in SIZE_ARG:
            raise BadItem
        start, end = self._times(start, end)
        serial = _int(serial)
        args: dict[str, Any] = {SIZE_ARG[op]: _int(size)}
        remote = _addr(remote)
        if op == "sendto":
            args["address"] = list(remote) if remote else None
        local = self._locals.get(serial) if op in DATAGRAM_OPS else None
        if result is not None:
            result = _int(result)  # a byte count; sendall returns None
        return _Raw(start, _int(cid), op, _str(thread, 200), _int(tid), end, self._stack(stack), serial, None, local,
                    remote, args, result, _int(pid))

    @property
    def count(self) -> int:
        """Calls read so far."""
        return len(self._kept)

    def export(self) -> list[Any]:
        """Every item read, in a form `feed` takes back (descriptions first): the recording of the calls as
        raw as it came, for a file saved without its analysis (see `formats.archive`)."""
        out: list[Any] = [("code", k, file, function) for k, (file, function) in self._codes.items()]
        out += [("line", code, line, text) for (code, line), text in self._lines.items()]
        out += [("socket", k, family, kind) for k, (family, kind) in self._sockets.items()]
        out += [("local", k, list(a) if a else None) for k, a in self._locals.items()]
        return out + self._kept + self.other

    def calls(self) -> tuple[tuple[Call, ...], dict[int, int]]:
        """Every call, in start order, with ids 1, 2, ... and sockets numbered in order of appearance; and the
        map from the probe's call ids to the new ones (exceptions name the call that raised them)."""
        for item in self._pending:
            try:
                self._raw.append(self._call(item) if item[0] == "call" else self._data(item))
            except (BadItem, TypeError, ValueError):
                self.bad += 1
        self._pending.clear()
        raw = sorted(self._raw, key=lambda r: (r.start, r.key))
        new_id: dict[int, int] = {}
        sockets: dict[int, int] = {}
        out: list[Call] = []
        # the probe records a call twice when a signal lands inside its callback (see _fastpath.c shim_call):
        # one thread cannot make two calls of one op with the same start and end, so the second is the first
        first: dict[tuple[Any, ...], int] = {}
        for r in raw:
            twin = (r.pid, r.tid, r.op, r.start, r.end, r.serial)
            if twin in first:
                new_id[r.key] = first[twin]
                continue
            i = first[twin] = len(out) + 1
            new_id[r.key] = i
            sock = 0
            if r.serial:
                sock = sockets.setdefault(r.serial, len(sockets) + 1)
            family, kind = self._sockets.get(r.serial, ("", ""))
            out.append(Call(i, r.op, r.thread, r.start, r.end, r.frames, sock, family, kind, r.fault, r.local,
                            r.remote, r.args, r.result, r.pid, r.tid))
        return tuple(out), new_id


def exception_from(d: Any, new_id: dict[int, int] | None = None, depth: int = 0) -> ExceptionInfo | None:
    """An exception record (see `probe.exception_dict`) as an `ExceptionInfo`; raises BadItem when malformed."""
    if d is None or depth > MAX_DEPTH:
        return None
    if not isinstance(d, dict):
        raise BadItem
    frames = []
    for f in d.get("frames", ())[:MAX_STACK]:
        if not isinstance(f, dict):
            raise BadItem
        frames.append(Frame(_str(f["file"], 1000), _int(f["line"]), _str(f["function"], 300),
                            _str(f.get("code", ""), 500).strip(), _int(f.get("instance", 0))))
    call = d.get("call")
    if call is not None:
        call = (new_id or {}).get(_int(call)) if new_id is not None else _int(call)
    group = d.get("group") or ()
    if not isinstance(group, (list, tuple)):
        raise BadItem
    fault = fault_from(d.get("fault"))
    return ExceptionInfo(
        type=_str(d["type"], 300), message=_str(d.get("message", "")), frames=tuple(frames), fault=fault,
        call=call, cause=exception_from(d.get("cause"), new_id, depth + 1),
        context=exception_from(d.get("context"), new_id, depth + 1),
        suppress_context=bool(d.get("suppress_context", False)),
        group=tuple(e for e in (exception_from(g, new_id, depth + 1) for g in group[:MAX_PLAIN]) if e is not None),
        pid=_int(d.get("pid", 0)),
    )
