"""The raw frames on disk while the program runs: what is left if wirestack itself is killed or crashes.

While the traced program runs, every frame read from the capture is appended to a plain pcapng (no comments, no
trace) next to the output file, named `.NAME.XXXXXXXX.wirestack-spool.pcapng`. When wirestack ends normally, or is
interrupted and saves the recording, the spool is removed; only SIGKILL, a crash or a power cut leave it, and
then it holds every frame read until the last pump (about a second before the end, see `runner._pump`).

It holds the interface's whole traffic, not only the traced program's (which flows are the program's is only
known after the pairing): under sudo it stays root's, mode 0600, so that the user's program cannot read another
user's loopback traffic through it. Without sudo (and in the private-namespace mode) the traffic is the user's
own, and so is the spool.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..formats import pcapng
from .capture import Frames

SUFFIX = ".wirestack-spool.pcapng"


def spool_path(output: Path) -> Path:
    """A fresh name: a file already there (a killed run's spool, or anything planted) is never touched."""
    return output.parent / f".{output.name[:150]}.{secrets.token_hex(4)}{SUFFIX}"


class Spool:
    """Appends frames to the spool file as they are read; `remove()` when the recording is safe elsewhere."""

    def __init__(self, output: Path) -> None:
        self.path = spool_path(output)
        self.written = 0
        self._fd = -1

    def start(self, linktype: int, snaplen: int, interface: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_APPEND
        try:
            self._fd = os.open(self.path, flags, 0o600)
            os.write(self._fd, pcapng.section_header("wirestack (spool: raw frames, no trace)")
                     + pcapng.interface_description(linktype, snaplen, interface))
        except OSError:
            self._fd = -1  # no spool: the run goes on, only the crash insurance is missing

    def add(self, frames: Frames) -> None:
        """Append the frames not written yet (frames are only ever appended to `frames`)."""
        if self._fd < 0 or self.written >= len(frames):
            return
        end = len(frames)
        epb = pcapng.enhanced_packet
        chunk = b"".join(epb(t, d, n) for t, n, d in zip(frames.times[self.written:end],
                                                         frames.lengths[self.written:end],
                                                         frames.data[self.written:end], strict=True))
        try:
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:
            os.close(self._fd)
            self._fd = -1
            return
        self.written = end

    def remove(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        try:
            self.path.unlink()
        except OSError:
            pass
