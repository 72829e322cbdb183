"""Reading capture files of every common shape, and saying where a broken one breaks."""

from __future__ import annotations

import pytest
from pcaps import T0, A, B, pcap, pcapng, refused, tcp

from wirestack.formats.reader import ReadError, parse


@pytest.mark.parametrize("data", [
    pcap(refused()), pcap(refused(), nano=True), pcap(refused(), big=True), pcap(refused(), nano=True, big=True),
    pcapng(refused()), pcapng(refused(), tsresol=9), pcapng(refused(), tsresol=6, big=True),
    pcapng(refused(), comments=True), pcapng(refused(), tsresol=0x80 | 30),
], ids=["pcap-us", "pcap-ns", "pcap-be", "pcap-ns-be", "pcapng", "pcapng-ns", "pcapng-be", "pcapng-comments",
        "pcapng-2^-30"])
def test_every_shape_gives_the_same_packets(data: bytes) -> None:
    cf = parse(data)
    assert cf.error is None and len(cf) == 2
    syn, rst = cf.packet(1), cf.packet(2)
    assert (syn.flags, syn.sport, syn.dport, rst.flags) == ("S", 40000, 464, "RA")
    assert abs(syn.time_ns - T0) < 2 and abs(rst.time_ns - (T0 + 20_000)) < 2  # 2^-30 s rounds a little


def test_several_sections_are_read_one_after_another() -> None:
    cf = parse(pcapng(refused()) + pcapng([tcp(100, A, B, "S", seq=7)], tsresol=9, big=True))
    assert len(cf) == 3 and cf.packet(3).seq == 7 and cf.packet(3).time_ns == T0 + 100_000


def test_a_cut_pcap_keeps_what_comes_before_and_says_where() -> None:
    data = pcap(refused())
    cf = parse(data[:-10])
    assert len(cf) == 1 and cf.error is not None
    assert cf.error.startswith(f"cut short at byte {len(data) - 10}: packet 2 needs")


def test_a_cut_pcapng_keeps_what_comes_before_and_says_where() -> None:
    data = pcapng(refused())
    cf = parse(data[:-7])
    assert len(cf) == 1 and cf.error is not None and "packet 2 needs" in cf.error


def test_a_damaged_block_length_stops_there() -> None:
    data = bytearray(pcapng(refused()))
    shb_len = int.from_bytes(data[4:8], "little")
    data[shb_len + 4 : shb_len + 8] = (13).to_bytes(4, "little")  # the IDB's length: not a multiple of 4
    cf = parse(bytes(data))
    assert len(cf) == 0 and cf.error == f"damaged at byte {shb_len}: block 2 has an impossible length (13)"


@pytest.mark.parametrize("data, words", [(b"", "is empty"), (b"hello world\n", "starts with 'hello wo'"),
                                         (b"\x00\x01\x02\x03\x04", "starts with 00010203")])
def test_not_a_capture(data: bytes, words: str) -> None:
    with pytest.raises(ReadError, match=words):
        parse(data, "x")
