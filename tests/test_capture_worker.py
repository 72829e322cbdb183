"""The capture worker's protocol (`capture.CaptureWorker`): drain up to now, forget, finish. Real capture on lo."""

from __future__ import annotations

import socket
import time

import pytest

from wirestack.core.dissect import dissect
from wirestack.record.capture import CaptureWorker, Frames

pytestmark = pytest.mark.capture


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def refuse() -> int:
    port = closed_port()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port))
    return port


def flags_to(frames: Frames, port: int, linktype: int) -> list[str]:
    """Flags of the TCP frames to or from `port` (other loopback traffic is left out)."""
    packets = [dissect(i + 1, t, d, linktype, n)
               for i, (t, n, d) in enumerate(zip(frames.times, frames.lengths, frames.data, strict=True))]
    return [p.flags for p in packets if p.proto == "TCP" and port in (p.sport, p.dport)]


def test_drain_returns_everything_up_to_now_then_forgets_it() -> None:
    worker = CaptureWorker().start()
    try:
        port = refuse()
        frames, dropped = worker.drain()  # no sleep: the marker is queued behind the SYN and the RST
        assert flags_to(frames, port, worker.linktype) == ["S", "RA"] and dropped == 0
        frames, _ = worker.drain()
        assert flags_to(frames, port, worker.linktype) == []  # handed over once

        early = refuse()
        worker.forget(time.time_ns())
        late = refuse()
        frames, _ = worker.drain()
        assert flags_to(frames, early, worker.linktype) == []
        assert flags_to(frames, late, worker.linktype) == ["S", "RA"]

        last = refuse()
        capture = worker.finish()  # stdin closed: the frames still held, as `wirestack.trace()` reads them
        assert flags_to(capture.frames, last, capture.linktype) == ["S", "RA"]
        assert flags_to(capture.frames, late, capture.linktype) == []
    finally:
        worker.kill()
