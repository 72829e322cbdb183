"""Capture through Wireshark's dumpcap: for a user who may not open a raw socket but may run a dumpcap that holds
capture rights (Debian's wireshark-common: group `wireshark`, file capabilities cap_net_raw,cap_net_admin).

dumpcap writes pcapng to a pipe (`-w -`); the blocks are parsed here as they arrive (SHB, IDB, EPB, ISB), into
the same `Frames` the raw socket fills. What this keeps of the raw socket's promises, and how (measured on this
machine, dumpcap 4.0.17):
- Start barrier. dumpcap prints "Capturing on 'lo'" ~7 ms after it starts, but the first packet it sees comes
  ~500 ms later. So `open()` waits for the line, then sends probe datagrams to itself (one every 50 ms, each with
  a token of its own) until one comes back through the pipe: from then on the capture is live. Probes that arrive
  later are recognised by their token and never kept.
- Drain. As for the raw socket, a marker datagram sent to ourselves on loopback is read up to: everything the
  kernel captured before it has been read. dumpcap hands packets on in blocks of libpcap's ring, retired after a
  250 ms timeout: a drain takes ~250 ms (the raw socket's: microseconds).
- Loopback duplicates: libpcap drops the outgoing copy of each loopback frame (linux_check_direction), so each
  frame comes once, as with the raw socket's `inbound` filter.
- Bursts: dumpcap's kernel ring is as large as the raw socket's buffer (-B 64 MiB), and the pipe is widened to
  1 MiB; when it is full dumpcap waits and the ring holds the packets.
- Drops: dumpcap tells the kernel's drop count once, when it stops (its Interface Statistics Block, and its
  closing line on stderr); until then `dropped` stays 0.
Timestamps are the EPB's, in the IDB's resolution (dumpcap writes nanoseconds, if_tsresol=9).

It is long because dumpcap's pcapng stream is parsed incrementally here, beside the process that writes it.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Callable

from ..core.dissect import LINKTYPE_ETHERNET
from .capture import BUFFER_BYTES, MAX_PACKETS, SNAPLEN, CaptureError, Frames, _is_loopback

SHB, IDB, SPB, ISB, EPB = 0x0A0D0D0A, 1, 3, 5, 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
IF_TSRESOL, IF_TSOFFSET = 9, 14
ISB_IFRECV, ISB_IFDROP, ISB_OSDROP = 4, 5, 7
MAX_BLOCK = 16 << 20  # a block longer than this is no pcapng dumpcap writes
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
PIPE_BYTES = 1 << 20  # what an unprivileged process may ask for (fs.pipe-max-size)
START_TIMEOUT = 10.0
PROBE_EVERY = 0.05
QUIET_GAP = 0.6  # off loopback a drain waits for a gap longer than dumpcap's 250 ms delivery
_STATS = re.compile(r"received/dropped on interface '[^']*': (\d+)/(\d+)")


class PcapngStream:
    """pcapng bytes in, frames out: blocks are parsed as soon as they are whole. Pure (no IO)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._order = "<"
        self._interfaces: list[tuple[int, int, int]] = []  # (linktype, units per second, offset in seconds)
        self.linktype = LINKTYPE_ETHERNET
        self.linktypes: list[int] = []
        self.received = 0  # ISB: what the interface received, and dropped (the kernel's and the OS's counts)
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def pending(self) -> int:
        return len(self._buf) - self._pos

    def blocks(self, on_packet: Callable[[int, int, bytes], bool]) -> bool:
        """Parse every whole block, calling `on_packet(time_ns, wirelen, data)` for each packet; stop early (and
        return True) when it returns True. Raises `CaptureError` on bytes that are not pcapng."""
        buf, order = self._buf, self._order
        pos, end = self._pos, len(self._buf)
        try:
            while end - pos >= 12:
                kind = struct.unpack_from(order + "I", buf, pos)[0]
                if kind == SHB:
                    magic = struct.unpack_from("<I", buf, pos + 8)[0]
                    order = self._order = "<" if magic == BYTE_ORDER_MAGIC else ">"
                length = struct.unpack_from(order + "I", buf, pos + 4)[0]
                if length < 12 or length % 4 or length > MAX_BLOCK:
                    raise CaptureError(f"dumpcap wrote something that is not pcapng (a block of {length} bytes)")
                if end - pos < length:
                    break
                body = pos + 8
                stop = False
                if kind == EPB:
                    iface, high, low, caplen, wirelen = struct.unpack_from(order + "IIIII", buf, body)
                    data = bytes(buf[body + 20: body + 20 + caplen])
                    stop = on_packet(self._time(iface, high << 32 | low), wirelen, data)
                elif kind == SPB:
                    wirelen = struct.unpack_from(order + "I", buf, body)[0]
                    data = bytes(buf[body + 4: body + 4 + min(wirelen, length - 16)])
                    stop = on_packet(time.time_ns(), wirelen, data)  # a simple block has no timestamp
                elif kind == SHB:
                    self._interfaces = []
                elif kind == IDB:
                    self._interface(buf, body, pos + length - 4, order)
                elif kind == ISB:
                    self._statistics(buf, body + 12, pos + length - 4, order)
                pos += length
                if stop:
                    return True
            return False
        finally:
            self._pos = pos
            if pos > 1 << 20 or pos == len(buf):  # forget what was parsed, now and then (not per block)
                del buf[:pos]
                self._pos = 0

    def _options(self, buf: bytearray, pos: int, end: int, order: str) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        while pos + 4 <= end:
            code, size = struct.unpack_from(order + "HH", buf, pos)
            if code == 0:
                break
            out.setdefault(code, bytes(buf[pos + 4: pos + 4 + size]))
            pos += 4 + size + (-size) % 4
        return out

    def _interface(self, buf: bytearray, body: int, end: int, order: str) -> None:
        linktype, _reserved, _snaplen = struct.unpack_from(order + "HHI", buf, body)
        opts = self._options(buf, body + 8, end, order)
        resol = opts.get(IF_TSRESOL, b"\x06")[0]
        units = 2 ** (resol & 0x7F) if resol & 0x80 else 10 ** resol
        offset = struct.unpack(order + "q", opts[IF_TSOFFSET])[0] if len(opts.get(IF_TSOFFSET, b"")) == 8 else 0
        self._interfaces.append((linktype, units, offset))
        self.linktypes.append(linktype)
        if len(self._interfaces) == 1:
            self.linktype = linktype

    def _time(self, iface: int, ticks: int) -> int:
        _link, units, offset = self._interfaces[iface] if iface < len(self._interfaces) else (0, 1_000_000, 0)
        return (ticks * 1_000_000_000) // units + offset * 1_000_000_000

    def _statistics(self, buf: bytearray, pos: int, end: int, order: str) -> None:
        opts = self._options(buf, pos, end, order)

        def count(code: int) -> int:
            value = opts.get(code, b"")
            return int(struct.unpack(order + "Q", value)[0]) if len(value) == 8 else 0

        self.received = max(self.received, count(ISB_IFRECV))
        self.dropped = max(self.dropped, count(ISB_IFDROP) + count(ISB_OSDROP))


