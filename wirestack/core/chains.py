"""Walking an exception's chain (causes, contexts, an ExceptionGroup's members). Pure."""

from __future__ import annotations

from collections.abc import Iterator

from ..model import ExceptionInfo


def linked(exc: ExceptionInfo | None) -> list[ExceptionInfo]:
    """The exception, then everything chained to it (causes, contexts, group members), each once."""
    out: list[ExceptionInfo] = []
    seen: set[int] = set()
    todo = [exc] if exc is not None else []
    while todo:
        e = todo.pop(0)
        if id(e) not in seen:
            seen.add(id(e))
            out.append(e)
            todo += [x for x in (e.cause, e.context) if x is not None]
            todo += list(e.group)
    return out


def chain(exc: ExceptionInfo | None) -> list[ExceptionInfo]:
    """The exceptions in the order Python prints them: the innermost cause or context first."""
    out: list[ExceptionInfo] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.insert(0, exc)
        exc = exc.cause if exc.cause is not None else (None if exc.suppress_context else exc.context)
    return out


def frames_of(exc: ExceptionInfo) -> Iterator[int]:
    """Frame instances of every traceback of the exception and what is linked to it."""
    for e in linked(exc):
        for f in e.frames:
            yield f.instance
