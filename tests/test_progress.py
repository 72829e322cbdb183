"""Live progress on hand-made frames and a fake clock: SYN lines, predictions, the status line."""

from __future__ import annotations

import socket
import struct

from builders import CLIENT, T0, tcp

from wirestack.labs.progress import Live, Watch, expected_gap_ns, linear_timeouts

S = 1_000_000_000
PORT = 2525
TARGET = ("127.0.0.1", PORT)


def frame(src: tuple[str, int], dst: tuple[str, int], flags: int, seq: int = 7) -> bytes:
    """Ethernet + IPv4 + TCP headers, as the capture hands them to on_frame."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    tcp_header = struct.pack("!HHIIHHHH", src[1], dst[1], seq, 0, (5 << 12) | flags, 65535, 0, 0)
    return bytes(12) + b"\x08\x00" + ip + tcp_header


SYN, RST_ACK, SYN_ACK = 0x02, 0x14, 0x12


def test_expected_waits_follow_linear_then_doubling() -> None:
    assert [expected_gap_ns(n, S, 4) // S for n in range(1, 8)] == [1, 1, 1, 1, 1, 2, 4]
    assert [expected_gap_ns(n, S, 0) // S for n in range(1, 5)] == [1, 2, 4, 8]


def test_linear_timeouts_reads_the_sysctl_or_says_zero(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "v").write_text("4\n")
    assert linear_timeouts(str(tmp_path / "v")) == 4
    assert linear_timeouts(str(tmp_path / "missing")) == 0


def test_retransmitted_syns_are_announced_with_the_next_expected_one() -> None:
    watch = Watch(PORT, linear=0)
    assert watch.on_frame(T0, frame(CLIENT, TARGET, SYN)) == []  # a first SYN alone is not news
    lines = watch.on_frame(T0 + 1_020_000_000, frame(CLIENT, TARGET, SYN))
    assert lines == ["SYN #1 127.0.0.1:40000 → 127.0.0.1:2525 at +0.00 s",
                     "SYN #2 at +1.02 s, 1.02 s after SYN #1: retransmitted; next expected in ~2.04 s "
                     "(at +3.06 s, a doubled wait)"]
    lines = watch.on_frame(T0 + 3_050_000_000, frame(CLIENT, TARGET, SYN))
    assert lines == ["SYN #3 at +3.05 s, 2.03 s after SYN #2: retransmitted; next expected in ~4.08 s "
                     "(at +7.13 s, a doubled wait)"]


def test_linear_kernels_get_the_same_wait_predicted() -> None:
    watch = Watch(PORT, linear=4)
    watch.on_frame(T0, frame(CLIENT, TARGET, SYN))
    lines = watch.on_frame(T0 + 1_010_000_000, frame(CLIENT, TARGET, SYN))
    assert lines[-1].endswith("next expected in ~1.01 s (at +2.02 s, the same wait)")


def test_other_ports_and_new_connections_are_not_retransmissions() -> None:
    watch = Watch(PORT, linear=0)
    assert watch.on_frame(T0, frame(CLIENT, ("127.0.0.1", 80), SYN)) == []
    watch.on_frame(T0, frame(CLIENT, TARGET, SYN, seq=1))
    assert watch.on_frame(T0 + S, frame(CLIENT, TARGET, SYN, seq=2)) == []  # another ISN: a new attempt
    assert watch.packets == 2 and len(watch.attempts) == 2
    assert watch.on_frame(T0, b"\x00" * 10) == []  # not IP at all


def test_status_counts_down_to_the_next_syn_until_answered() -> None:
    watch = Watch(PORT, linear=0)
    watch.on_packet(tcp(1, 0, CLIENT, TARGET, "S", seq=7))
    assert watch.status(T0 + 400_000_000, T0) == ("0.4 s · SYN #1 unanswered, next expected in ~0.6 s · "
                                                   "1 packet on port 2525")
    assert watch.status(T0 + 1_600_000_000, T0).startswith("1.6 s · SYN #1 unanswered, no further SYN yet")
    watch.on_packet(tcp(2, 500_000, TARGET, CLIENT, "RA", ack=8))
    assert watch.status(T0 + 600_000_000, T0) == "0.6 s · 2 packets on port 2525"


def test_wrapped_ports_are_watched_where_the_packets_go() -> None:
    assert Watch(66000, linear=0).port == 464


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def test_live_writes_lines_and_a_status_line_only_on_a_terminal() -> None:
    clock = Clock()
    out: list[str] = []
    live = Live(Watch(PORT, linear=0), out.append, "timeout", status=True, clock=clock, columns=200)
    with live:
        live.on_frame(T0, frame(CLIENT, TARGET, SYN))
        clock.now = T0 + 1_200_000_000
        live._draw()  # what the ticker thread does every 0.1 s
        assert out[-1] == ("\r\x1b[Kwirestack timeout: 1.2 s · SYN #1 unanswered, next expected now · "
                           "1 packet on port 2525")
        live.on_frame(T0 + 1_010_000_000, frame(CLIENT, TARGET, SYN))
    assert out[-1] == "\r\x1b[K"  # the status line is erased at the end
    assert "wirestack timeout: SYN #2 at +1.01 s, 1.01 s after SYN #1: retransmitted" in "".join(out)

    plain: list[str] = []
    live = Live(Watch(PORT, linear=0), plain.append, "timeout", status=False, clock=clock)
    with live:
        live.on_frame(T0, frame(CLIENT, TARGET, SYN))
        clock.now = T0 + 5 * S
        live._draw()
        live.on_frame(T0 + S, frame(CLIENT, TARGET, SYN))
    assert all("\r" not in x and "\x1b" not in x for x in plain)
    assert [x.split(":")[1].strip().split(" ")[0:2] for x in plain] == [["SYN", "#1"], ["SYN", "#2"]]


def test_no_status_line_in_the_first_second() -> None:
    clock = Clock()
    out: list[str] = []
    live = Live(Watch(PORT, linear=0), out.append, "smtp", status=True, clock=clock)
    with live:
        clock.now = T0 + 900_000_000
        live._draw()
    assert out == []


def test_the_status_line_fits_the_terminal() -> None:
    clock = Clock()
    out: list[str] = []
    live = Live(Watch(PORT, linear=0), out.append, "timeout", status=True, clock=clock, columns=40)
    with live:
        live.on_frame(T0, frame(CLIENT, TARGET, SYN))
        clock.now = T0 + 2 * S
        live._draw()
        drawn = out[-1]
    assert drawn.startswith("\r\x1b[K") and len(drawn) - 4 == 39 and drawn.endswith("…")
