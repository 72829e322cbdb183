"""Fakes for the seams, shipped for tests (the project's and a user's): a frame source and a renderer.

    FakeSource(frames)     a `record.source.FrameSource` that hands out given frames, as a capture would:
                           run a traced program without the privilege to capture, or replay a pcap
    FakeRenderer()         a `output.renderers.Renderer` that renders a report's counts
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ..core.dissect import LINKTYPE_ETHERNET
from ..record.capture import Frames
from ..record.source import FrameSource
from ..report import Report


class FakeSource:
    """Frames given up front, handed out by `pump` as a live capture hands out what the kernel queued; no
    privilege, no socket. `fileno()` is a pipe that never becomes readable."""

    def __init__(self, frames: Iterable[tuple[int, bytes]] = (), linktype: int = LINKTYPE_ETHERNET,
                 interface: str = "fake") -> None:
        self.interface = interface
        self.linktype = linktype
        self.frames = Frames()
        self.dropped = 0
        self.over = 0
        self.max_packets = 5_000_000
        self._pending = list(frames)
        self._pipe: tuple[int, int] | None = None

    @classmethod
    def from_pcap(cls, path: str | Path) -> FakeSource:
        """Replay a capture file's packets (read with `formats.reader`)."""
        from ..formats import reader

        cf = reader.load(path)
        linktype = cf.links[0] if len(cf.links) else LINKTYPE_ETHERNET
        return cls(((cf.times[i], cf.raw(i + 1)) for i in range(len(cf))), linktype)

    def open(self) -> FakeSource:
        self._pipe = os.pipe()
        return self

    def fileno(self) -> int:
        assert self._pipe is not None
        return self._pipe[0]

    def fill(self) -> float:
        return 0.0

    def pump(self, marker: tuple[bytes, bytes] | None = None) -> bool:
        for t, data in self._pending:
            self.frames.times.append(t)
            self.frames.lengths.append(len(data))
            self.frames.data.append(data)
        self._pending.clear()
        return marker is not None

    def drain(self, timeout: float = 2.0) -> None:
        self.pump()

    def take(self, since_ns: int = 0) -> Frames:
        frames, self.frames = self.frames, Frames()
        return frames

    def stop(self, wait_for: Callable[[], None] | None = None, timeout: float = 2.0) -> None:
        self.drain(timeout)
        self.close()

    def close(self) -> None:
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None


class FakeRenderer:
    """Renders what a report holds, in one line: for tests of code that picks and calls renderers."""

    name: str = "fake"
    extensions: tuple[str, ...] = (".fake",)

    def render(self, report: Report) -> str:
        t = report.trace
        return f"{len(t.packets)} packets, {len(t.calls)} calls, {len(report.facts)} facts\n"


def _conforms(source: FakeSource) -> FrameSource:
    return source  # mypy checks here that FakeSource has everything the runner needs of a capture
