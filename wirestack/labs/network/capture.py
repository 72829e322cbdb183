"""Capturing on every link of a topology at once: one AF_PACKET socket per link, each opened inside its host.

    capture = LinkCapture(net, taps(net.layout))        # a FrameSource, as `record.runner.run_traced` takes it
    capture.open(); ...; capture.stop()                 # frames of all links, each with its link's id (`ifaces`)

One tap per link, not per link end: a veth hands every frame from one end to the other, so both ends would show
each frame twice. The tap sits at the end on a forwarding host when the link has one (the router: what it
receives and what it sends are then its own capture), else at the link's first end. The client's link comes
first: interface 0 of the written pcapng is the traced program's own link, the one its traceback lines up with.

Frames keep their kernel timestamps (CLOCK_REALTIME in every namespace) and are merged in time order of reading;
each socket counts its own drops. Stopping waits for a quiet gap on each link (there is no loopback marker to
drain to here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ...record.capture import LINKTYPE_ETHERNET, MAX_PACKETS, SNAPLEN, Capture, CaptureError, Frames
from .topology import Layout, Topology


@dataclass(frozen=True)
class Tap:
    """Where one link is captured: INTERFACE of HOST, on the link between hosts A and B."""

    host: str
    interface: str
    a: str
    b: str

    @property
    def name(self) -> str:
        """The pcapng interface name: host and interface, as tshark's frame.interface_name shows it."""
        return f"{self.host}/{self.interface}"

    @property
    def description(self) -> str:
        return f"{self.interface} of {self.host}, on the {self.a}\u2013{self.b} link"


def taps(layout: Layout, first: str = "client") -> list[Tap]:
    """One tap per link of LAYOUT, those of host FIRST's links first."""
    forwarding = {h.name for h in layout.hosts if h.forwarding}
    out = []
    for link in layout.links:
        end = link.b if link.b.host in forwarding and link.a.host not in forwarding else link.a
        out.append(Tap(end.host, end.name, link.a.host, link.b.host))
    return sorted(out, key=lambda t: first not in (t.a, t.b))


class LinkCapture:
    """Captures on several links of a topology (see the module docstring); the `FrameSource` interface."""

    def __init__(self, net: Topology, where: Sequence[Tap], snaplen: int = SNAPLEN,
                 max_packets: int = MAX_PACKETS) -> None:
        if not where:
            raise CaptureError("a network capture needs at least one link")
        self.net, self.taps = net, list(where)
        self.interface = ", ".join(t.name for t in self.taps)
        self.snaplen, self.max_packets = snaplen, max_packets
        self.frames = Frames()
        self.linktype = LINKTYPE_ETHERNET
        self.dropped = 0
        self._caps: list[Capture] = []
        self._over = 0  # frames over the cap, of captures already closed

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.taps)

    @property
    def over(self) -> int:
        return self._over + sum(c.over for c in self._caps)

    def open(self) -> LinkCapture:
        try:
            for tap in self.taps:
                with self.net.enter(tap.host):  # the socket stays in the host's namespace
                    self._caps.append(Capture(tap.interface, self.snaplen, self.max_packets).open())
        except BaseException:
            self.close()
            raise
        return self

    def fileno(self) -> int:
        return self._caps[0].fileno()

    def fill(self) -> float:
        return max((c.fill() for c in self._caps), default=0.0)

    def _collect(self) -> None:
        """Move what each link's capture read into `frames`, in time order within the batch."""
        batch: list[tuple[int, int, int, bytes]] = []
        for i, cap in enumerate(self._caps):
            got, cap.frames = cap.frames, Frames()
            batch += [(t, i, n, d) for t, n, d in zip(got.times, got.lengths, got.data, strict=True)]
        batch.sort(key=lambda x: (x[0], x[1]))
        f = self.frames
        for t, i, n, d in batch:
            f.times.append(t)
            f.lengths.append(n)
            f.data.append(d)
            f.ifaces.append(i)

    def pump(self, marker: tuple[bytes, bytes] | None = None) -> bool:
        for cap in self._caps:
            cap.pump()
        self._collect()
        return False

    def drain(self, timeout: float = 2.0) -> None:
        for cap in self._caps:
            cap.drain(timeout)
        self._collect()
        self.dropped = sum(c.dropped for c in self._caps)

    def take(self, since_ns: int = 0) -> Frames:
        frames, self.frames = self.frames, Frames()
        if since_ns:
            keep = [i for i, t in enumerate(frames.times) if t >= since_ns]
            frames = Frames([frames.times[i] for i in keep], [frames.lengths[i] for i in keep],
                            [frames.data[i] for i in keep], [frames.ifaces[i] for i in keep])
        return frames

    def stop(self, wait_for: Callable[[], None] | None = None, timeout: float = 2.0) -> None:
        if not self._caps:
            return
        try:
            self.drain(timeout)
        finally:
            self.close()

    def close(self) -> None:
        caps, self._caps = self._caps, []
        self._over += sum(c.over for c in caps)
        for cap in caps:
            cap.close()
