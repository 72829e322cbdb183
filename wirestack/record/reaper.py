"""The traced program's other processes: what it forked, or started in a session of its own, is found and, when a
run is stopped (its timeout, a signal), ended with it.

While a run lasts, wirestack is a child subreaper (`PR_SET_CHILD_SUBREAPER`): a process the program started
whose parent exits is reparented to wirestack, not to init, so `setsid` and double forks cannot slip away. The
program's processes are then the descendants of its own pid plus whatever became wirestack's child during the
run (wirestack's own helpers were started before, and are left alone). Found through /proc (each process's
parent); kill(2) as root reaches them under sudo too. A program that ends by itself may leave processes
running, as under python: they are named in a note, not killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Iterable

PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37


def parents() -> dict[int, int]:
    """pid -> parent pid of every process this process can see."""
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # after the command name, which may hold anything
        if len(fields) > 1 and fields[0] != b"Z":
            out[int(entry)] = int(fields[1])
    return out


def _descendants(roots: Iterable[int], tree: dict[int, int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in tree.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [r for r in roots if r in tree]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def _prctl(option: int, value: int = 0) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if option == PR_GET_CHILD_SUBREAPER:
        out = ctypes.c_int(0)
        return 0 if libc.prctl(option, ctypes.byref(out), 0, 0, 0) != 0 else out.value
    return int(libc.prctl(option, value, 0, 0, 0))


class Reaper:
    """Started before the program, asked after it: `left(pid)` its processes still running, `end(pids)`."""

    def __init__(self) -> None:
        self.me = os.getpid()
        self.was = _prctl(PR_GET_CHILD_SUBREAPER)
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        self.before = {pid for pid, ppid in parents().items() if ppid == self.me}
        self.adopted: set[int] = set()

    def left(self, program: int) -> set[int]:
        """The program's processes still running (the program's own pid excluded)."""
        tree = parents()
        adopted = {pid for pid, ppid in tree.items() if ppid == self.me} - self.before - {program}
        self.adopted |= adopted
        return _descendants({program, *adopted}, tree) - {program}

    def end(self, pids: set[int], grace: float = 0.5) -> None:
        """SIGTERM, then SIGKILL for what is still there after `grace` seconds."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while sig == signal.SIGTERM and time.monotonic() < deadline:
                self._reap()
                if not pids & set(parents()):
                    return
                time.sleep(0.02)
        self._reap()

    def _reap(self) -> None:
        """Collect the adopted processes that ended (they are this process's children now, and subprocess does
        not know them)."""
        for pid in list(self.adopted):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.adopted.discard(pid)

    def close(self) -> None:
        self._reap()
        _prctl(PR_SET_CHILD_SUBREAPER, self.was)
