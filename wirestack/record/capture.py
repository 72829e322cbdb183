"""Packet capture on one interface: a raw AF_PACKET socket, read without decoding.

What this does and why (each point measured on this machine, see shared/DESIGN.md):
- The socket is opened with protocol 0 and only then bound to (iface, ETH_P_ALL), after the filter is attached:
  nothing unfiltered slips in, and once `open()` returns the capture is live. That is the start barrier.
- On loopback every frame passes the tap twice (outgoing and incoming copy). A classic BPF program equal to
  tcpdump's `inbound` drops the outgoing copy in the kernel, so Wireshark shows no false retransmissions;
  PACKET_IGNORE_OUTGOING (Linux >= 4.20) spares the kernel making that copy at all: measured on a 106,000-packet
  burst, the sender's extra time fell from 27% to 18% of its untraced run.
  Other interfaces keep both directions.
- A large receive buffer (SO_RCVBUFFORCE, 64 MiB) rides out bursts; frames are kept as raw bytes with their
  kernel timestamps (SO_TIMESTAMPNS, CLOCK_REALTIME) and decoded later, only where needed.
- Stopping: a marker datagram sent to ourselves on loopback is queued behind everything captured so far;
  reading up to it drains the socket. On other interfaces the reader waits for a quiet gap instead.
- The kernel's drop counter (PACKET_STATISTICS) is read at the end and reported, never hidden.

It is long because the raw capture's start barrier, BPF filter, ring of frames and marker-based stop belong
together.
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.dissect import LINKTYPE_ETHERNET, LINKTYPE_RAW
from ..errors import CaptureError as CaptureError

if TYPE_CHECKING:
    import subprocess

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SO_MEMINFO = 55
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772
ARPHRD_RAW_IP = (0xFFFE, 519, 768, 776)  # ARPHRD_NONE, ARPHRD_RAWIP, ARPHRD_TUNNEL, ARPHRD_SIT

# tcpdump -d inbound:  ld #pktType; jeq #PACKET_OUTGOING, drop, accept
_INBOUND_BPF = [(0x20, 0, 0, 0xFFFFF004), (0x15, 0, 1, PACKET_OUTGOING), (0x06, 0, 0, 0), (0x06, 0, 0, 0x40000)]

BUFFER_BYTES = 64 << 20
SNAPLEN = 262144
MAX_PACKETS = 5_000_000  # the default cap: about 1 GB of memory by the time it is reached


@dataclass
class Frames:
    """Captured frames, compact: parallel lists of kernel timestamps, wire lengths and raw bytes."""

    times: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    ifaces: list[int] = field(default_factory=list)  # interface id of each frame (several links); empty: all 0

    def __len__(self) -> int:
        return len(self.data)


def _sock_fprog(program: list[tuple[int, int, int, int]]) -> tuple[bytes, ctypes.Array[ctypes.c_char]]:
    insns = b"".join(struct.pack("HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(insns, len(insns))
    return struct.pack("HL", len(program), ctypes.addressof(buf)), buf  # keep buf alive while attaching


class Capture:
    """A live capture. Use `open()`, then `pump()` while the client runs, then `stop()`."""

    def __init__(self, interface: str, snaplen: int = SNAPLEN, max_packets: int = MAX_PACKETS) -> None:
        self.interface = interface
        self.snaplen = snaplen
        self.max_packets = max_packets
        self.over = 0  # frames seen after max_packets was reached (read, counted, not kept)
        self.frames = Frames()
        self.dropped = 0
        self.linktype = LINKTYPE_ETHERNET
        self.loopback = False
        self._sock: socket.socket | None = None
        self._buf = bytearray(snaplen)
        self._view = memoryview(self._buf)
        self._anc = socket.CMSG_SPACE(16)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def open(self) -> Capture:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise CaptureError(f"capturing on {self.interface} needs root or CAP_NET_RAW: run it with sudo") from None
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, BUFFER_BYTES)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.loopback = _is_loopback(self.interface)
            if self.loopback:
                prog, keep = _sock_fprog(_INBOUND_BPF)
                sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
                del keep
                try:  # Linux >= 4.20: the outgoing copy is not even made (cheaper for the sender than the filter)
                    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                except OSError:
                    pass  # the filter alone keeps it out
            sock.bind((self.interface, ETH_P_ALL))
        except OSError as exc:
            sock.close()
            if exc.errno == 19:  # ENODEV
                raise CaptureError(f"no such interface: {self.interface} (see `ip link`)") from None
            raise CaptureError(f"cannot capture on {self.interface}: {exc.strerror}") from None
        hatype = sock.getsockname()[3]
        if hatype in ARPHRD_RAW_IP:
            self.linktype = LINKTYPE_RAW
        elif hatype not in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
            sock.close()
            raise CaptureError(f"cannot capture on {self.interface}: link type {hatype} is not supported")
        self._sock = sock
        self._read_stats()  # reset the counters: count from here on
        self.dropped = 0
        return self

    def fill(self) -> float:
        """How full the socket's receive buffer is (0.0-1.0), from SO_MEMINFO; 1.0 if the kernel won't say."""
        if self._sock is None:
            return 0.0
        try:
            raw = self._sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 36)
            rmem_alloc, rcvbuf = struct.unpack_from("II", raw)
            return rmem_alloc / rcvbuf if rcvbuf else 1.0
        except OSError:
            return 1.0

    def fileno(self) -> int:
        assert self._sock is not None
        return self._sock.fileno()

    def pump(self, marker: tuple[bytes, bytes] | None = None) -> bool:
        """Read every frame queued now, without blocking. True if the marker datagram was among them (it is not
        kept): `marker` is (its UDP ports as they sit in the frame, its payload); with a short snap length only
        the part of the payload that was kept is compared."""
        sock = self._sock
        assert sock is not None
        times, lengths, data = self.frames.times, self.frames.lengths, self.frames.data
        view, snap = self._view, self.snaplen
        while True:
            try:
                n, anc, _flags, _addr = sock.recvmsg_into([view], self._anc, socket.MSG_DONTWAIT | socket.MSG_TRUNC)
            except BlockingIOError:
                return False
            frame = bytes(view[: min(n, snap)])
            if marker is not None and frame[34:38] == marker[0] and frame[23:24] == b"\x11":
                payload = frame[42:]
                if marker[1].startswith(payload):
                    return True
            if len(data) >= self.max_packets:
                self.over += 1
                continue
            ts = 0
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    ts = sec * 1_000_000_000 + nsec
            times.append(ts or time.time_ns())
            lengths.append(n)
            data.append(frame)

    def drain(self, timeout: float = 2.0) -> None:
        """Read everything captured up to now (loopback: up to a marker sent now; elsewhere: until a quiet gap)
        and add the kernel's drop counter; the capture stays open."""
        if self.loopback:
            self._drain_to_marker(timeout)
        else:
            self._drain_quiet(0.2, timeout)
        self._read_stats()

    def take(self, since_ns: int = 0) -> Frames:
        """Hand over the frames read so far that are stamped `since_ns` or later, and forget them all."""
        frames, self.frames = self.frames, Frames()
        if since_ns and any(t < since_ns for t in frames.times):
            keep = [i for i, t in enumerate(frames.times) if t >= since_ns]
            frames = Frames([frames.times[i] for i in keep], [frames.lengths[i] for i in keep],
                            [frames.data[i] for i in keep])
        return frames

    def stop(self, wait_for: Callable[[], None] | None = None, timeout: float = 2.0) -> None:
        """Drain everything captured up to now, read the drop counter, close the socket."""
        sock = self._sock
        if sock is None:
            return
        try:
            self.drain(timeout)
        finally:
            sock.close()
            self._sock = None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- internals ---------------------------------------------------------------------------------------------

    def _drain_to_marker(self, timeout: float) -> None:
        token = b"wirestack-drain-" + os.urandom(16).hex().encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            udp.sendto(token, udp.getsockname())
            marker = (struct.pack("!HH", port, port), token)  # IPv4 over Ethernet: UDP ports at offset 34
            deadline = time.monotonic() + timeout
            while not self.pump(marker):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CaptureError("capture did not drain: the marker packet never arrived")
                select.select([self.fileno()], [], [], left)

    def _drain_quiet(self, gap: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = len(self.frames)
            self.pump()
            if len(self.frames) == before and not select.select([self.fileno()], [], [], gap)[0]:
                return

    def _read_stats(self) -> None:
        if self._sock is None:
            return
        raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        _packets, drops = struct.unpack("II", raw)  # reading resets the kernel's counters
        self.dropped += drops


def _is_loopback(interface: str) -> bool:
    try:
        with open(f"/sys/class/net/{interface}/flags") as f:
            return bool(int(f.read(), 16) & 0x8)  # IFF_LOOPBACK
    except (OSError, ValueError):
        return interface == "lo"


__all__ = ["Capture", "CaptureError", "CaptureWorker", "Frames", "LINKTYPE_ETHERNET", "LINKTYPE_RAW"]


# -- a capture in its own process (for `wirestack.trace()` and the pytest plugin, where the traced program is the
# -- process that wants the packets: the capture must not share its GIL) ------------------------------------------

PUMP_INTERVAL = 0.05  # seconds between reads of the capture socket in the worker
WORKER_BOOT = ("import sys; sys.path.insert(0, {root!r}); from wirestack.record.capture import worker_main; "
               "worker_main()")
_FRAME = struct.Struct("<qII")


def worker_main() -> None:
    """`python -c WORKER_BOOT IFACE`: capture until stdin closes, then write the frames to stdout.

    Protocol. The worker first writes "ready\n", or "error MESSAGE\n" and exits 2. Then it reads commands,
    one per line, on stdin:
    - "drain": read everything captured up to now (the marker on loopback), then write
      "drained COUNT DROPPED LINKTYPE SIZE\n" and SIZE bytes holding COUNT frame records, and forget those
      frames (DROPPED: the kernel's drops since the previous reply). On failure: "error MESSAGE\n".
    - "forget NS": from now on, leave out frames stamped before NS (and drop those held now). No reply.
    When stdin closes: drain, write "frames COUNT DROPPED LINKTYPE\n" and the records of every frame still
    held, exit. A frame record is (time_ns, wirelen, caplen) as "<qII", then the caplen raw bytes."""
    import sys

    out = sys.stdout.buffer
    try:
        capture = Capture(sys.argv[1]).open()
    except CaptureError as exc:
        out.write(f"error {exc}\n".encode())
        out.flush()
        sys.exit(2)
    out.write(b"ready\n")
    out.flush()
    stdin = sys.stdin.buffer.fileno()
    pending, floor, reported = b"", 0, 0
    while True:
        # Wake for commands, and every PUMP_INTERVAL to empty the socket; not for each frame: on a busy machine a
        # reader woken per packet preempts the traced program at every packet (measured: connect() on loopback
        # took 1.3 ms instead of 0.1 ms with two cores and other load). The 64 MiB buffer holds the frames meanwhile.
        ready, _, _ = select.select([stdin], [], [], PUMP_INTERVAL)
        capture.pump()
        if stdin not in ready:
            continue
        chunk = os.read(stdin, 4096)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, _, pending = pending.partition(b"\n")
            command, _, arg = line.decode().partition(" ")
            if command == "forget":
                floor = int(arg)
                capture.frames = capture.take(floor)
            elif command == "drain":
                try:
                    capture.drain()
                except CaptureError as exc:
                    out.write(f"error {exc}\n".encode())
                    out.flush()
                    continue
                taken = capture.take(floor)
                body = _pack_frames(taken)
                out.write(f"drained {len(taken)} {capture.dropped - reported} {capture.linktype} {len(body)}\n"
                          .encode())
                out.write(body)
                out.flush()
                reported = capture.dropped
    capture.stop()
    frames = capture.take(floor)
    try:
        out.write(f"frames {len(frames)} {capture.dropped} {capture.linktype}\n".encode())
        out.write(_pack_frames(frames))
        out.flush()
    except BrokenPipeError:  # whoever started us is gone: nobody wants the frames
        pass


def _pack_frames(frames: Frames) -> bytes:
    return b"".join(_FRAME.pack(t, n, len(d)) + d
                    for t, n, d in zip(frames.times, frames.lengths, frames.data, strict=True))


def _unpack_frames(body: bytes, count: int) -> Frames:
    frames = Frames()
    pos = 0
    for _ in range(count):
        t, n, size = _FRAME.unpack_from(body, pos)
        pos += _FRAME.size
        frames.times.append(t)
        frames.lengths.append(n)
        frames.data.append(bytes(body[pos : pos + size]))
        pos += size
    return frames


def read_worker_frames(data: bytes, interface: str) -> Capture:
    """The frames a worker wrote when its stdin closed, as a stopped `Capture` (what `runner.build_trace` reads)."""
    head, _, body = data.partition(b"\n")
    _, count, dropped, linktype = head.split()
    capture = Capture(interface)
    capture.dropped, capture.linktype = int(dropped), int(linktype)
    capture.frames = _unpack_frames(body, int(count))
    return capture


class CaptureWorker:
    """A capture running in its own process (`worker_main`), driven over its stdin and stdout.

    `start()` returns once the capture is live (or raises `CaptureError` with the worker's one-line reason);
    `drain()` is the sync point: it returns every frame captured since the previous drain, up to the moment
    of the call; `forget(ns)` drops frames stamped before `ns` without a round trip; `finish()` closes stdin
    and returns what was left as a stopped `Capture`; `kill()` ends it without a word. Every wait is bounded.
    """

    def __init__(self, interface: str = "lo", timeout: float = 10.0) -> None:
        self.interface = interface
        self.timeout = timeout
        self.linktype = LINKTYPE_ETHERNET
        self._proc: subprocess.Popen[bytes] | None = None
        self._buf = b""

    def start(self) -> CaptureWorker:
        import subprocess

        root = str(Path(__file__).resolve().parent.parent.parent)
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", WORKER_BOOT.format(root=root), self.interface],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._proc = proc
        try:
            line = self._line()
        except CaptureError:
            self.kill()
            raise CaptureError("the capture process did not start") from None
        if line != "ready":
            self.kill()
            raise CaptureError(line.removeprefix("error ") or "the capture process did not start")
        return self

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else 0

    def forget(self, before_ns: int) -> None:
        self._send(f"forget {before_ns}\n")

    def drain(self) -> tuple[Frames, int]:
        """(frames captured since the previous drain, the kernel's drops since then)."""
        self._send("drain\n")
        line = self._line()
        if not line.startswith("drained "):
            raise CaptureError(line.removeprefix("error ") or "the capture process did not answer")
        _, count, dropped, linktype, size = line.split()
        self.linktype = int(linktype)
        return _unpack_frames(self._exactly(int(size)), int(count)), int(dropped)

    def finish(self, timeout: float = 60.0) -> Capture:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            data, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise CaptureError("the capture process did not finish") from None
        self._proc = None
        return read_worker_frames(self._buf + data, self.interface)

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()

    # -- pipes ---------------------------------------------------------------------------------------------------

    def _send(self, command: str) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise CaptureError("the capture process is not running")
        try:
            proc.stdin.write(command.encode())
            proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise CaptureError("the capture process has ended") from None

    def _fill(self, deadline: float) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise CaptureError(f"the capture process did not answer within {self.timeout:g} s")
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            raise CaptureError("the capture process has ended")
        self._buf += chunk

    def _line(self) -> str:
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buf:
            self._fill(deadline)
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode(errors="replace").strip()

    def _exactly(self, size: int) -> bytes:
        deadline = time.monotonic() + self.timeout
        while len(self._buf) < size:
            self._fill(deadline)
        data, self._buf = self._buf[:size], self._buf[size:]
        return data
