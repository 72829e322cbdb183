"""Plain records (the probe's JSON lines, a saved report) to model objects. Pure."""

from __future__ import annotations

from typing import Any

from ..model import Addr, Call, ExceptionInfo, Frame


def _addr(value: Any) -> Addr | None:
    """[host, port] or a raw sockaddr tuple (IPv6: host, port, flowinfo, scope) as (host, port)."""
    if isinstance(value, (list, tuple)) and len(value) >= 2 and isinstance(value[1], int):
        return (str(value[0]), value[1])
    return None


def frame_from(d: dict[str, Any] | Frame) -> Frame:
    if isinstance(d, Frame):
        return d
    return Frame(d["file"], int(d["line"]), d["function"], d.get("code", ""), int(d.get("instance", 0)))


def call_from(d: dict[str, Any]) -> Call:
    return Call(
        id=int(d["id"]), op=d["op"], thread=d.get("thread", ""), start_ns=int(d["start_ns"]),
        end_ns=int(d["end_ns"]), frames=tuple(frame_from(f) for f in d.get("frames", ())),
        socket=int(d.get("socket") or 0), family=d.get("family", ""), kind=d.get("type", ""),
        errno=d.get("errno"), error=d.get("error", ""), local=_addr(d.get("local")), remote=_addr(d.get("remote")),
        args=_plain_args(d.get("args") or {}), result=_plain(d.get("result")), pid=int(d.get("pid", 0)),
    )


def _plain(value: Any) -> Any:
    """Tuples (as marshal keeps them) as lists (as JSON has them): a trace reads the same live and saved."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _plain_args(args: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in args.items():
        if k == "address" and isinstance(v, (list, tuple)) and len(v) >= 2:
            v = [v[0], v[1]]  # drop IPv6 flowinfo and scope, as for local/remote
        out[str(k)] = _plain(v)
    return out


def exception_from(d: dict[str, Any] | None) -> ExceptionInfo | None:
    if not d:
        return None
    return ExceptionInfo(
        type=d["type"], message=d.get("message", ""), frames=tuple(frame_from(f) for f in d.get("frames", ())),
        errno=d.get("errno"), call=d.get("call"), cause=exception_from(d.get("cause")),
        context=exception_from(d.get("context")), suppress_context=bool(d.get("suppress_context", False)),
    )


SIZE_ARG = {"send": "bytes", "sendall": "bytes", "sendto": "bytes", "recv": "bufsize", "recv_into": "bufsize",
            "recvfrom": "bufsize"}
DATAGRAM_OPS = ("sendto", "recvfrom")  # data calls whose local address is the socket's ("local" item)


class Loader:
    """The probe's items (see `probe.Probe.flush`) as call records and the rest. Code objects, pseudo-file
    lines, sockets and datagram sockets' local addresses arrive once and are looked up after; frames are shared
    between calls (one `Frame` per frame instance and line), so 100,000 calls from one loop cost one frame
    list."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.other: list[dict[str, Any]] = []  # {"kind": "exception" | "error" | "note", ...}
        self._codes: dict[int, tuple[str, str]] = {}
        self._lines: dict[str, tuple[str, ...]] = {}
        self._sockets: dict[int, tuple[str, str]] = {}  # serial -> (family, type)
        self._locals: dict[int, Any] = {}  # serial -> local address (datagram sockets)
        self._frames: dict[tuple[int, int, int], Frame] = {}

    def feed(self, items: Any) -> None:
        """Descriptions first, then calls: a forked child's calls may name codes its parent described."""
        calls = []
        for item in items:
            if isinstance(item, dict):
                self.other.append(item)
                continue
            kind = item[0]
            if kind == "call" or kind == "data":
                calls.append(item)
            elif kind == "code":
                self._codes[item[1]] = (item[2], item[3])
            elif kind == "lines":
                self._lines[item[1]] = tuple(item[2])
            elif kind == "socket":
                self._sockets[item[1]] = (item[2], item[3])
            elif kind == "local":
                self._locals[item[1]] = item[2]
        self.calls.extend(self._call(item) if item[0] == "call" else self._data(item) for item in calls)

    def _frame(self, tag: int, code: int, line: int) -> Frame:
        key = (tag, code, line)
        frame = self._frames.get(key)
        if frame is None:
            file, function = self._codes.get(code, ("?", "?"))
            frame = self._frames[key] = Frame(file, line, function, self._source(file, line), tag)
        return frame

    def _source(self, file: str, line: int) -> str:
        if file in self._lines:
            lines = self._lines[file]
            return lines[line - 1].strip() if 0 < line <= len(lines) else ""
        import linecache

        return linecache.getline(file, line).strip()

    def _call(self, item: tuple[Any, ...]) -> dict[str, Any]:
        (_, cid, op, thread, start, end, frames, serial, family, kind, errno, error, local, remote, args, result,
         pid) = item
        return {"kind": "call", "id": cid, "op": op, "thread": thread, "start_ns": start, "end_ns": end,
                "frames": [self._frame(*f) for f in frames], "socket": serial, "family": family, "type": kind,
                "errno": errno, "error": error, "local": local, "remote": remote, "args": args, "result": result,
                "pid": pid}

    def _data(self, item: tuple[Any, ...]) -> dict[str, Any]:
        """A data call that succeeded: what its socket's description holds is filled in."""
        _, cid, op, thread, start, end, frames, serial, size, result, remote, pid = item
        family, kind = self._sockets.get(serial, ("", ""))
        datagram = op in DATAGRAM_OPS
        args = {SIZE_ARG.get(op, "bytes"): size}
        if op == "sendto":
            args["address"] = remote
        return {"kind": "call", "id": cid, "op": op, "thread": thread, "start_ns": start, "end_ns": end,
                "frames": [self._frame(*f) for f in frames], "socket": serial, "family": family, "type": kind,
                "errno": None, "error": "", "local": self._locals.get(serial) if datagram else None,
                "remote": remote, "args": args, "result": result, "pid": pid}