def _reason(stderr: str) -> str:
    """dumpcap's own words for why it stopped: its last "dumpcap: ..." line (the advice that follows it, and its
    complaints about capabilities it could not drop, left out), else its last line."""
    said = [line.strip() for line in stderr.splitlines() if line.strip()]
    told = [line.removeprefix("dumpcap: ") for line in said
            if line.startswith("dumpcap: ") and "cap_set_proc" not in line]
    return (told[-1] if told else said[-1] if said else "")[:300]


def _udp_ends(frame: bytes) -> tuple[int, int, bytes] | None:
    """(source port, destination port, payload) of an IPv4 UDP datagram in an Ethernet frame, else None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    start = 14 + (frame[14] & 0x0F) * 4
    if len(frame) < start + 8:
        return None
    sport, dport = struct.unpack_from("!HH", frame, start)
    return sport, dport, frame[start + 8:]


class DumpcapCapture:
    """A live capture through dumpcap, with the interface of `capture.Capture` (see `source.FrameSource`)."""

    def __init__(self, interface: str, snaplen: int = SNAPLEN, max_packets: int = MAX_PACKETS,
                 path: str = "dumpcap") -> None:
        self.interface = interface
        self.snaplen = snaplen
        self.max_packets = max_packets
        self.path = path
        self.over = 0
        self.frames = Frames()
        self.dropped = 0
        self.linktype = LINKTYPE_ETHERNET
        self.loopback = False
        self.received = 0
        self.stderr = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._stream = PcapngStream()
        self._own: set[bytes] = set()  # payloads of our probes and markers: never kept as frames
        self._own_ports: set[int] = set()
        self._eof = False

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def open(self) -> DumpcapCapture:
        self.loopback = _is_loopback(self.interface)
        argv = [self.path, "-i", self.interface, "-n", "-w", "-", "-q", "-s", str(self.snaplen),
                "-B", str(BUFFER_BYTES >> 20)]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)  # the terminal's Ctrl-C is for the program, not dumpcap
        except OSError as exc:
            raise CaptureError(f"cannot start {self.path}: {exc.strerror}") from None
        self._proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        try:
            fcntl.fcntl(proc.stdout.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # the default 64 KiB pipe: dumpcap waits more often, its ring still holds the packets
        os.set_blocking(proc.stdout.fileno(), False)
        try:
            self._wait_capturing()
            self._wait_live()
        except BaseException:
            self.close()
            raise
        return self

    def fileno(self) -> int:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        return proc.stdout.fileno()

    def fill(self) -> float:
        """How full the pipe from dumpcap is (0.0-1.0): when it is full, dumpcap waits and its ring fills."""
        if self._proc is None or self._proc.stdout is None:
            return 0.0
        fd = self._proc.stdout.fileno()
        try:
            queued = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
            size = fcntl.fcntl(fd, F_GETPIPE_SZ)
            return queued / size if size > 0 else 1.0
        except OSError:
            return 1.0

    def pump(self, marker: tuple[bytes, bytes] | None = None) -> bool:
        """Read what dumpcap wrote so far and keep its packets. True if the marker datagram was among them (it is
        not kept, and what follows it is kept for the next call): `marker` is (its UDP ports as 4 bytes, its
        payload), as for `Capture.pump`."""
        self._read()
        return self._parse(marker)

    def drain(self, timeout: float = 2.0) -> None:
        """Read everything captured up to now (loopback: up to a marker sent now; elsewhere: until a quiet gap)."""
        if self._proc is None:
            return
        if self.loopback:
            self._drain_to_marker(max(timeout, 5.0))
        else:
            self._drain_quiet(QUIET_GAP, max(timeout, 5.0))

    def take(self, since_ns: int = 0) -> Frames:
        """Hand over the frames read so far that are stamped `since_ns` or later, and forget them all."""
        frames, self.frames = self.frames, Frames()
        if since_ns and any(t < since_ns for t in frames.times):
            keep = [i for i, t in enumerate(frames.times) if t >= since_ns]
            frames = Frames([frames.times[i] for i in keep], [frames.lengths[i] for i in keep],
                            [frames.data[i] for i in keep])
        return frames

    def stop(self, wait_for: Callable[[], None] | None = None, timeout: float = 2.0) -> None:
        """Drain, then stop dumpcap and read the rest of its file (its closing statistics: the drop count)."""
        proc = self._proc
        if proc is None:
            return
        try:
            self.drain(timeout)
        finally:
            self._finish(proc)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()

    # -- internals ---------------------------------------------------------------------------------------------

    def _wait_capturing(self) -> None:
        """Until dumpcap says "Capturing on" (or fails: its own words)."""
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        deadline = time.monotonic() + START_TIMEOUT
        text = b""
        while b"Capturing on" not in text:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CaptureError(f"dumpcap did not start capturing on {self.interface} within {START_TIMEOUT:g} s")
            if not select.select([proc.stderr], [], [], left)[0]:
                continue
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:  # dumpcap is gone: its last words say why
                break
            text += chunk
        if b"Capturing on" not in text:
            proc.wait()
            reason = _reason(text.decode(errors="replace")) or f"it exited with status {proc.returncode}"
            raise CaptureError(f"dumpcap cannot capture on {self.interface}: {reason}")

    def _wait_live(self) -> None:
        """Send probe datagrams to ourselves until one comes back through dumpcap (see the module's notes)."""
        if not self.loopback:
            time.sleep(0.5)  # no probe can be sent to ourselves through another interface: dumpcap's usual delay
            self._check_running()
            return
        deadline = time.monotonic() + START_TIMEOUT
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            self._own_ports.add(port)
            ports = struct.pack("!HH", port, port)
            while True:
                token = b"wirestack-start-" + os.urandom(16).hex().encode()
                self._own.add(token)
                udp.sendto(token, udp.getsockname())
                sent = time.monotonic()
                while time.monotonic() - sent < PROBE_EVERY:
                    select.select([self.fileno()], [], [], PROBE_EVERY)
                    if self._seen_any(ports):
                        self.frames = Frames()  # nothing from before the barrier: the capture starts here
                        self.over = 0
                        return
                    self._check_running()
                if time.monotonic() > deadline:
                    raise CaptureError(f"dumpcap did not deliver a packet on {self.interface} within "
                                       f"{START_TIMEOUT:g} s")

    def _seen_any(self, ports: bytes) -> bool:
        self._read()
        found = [False]
        own = self._own

        def on_packet(t: int, wirelen: int, data: bytes) -> bool:
            ends = _udp_ends(data)
            if ends is not None and ends[2] in own and struct.pack("!HH", ends[0], ends[1]) == ports:
                found[0] = True
                return True
            return False

        self._stream.blocks(on_packet)
        self.linktype = self._stream.linktype
        return found[0]

    def _check_running(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            rest = proc.stderr.read().decode(errors="replace") if proc.stderr is not None else ""
            raise CaptureError(f"dumpcap stopped capturing on {self.interface}: "
                               f"{_reason(rest) or f'it exited with status {proc.returncode}'}")

    def _read(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None or self._eof:
            return
        fd = proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except BlockingIOError:
                return
            if not chunk:
                self._eof = True
                return
            self._stream.feed(chunk)

    def _parse(self, marker: tuple[bytes, bytes] | None) -> bool:
        frames, own, cap = self.frames, self._own, self.max_packets
        times, lengths, data = frames.times, frames.lengths, frames.data

        def on_packet(t: int, wirelen: int, frame: bytes) -> bool:
            if frame[23:24] == b"\x11":  # UDP: perhaps one of ours (the marker, a late start probe)
                ends = _udp_ends(frame)
                if ends is not None and ends[0] == ends[1] and ends[0] in self._own_ports:
                    if marker is not None and struct.pack("!HH", ends[0], ends[1]) == marker[0] and \
                            marker[1].startswith(ends[2]):
                        return True
                    if any(token.startswith(ends[2]) for token in own):
                        return False
            if len(data) >= cap:
                self.over += 1
                return False
            times.append(t)
            lengths.append(wirelen)
            data.append(frame)
            return False

        found = self._stream.blocks(on_packet)
        self.linktype = self._stream.linktype
        return found

    def _drain_to_marker(self, timeout: float) -> None:
        token = b"wirestack-drain-" + os.urandom(16).hex().encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            self._own_ports.add(port)
            self._own.add(token)
            udp.sendto(token, udp.getsockname())
            marker = (struct.pack("!HH", port, port), token)
            deadline = time.monotonic() + timeout
            while not self.pump(marker):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CaptureError("capture did not drain: the marker packet never came back from dumpcap")
                self._check_running()
                select.select([self.fileno()], [], [], min(left, 0.05))

    def _drain_quiet(self, gap: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = len(self.frames) + self.over
            self.pump()
            if len(self.frames) + self.over == before and not select.select([self.fileno()], [], [], gap)[0]:
                return

    def _finish(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop dumpcap (SIGTERM: it closes its file with the statistics block), read to the end, count drops."""
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10.0
            while not self._eof and time.monotonic() < deadline:
                select.select([self.fileno()], [], [], 0.1)
                self._read()
            self._parse(None)
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.stderr = proc.stderr.read().decode(errors="replace") if proc.stderr is not None else ""
        finally:
            self.close()
        stats = _STATS.search(self.stderr)
        told = (int(stats.group(1)), int(stats.group(2))) if stats else (0, 0)
        self.received = max(self._stream.received, told[0])
        self.dropped = max(self._stream.dropped, told[1])


__all__ = ["DumpcapCapture", "PcapngStream"]
