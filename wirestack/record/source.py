"""Where frames come from: one interface for every capture backend, and the choice between them.

    raw       an AF_PACKET socket opened here (`capture.Capture`): root or CAP_NET_RAW
    dumpcap   Wireshark's capture program, given capture rights for its group (`dumpcap.DumpcapCapture`)
    netns     the raw socket again, in a private user + network namespace of our own (`netns`): no rights needed,
              but the program must run inside it, so only the command line can choose it (it starts itself anew)

The automatic choice takes the first that this user may use, in that order; `--capture raw|dumpcap|netns` forces
one. Every backend keeps the same promises (see `capture`): `open()` returns once the capture is live, `drain()`
reads up to a marker sent at the moment of the call, loopback frames come once, the kernel's drops are counted.
`describe()` tells which one ran, in words, for the report.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
from collections.abc import Callable
from typing import Protocol

from .capture import MAX_PACKETS, SNAPLEN, Capture, CaptureError, Frames

WANTS = ("auto", "raw", "dumpcap", "netns")
CAP_NET_RAW = 13
VFS_CAP_FLAGS_EFFECTIVE = 0x000001
RAW = "capture: raw socket (AF_PACKET)"


class FrameSource(Protocol):
    """What the runner and the shell need of a capture: the interface `capture.Capture` offers."""

    interface: str
    frames: Frames
    linktype: int
    dropped: int
    max_packets: int

    @property
    def over(self) -> int: ...

    def open(self) -> FrameSource: ...

    def fileno(self) -> int: ...

    def fill(self) -> float: ...

    def pump(self, marker: tuple[bytes, bytes] | None = None) -> bool: ...

    def drain(self, timeout: float = 2.0) -> None: ...

    def take(self, since_ns: int = 0) -> Frames: ...

    def stop(self, wait_for: Callable[[], None] | None = None, timeout: float = 2.0) -> None: ...

    def close(self) -> None: ...


def can_capture_raw() -> bool:
    """May this process open a raw AF_PACKET socket (root, CAP_NET_RAW, or root inside its own namespace)?"""
    import socket

    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
        return True
    except PermissionError:
        return False


def find_dumpcap() -> str | None:
    """dumpcap on PATH (Debian keeps it in /usr/bin; some systems in /usr/sbin)."""
    path = os.environ.get("PATH", os.defpath) + os.pathsep + "/usr/bin:/usr/sbin"
    return shutil.which("dumpcap", path=path)


def may_capture_with(path: str) -> bool:
    """May this user capture with the dumpcap at `path`: may run it, and it holds CAP_NET_RAW (file capabilities,
    as Debian's wireshark-common sets them for the `wireshark` group), is setuid root, or we are root.
    Read off the file; nothing is run."""
    if not os.access(path, os.X_OK) or CAP_NET_RAW not in bounding_set():
        return False  # no file capability or setuid bit can grant what the bounding set holds back
    if os.geteuid() == 0:
        return True
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_mode & stat.S_ISUID and st.st_uid == 0:
        return True
    return CAP_NET_RAW in file_capabilities(path)


def bounding_set() -> frozenset[int]:
    """The capabilities this process and what it runs may ever hold (CapBnd in /proc/self/status)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    bits = int(line.split()[1], 16)
                    return frozenset(i for i in range(64) if bits >> i & 1)
    except (OSError, ValueError, IndexError):
        pass
    return frozenset(range(64))  # cannot tell: assume nothing is held back


def file_capabilities(path: str) -> frozenset[int]:
    """The capabilities a file grants when run (permitted, with the effective flag set), from its
    `security.capability` attribute (struct vfs_cap_data: magic_etc, then permitted/inheritable words)."""
    try:
        raw = os.getxattr(path, "security.capability")
    except OSError:
        return frozenset()
    if len(raw) < 12:
        return frozenset()
    magic, low = struct.unpack_from("<II", raw)
    if not magic & VFS_CAP_FLAGS_EFFECTIVE:
        return frozenset()  # permitted but not raised: a program that is not capability-aware gains nothing
    high = struct.unpack_from("<I", raw, 12)[0] if len(raw) >= 20 else 0
    bits = low | high << 32
    return frozenset(i for i in range(64) if bits >> i & 1)


def dumpcap_usable() -> str | None:
    """The dumpcap this user may capture with, if any."""
    path = find_dumpcap()
    return path if path is not None and may_capture_with(path) else None


def needs_namespace(want: str) -> bool:
    """Must the command line start itself in a private namespace before capturing? (`want`: one of WANTS.)"""
    from . import netns

    if netns.inside():
        return False
    if want == "netns":
        return True
    if want in ("raw", "dumpcap"):
        return False
    return not can_capture_raw() and dumpcap_usable() is None


_opened: list[str] = []


def choose_source(interface: str, want: str = "auto", snaplen: int = SNAPLEN,
                  max_packets: int = MAX_PACKETS) -> FrameSource:
    """The backend to capture with (not yet opened). Raises `CaptureError` with a one-line reason when the one
    asked for cannot be had."""
    from . import netns

    if want not in WANTS:
        raise CaptureError(f"--capture {want}: choose one of {', '.join(WANTS[1:])}")
    chosen: FrameSource
    if want == "netns" and not netns.inside():
        raise CaptureError("--capture netns: the private namespace is made by the command line (wirestack ... "
                           "--capture netns); this process cannot move into one")
    usable = None if want != "auto" or netns.inside() or can_capture_raw() else dumpcap_usable()
    if want in ("raw", "netns") or (want == "auto" and usable is None):
        chosen = Capture(interface, snaplen, max_packets)  # without the privilege: its open() says what to do
    else:
        from .dumpcap import DumpcapCapture

        path = usable or find_dumpcap()
        if path is None:
            raise CaptureError("--capture dumpcap: dumpcap is not installed (apt-get install wireshark-common)")
        chosen = DumpcapCapture(interface, snaplen, max_packets, path)
    _opened[:] = [describe(chosen)]
    return chosen


def describe(source: object) -> str:
    """Which backend captured, as the report's header note says it."""
    from . import netns
    from .dumpcap import DumpcapCapture

    if isinstance(source, DumpcapCapture):
        return f"capture: dumpcap ({source.path}), reading its pcapng from a pipe"
    if netns.inside():
        return "capture: raw socket in a private user + network namespace (no sudo; only its own loopback)"
    return RAW


def capture_note() -> str | None:
    """The report's note on the backend `choose_source` chose last in this process (the command line runs one
    capture), or None for the raw socket of the initial namespace: the usual way, which no note repeats."""
    if not _opened or _opened[0] == RAW:
        return None
    return _opened[0]


__all__ = ["WANTS", "FrameSource", "choose_source", "describe", "capture_note", "dumpcap_usable", "needs_namespace"]
