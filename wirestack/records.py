"""Plain records (the probe's JSON lines, a saved report) to model objects. Pure."""

from __future__ import annotations

from typing import Any

from .model import Addr, Call, ExceptionInfo, Frame


def _addr(value: Any) -> Addr | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[1], int):
        return (str(value[0]), value[1])
    return None


def frame_from(d: dict[str, Any]) -> Frame:
    return Frame(d["file"], int(d["line"]), d["function"], d.get("code", ""), int(d.get("instance", 0)))


def call_from(d: dict[str, Any]) -> Call:
    return Call(
        id=int(d["id"]), op=d["op"], thread=d.get("thread", ""), start_ns=int(d["start_ns"]),
        end_ns=int(d["end_ns"]), frames=tuple(frame_from(f) for f in d.get("frames", ())),
        socket=int(d.get("socket") or 0), family=d.get("family", ""), kind=d.get("type", ""),
        errno=d.get("errno"), error=d.get("error", ""), local=_addr(d.get("local")), remote=_addr(d.get("remote")),
        args=dict(d.get("args") or {}), result=d.get("result"), pid=int(d.get("pid", 0)),
    )


def exception_from(d: dict[str, Any] | None) -> ExceptionInfo | None:
    if not d:
        return None
    return ExceptionInfo(
        type=d["type"], message=d.get("message", ""), frames=tuple(frame_from(f) for f in d.get("frames", ())),
        errno=d.get("errno"), call=d.get("call"), cause=exception_from(d.get("cause")),
        context=exception_from(d.get("context")), suppress_context=bool(d.get("suppress_context", False)),
    )
