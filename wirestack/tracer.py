"""Running a traced client: capture in this process, the client and its probe in another.

    capture.open()  ->  spawn client (probe installed)  ->  read frames + records until it exits
                    ->  capture.stop() (drain to marker)  ->  Trace

The capture socket is bound before the client starts, so no packet of the client can precede the capture. The
client runs in its own interpreter: the capture reader never shares a GIL with it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import errnos
from .capture import Capture
from .dissect import dissect
from .model import CaptureInfo, Trace
from .pairing import traced_packets
from .records import call_from, exception_from

PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
_BOOT = "import sys; sys.path.insert(0, {root!r}); from wirestack.bootstrap import main; main()"


@dataclass(frozen=True)
class Client:
    """What to run: client code as a user would type it, and the name tracebacks show for it."""

    title: str
    source: str
    filename: str


class Stop(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM (see `stop_on_signals`): end the run, keep what was recorded."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def stop_on_signals() -> None:
    def handler(signum: int, _frame: object) -> None:
        raise Stop(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


class Interrupted(Exception):
    """The run was interrupted (SIGINT/SIGTERM); `trace` holds what was recorded until then."""

    def __init__(self, trace: Trace, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.trace = trace
        self.signum = signum


OnFrame = Callable[[int, bytes], None]


def run_traced(client: Client, interface: str = "lo", timeout: float = 120.0,
               on_frame: OnFrame | None = None) -> Trace:
    """Capture on `interface` while `client` runs under the probe; return everything recorded.
    `on_frame(time_ns, raw)` is called for each frame as it is captured (live progress); raw frames, all
    traffic on the interface, so filter before showing."""
    capture = Capture(interface).open()
    started = time.time_ns()
    records: list[dict[str, Any]] = []
    signum = 0
    try:
        read_fd, write_fd = os.pipe()
        spec = json.dumps({"fd": write_fd, "source": client.source, "filename": client.filename})
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _BOOT.format(root=PACKAGE_ROOT), spec],
            pass_fds=[write_fd], stdin=subprocess.DEVNULL,
        )
        os.close(write_fd)
        try:
            _pump(capture, child, read_fd, records, timeout, on_frame)
        except (KeyboardInterrupt, Stop) as stop:
            signum = stop.signum if isinstance(stop, Stop) else signal.SIGINT
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not lose the capture
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _end_child(child)
            _read_rest(read_fd, records)
        finally:
            os.close(read_fd)
        capture.stop()
    finally:
        capture.close()
    trace = build_trace(client, capture, records, started)
    if signum:
        raise Interrupted(trace, signum)
    return trace


def _pump(capture: Capture, child: subprocess.Popen[bytes], fd: int, records: list[dict[str, Any]],
          timeout: float, on_frame: OnFrame | None = None) -> None:
    buf = bytearray()
    deadline = time.monotonic() + timeout
    open_pipe = True
    while open_pipe or child.poll() is None:
        wait = [capture.fileno()] + ([fd] if open_pipe else [])
        ready, _, _ = select.select(wait, [], [], 0.05)
        seen = len(capture.frames)
        capture.pump()
        if on_frame is not None:
            for i in range(seen, len(capture.frames)):
                on_frame(capture.frames.times[i], capture.frames.data[i])
        if fd in ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                open_pipe = False
            buf += chunk
            *lines, rest = buf.split(b"\n")
            records.extend(json.loads(line) for line in lines if line)
            buf = bytearray(rest)
        if time.monotonic() > deadline:
            _end_child(child)
            records.append({"kind": "note", "text": f"the client was stopped after {timeout:.0f} s"})
            _read_rest(fd, records)
            return


def _read_rest(fd: int, records: list[dict[str, Any]]) -> None:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    records.extend(json.loads(line) for line in data.split(b"\n") if line.strip())


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


def build_trace(client: Client, capture: Capture, records: list[dict[str, Any]], started: int) -> Trace:
    calls = tuple(call_from(r) for r in records if r.get("kind") == "call")
    exc_rec = next((r for r in records if r.get("kind") == "exception"), None)
    exit_rec = next((r for r in records if r.get("kind") == "exit"), None)
    notes = tuple(r["text"] for r in records if r.get("kind") == "note")
    frames = capture.frames
    decoded = [dissect(i + 1, t, d, capture.linktype, n)
               for i, (t, n, d) in enumerate(zip(frames.times, frames.lengths, frames.data, strict=True))]
    kept = traced_packets(calls, decoded)
    packets = tuple(replace(p, id=i + 1) for i, p in enumerate(kept))  # ids = frame numbers
    exception = exception_from(exc_rec)
    numbers = {c.errno for c in calls if c.errno} | ({exception.errno} if exception and exception.errno else set())
    info = CaptureInfo(capture.interface, None, len(packets), len(frames), capture.dropped, capture.linktype)
    return Trace(client.title, client.source, packets, calls, exception, info, started,
                 exit_rec["code"] if exit_rec else None, notes, errnos.header_defines(n for n in numbers if n))
