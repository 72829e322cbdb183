"""Live progress while a scenario runs: SYNs as they are captured, and a status line for long runs.

`Watch` is the state, fed one captured frame at a time (`runner.run_traced(..., on_frame=watch.on_frame)`); it
keeps only the frames to or from the scenario's port, and returns no text itself. `Live` turns it into text on a
stream it is given (the CLI hands it standard error):

- each retransmitted SYN is written as a line the moment it is captured (the first SYN with it), with the gap
  to the one before and when the next one is expected. The expectation follows Linux: the first wait is the
  initial retransmission timeout (1 s, RFC 6298); since Linux 6.7 the first `net.ipv4.tcp_syn_linear_timeouts`
  retransmissions (4 by default; read from /proc when present, else 0) wait as long as the first, and after
  those each wait doubles. The first measured wait replaces the 1 s once it is known;
- on a terminal, once the run has lasted a second, a status line (redrawn in place, erased at the end) shows
  the time, the packets seen on the port and, while a SYN waits for an answer, the time to the next expected SYN.

The lines are predictions and counts for the impatient; the report afterwards rests on the capture alone.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..core.dissect import dissect
from ..explain.wording import duration, endpoint
from ..model import Packet

INITIAL_RTO_NS = 1_000_000_000  # Linux's TCP_TIMEOUT_INIT (RFC 6298): the first wait for a SYN's answer
LINEAR_SYSCTL = "/proc/sys/net/ipv4/tcp_syn_linear_timeouts"


def linear_timeouts(path: str = LINEAR_SYSCTL) -> int:
    """How many SYN retransmissions keep the first wait before the waits double (0 before Linux 6.7)."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


def expected_gap_ns(retransmission: int, first_gap_ns: int, linear: int) -> int:
    """The wait before retransmission number `retransmission` (1 = the first copy after the original SYN)."""
    return first_gap_ns << max(0, retransmission - 1 - linear)
STATUS_AFTER_NS = 1_000_000_000  # the status line appears once a run has lasted this long
TICK = 0.1


@dataclass
class Syn:
    """One connection attempt seen on the wire: the SYNs with one ISN from one source port."""

    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    times: list[int] = field(default_factory=list)
    answered: bool = False

    def next_expected_ns(self, linear: int) -> int:
        """When the next retransmission is due, from the first measured wait (or 1 s before there is one)."""
        first = self.times[1] - self.times[0] if len(self.times) > 1 else INITIAL_RTO_NS
        return self.times[-1] + expected_gap_ns(len(self.times), first, linear)


class Watch:
    """What has been captured on one port so far. `on_frame` returns the lines worth printing now."""

    def __init__(self, port: int, linktype: int = 1, linear: int | None = None) -> None:
        self.port = port % 65536  # what getaddrinfo does with larger ones
        self.linktype = linktype
        self.linear = linear_timeouts() if linear is None else linear
        self.packets = 0
        self.attempts: list[Syn] = []

    def on_frame(self, time_ns: int, raw: bytes) -> list[str]:
        return self.on_packet(dissect(0, time_ns, raw, self.linktype))

    def on_packet(self, p: Packet) -> list[str]:
        if p.proto not in ("TCP", "UDP") or self.port not in (p.sport, p.dport):
            return []
        self.packets += 1
        if p.proto != "TCP":
            return []
        src, dst = (p.src, p.sport), (p.dst, p.dport)
        if "S" in p.flags and "A" not in p.flags and p.dport == self.port:
            syn = next((s for s in self.attempts if s.src == src and s.dst == dst and s.seq == p.seq), None)
            if syn is None:
                self.attempts.append(Syn(src, dst, p.seq, [p.time_ns]))
                return []
            syn.times.append(p.time_ns)
            return self._retransmitted(syn)
        for s in self.attempts:  # an answer from the peer's side ends the wait
            if s.src == dst and s.dst == src and ("R" in p.flags or "S" in p.flags):
                s.answered = True
        return []

    def _retransmitted(self, syn: Syn) -> list[str]:
        t0 = syn.times[0]
        lines = []
        if len(syn.times) == 2:
            lines.append(f"SYN #1 {endpoint(*syn.src)} → {endpoint(*syn.dst)} at +0.00 s")
        n = len(syn.times)
        gap = syn.times[-1] - syn.times[-2]
        nxt = syn.next_expected_ns(self.linear)
        how = "the same wait" if nxt - syn.times[-1] <= gap * 5 // 4 else "a doubled wait"
        lines.append(f"SYN #{n} at +{(syn.times[-1] - t0) / 1e9:.2f} s, {duration(gap)} after SYN #{n - 1}: "
                     f"retransmitted; next expected in ~{duration(nxt - syn.times[-1])} "
                     f"(at +{(nxt - t0) / 1e9:.2f} s, {how})")
        return lines

    def waiting(self) -> Syn | None:
        """The latest connection attempt still without an answer."""
        return next((s for s in reversed(self.attempts) if not s.answered), None)

    def status(self, now_ns: int, started_ns: int) -> str:
        """'3.1 s · SYN #4 unanswered, next expected in ~1.0 s · 4 packets on port 2525' (most telling first)."""
        parts = [f"{(now_ns - started_ns) / 1e9:.1f} s"]
        syn = self.waiting()
        if syn is not None:
            left = syn.next_expected_ns(self.linear) - now_ns
            when = (f"next expected in ~{left / 1e9:.1f} s" if left > 50_000_000 else
                    "next expected now" if left > -500_000_000 else "no further SYN yet")
            parts.append(f"SYN #{len(syn.times)} unanswered, {when}")
        parts.append(f"{self.packets} packet{'' if self.packets == 1 else 's'} on port {self.port}")
        return " · ".join(parts)


def columns(fd: int, default: int = 80) -> int:
    """The width of the terminal on `fd`."""
    try:
        return os.get_terminal_size(fd).columns or default
    except OSError:
        return default


class Live:
    """Writes a `Watch`'s lines to `write`, and on a terminal (`status=True`) a status line, redrawn in place
    by a small thread every 0.1 s once the run has lasted a second."""

    def __init__(self, watch: Watch, write: Callable[[str], object], title: str, status: bool,
                 clock: Callable[[], int] = time.time_ns, columns: int = 80) -> None:
        self.watch = watch
        self._columns = max(columns, 20)
        self._write = write
        self._title = title
        self._status = status
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown = False
        self.started_ns = clock()

    def on_frame(self, time_ns: int, raw: bytes) -> None:
        with self._lock:
            lines = self.watch.on_frame(time_ns, raw)
            if lines:
                self._erase()
                for line in lines:
                    self._write(f"wirestack {self._title}: {line}\n")
                self._draw()

    def __enter__(self) -> Live:
        self.started_ns = self._clock()
        if self._status:
            self._thread = threading.Thread(target=self._tick, name="wirestack-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        with self._lock:
            self._erase()

    def _tick(self) -> None:
        while not self._stop.wait(TICK):
            with self._lock:
                self._draw()

    def _draw(self) -> None:
        now = self._clock()
        if not self._status or self._stop.is_set() or now - self.started_ns < STATUS_AFTER_NS:
            return
        line = f"wirestack {self._title}: {self.watch.status(now, self.started_ns)}"
        if len(line) >= self._columns:  # a wrapped line could not be redrawn in place
            line = line[: self._columns - 2] + "…"
        self._write(f"\r\x1b[K{line}")
        self._shown = True

    def _erase(self) -> None:
        if self._shown:
            self._write("\r\x1b[K")
            self._shown = False
