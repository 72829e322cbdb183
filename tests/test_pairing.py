"""The pairing core on hand-built records: no capture, no clock, exact expectations."""

from __future__ import annotations

from dataclasses import replace

from builders import (
    CLIENT,
    SEED_STACK,
    SERVER,
    T0,
    US,
    call,
    exception_packets,
    frames,
    icmp_unreachable,
    origin_call,
    refused,
    tcp,
    udp,
)

from wirestack.core.chains import chain
from wirestack.core.pairing import align, traced_packets
from wirestack.model import ExceptionInfo, Packet


def test_seed_refusal_pairs_syn_and_rst_with_connect_and_every_frame() -> None:
    calls = [call(1, "connect", 0, 40, errno=111)]
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1000), tcp(2, 24, SERVER, CLIENT, "RA", ack=1001)]
    a = align(calls, packets)
    assert a.packets_of_call(1) == (1, 2)
    assert [(p.packet, p.side, p.role) for p in a.pairs] == [(1, "out", "sent"), (2, "in", "received")]
    exc = refused(1)
    # six traceback entries (create_connection twice: the raise line and the connect line), all with both packets
    assert len(exc.frames) == 6
    assert exception_packets(exc, a) == [(1, 2)] * 6
    assert origin_call(exc, calls) == calls[0]


def test_ephemeral_port_reuse_keeps_each_connection_with_its_own_socket() -> None:
    # two sockets, one after the other, got the same ephemeral port: same 4-tuple, different ISNs
    calls = [call(1, "connect", 0, 30, socket=1, errno=111), call(2, "connect", 1000, 1030, socket=2, errno=111)]
    packets = [
        tcp(1, 10, CLIENT, SERVER, "S", seq=5000), tcp(2, 20, SERVER, CLIENT, "RA", ack=5001),
        tcp(3, 1010, CLIENT, SERVER, "S", seq=9000), tcp(4, 1020, SERVER, CLIENT, "RA", ack=9001),
    ]
    a = align(calls, packets)
    assert a.packets_of_call(1) == (1, 2)
    assert a.packets_of_call(2) == (3, 4)


def test_late_rst_outlier_stays_with_the_syn_it_answers() -> None:
    # the RST of the first connect was stamped 63 ms late, after the second socket reused the port
    calls = [call(1, "connect", 0, 30, socket=1, errno=111), call(2, "connect", 1000, 1030, socket=2, errno=111)]
    packets = [
        tcp(1, 10, CLIENT, SERVER, "S", seq=5000), tcp(3, 1010, CLIENT, SERVER, "S", seq=9000),
        tcp(4, 1020, SERVER, CLIENT, "RA", ack=9001), tcp(2, 63_000, SERVER, CLIENT, "RA", ack=5001),
    ]
    a = align(calls, packets)
    assert a.packets_of_call(1) == (1, 2)
    assert a.packets_of_call(2) == (3, 4)


def test_packet_outside_every_window_is_not_forced_onto_a_call() -> None:
    calls = [call(1, "connect", 0, 30), call(2, "recv", 40, 50, result=0)]
    late_ack = tcp(3, 5_000_000, CLIENT, SERVER, "A", seq=1001, ack=1)  # 5 s later, a bare ACK from the kernel
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1000), tcp(2, 20, SERVER, CLIENT, "SA", seq=0, ack=1001),
               late_ack]
    a = align(calls, packets)
    assert [p.role for p in a.pairs_of(3)] == ["kernel"]
    assert a.pairs_of(3)[0].call is None
    assert 3 not in a.packets_of_call(1) + a.packets_of_call(2)
    assert a.socket_packets[1] == (1, 2, 3)  # still part of the socket's flow


def test_retransmitted_syn_belongs_to_the_same_connect() -> None:
    calls = [call(1, "connect", 0, 3_000_100, errno=110)]
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=77), tcp(2, 1_020_000, CLIENT, SERVER, "S", seq=77),
               tcp(3, 3_050_000, CLIENT, SERVER, "S", seq=77)]
    a = align(calls, packets)
    assert a.packets_of_call(1) == (1, 2, 3)


def test_two_connects_from_one_frame_both_line_up_with_it() -> None:
    # create_connection tries ::1 then 127.0.0.1: two sockets, both below the same create_connection frame
    v6_client, v6_server = ("::1", 40001), ("::1", 464)
    calls = [call(1, "connect", 0, 30, socket=1, local=v6_client, remote=v6_server, errno=111),
             call(2, "connect", 100, 130, socket=2, errno=111)]
    packets = [tcp(1, 10, v6_client, v6_server, "S", seq=1), tcp(2, 20, v6_server, v6_client, "RA", ack=2),
               tcp(3, 110, CLIENT, SERVER, "S", seq=3), tcp(4, 120, SERVER, CLIENT, "RA", ack=4)]
    a = align(calls, packets)
    assert a.packets_of_call(1) == (1, 2) and a.packets_of_call(2) == (3, 4)
    exc = refused(2)
    assert exception_packets(exc, a) == [(1, 2, 3, 4)] * 6


def test_a_later_run_of_the_same_function_is_a_different_frame() -> None:
    # a retry loop: attempt() ran twice; only the second run is in the traceback
    first = SEED_STACK[:1] + frames(("/app/client.py", 10, "attempt", 20))
    second = SEED_STACK[:1] + frames(("/app/client.py", 10, "attempt", 21))
    calls = [call(1, "connect", 0, 30, socket=1, errno=111, stack=first),
             call(2, "connect", 100, 130, socket=2, errno=111, stack=second,
                  local=("127.0.0.1", 40002))]
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 20, SERVER, CLIENT, "RA", ack=2),
               tcp(3, 110, ("127.0.0.1", 40002), SERVER, "S", seq=3),
               tcp(4, 120, SERVER, ("127.0.0.1", 40002), "RA", ack=4)]
    a = align(calls, packets)
    assert a.packets_below(21) == (3, 4)
    assert a.packets_below(20) == (1, 2)
    assert a.packets_below(1) == (1, 2, 3, 4)  # <module> saw both attempts


def test_chained_exceptions_pair_through_cause_and_context() -> None:
    calls = [call(1, "connect", 0, 40, errno=111)]
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 20, SERVER, CLIENT, "RA", ack=2)]
    inner = refused(1)
    outer_frames = SEED_STACK[:2]  # the wrapper was raised in smtplib's __init__ frame
    wrapped = ExceptionInfo("urllib.error.URLError", "<urlopen error [Errno 111]>", outer_frames, None, None,
                            cause=inner, context=inner, suppress_context=True)
    a = align(calls, packets)
    assert origin_call(wrapped, calls) == calls[0]
    assert chain(wrapped) == [inner, wrapped]
    assert exception_packets(wrapped, a) == [(1, 2), (1, 2)]
    during = replace(wrapped, cause=None, suppress_context=False)
    assert chain(during) == [inner, during] and origin_call(during, calls) == calls[0]


def test_inbound_data_goes_to_the_recv_that_read_it() -> None:
    calls = [call(1, "connect", 0, 30), call(2, "recv", 5_000, 5_010, result=5)]
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 20, SERVER, CLIENT, "SA", seq=100, ack=2),
               tcp(3, 25, CLIENT, SERVER, "A", seq=2, ack=101),
               tcp(4, 1_000, SERVER, CLIENT, "PA", seq=101, ack=2, payload=b"220 \r\n")]
    a = align(calls, packets)
    assert a.packets_of_call(1) == (1, 2, 3)
    assert a.packets_of_call(2) == (4,)
    assert a.pairs_of(4)[0].role == "received"


def test_both_ends_traced_one_packet_two_pairings() -> None:
    client = call(1, "sendall", 0, 20, socket=1, args={"bytes": 4})
    server = call(2, "recv", 10, 40, socket=2, local=SERVER, remote=CLIENT, result=4)
    a = align([client, server], [tcp(1, 15, CLIENT, SERVER, "PA", seq=1, ack=1, payload=b"EHLO")])
    assert sorted((p.side, p.call) for p in a.pairs_of(1)) == [("in", 2), ("out", 1)]


def test_icmp_error_goes_to_the_udp_socket_whose_datagram_it_quotes() -> None:
    dns = ("127.0.0.1", 9999)
    calls = [call(1, "send", 0, 10, kind="SOCK_DGRAM", remote=dns, args={"bytes": 1}),
             call(2, "recv", 20, 30, kind="SOCK_DGRAM", remote=dns, errno=111)]
    packets = [udp(1, 5, CLIENT, dns), icmp_unreachable(2, 6, (CLIENT, dns))]
    a = align(calls, packets)
    assert a.packets_of_call(1) == (1,)
    assert a.packets_of_call(2) == (2,)  # the recv that surfaced ECONNREFUSED observed the ICMP


def test_other_traffic_is_left_out() -> None:
    calls = [call(1, "connect", 0, 40, errno=111)]
    noise = tcp(9, 15, ("127.0.0.1", 5555), ("127.0.0.1", 6666), "PA", payload=b"noise")
    kept = traced_packets(calls, [tcp(1, 10, CLIENT, SERVER, "S"), noise, tcp(2, 20, SERVER, CLIENT, "RA")])
    assert [p.id for p in kept] == [1, 2]


def test_ipv4_mapped_and_wildcard_local_addresses_match() -> None:
    # after a refused connect getsockname() reports 0.0.0.0 with the ephemeral port
    calls = [call(1, "connect", 0, 40, errno=111, local=("0.0.0.0", 40000), remote=("::ffff:127.0.0.1", 464))]
    a = align(calls, [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 20, SERVER, CLIENT, "RA", ack=2)])
    assert a.packets_of_call(1) == (1, 2)


def test_data_held_back_by_nagle_is_still_paired_with_the_write_that_wrote_it() -> None:
    # send() returned at 30 µs; the kernel released the segment at 300 µs, while recv() was running
    calls = [call(1, "send", 10, 30, args={"bytes": 5}), call(2, "recv", 40, 900, result=5)]
    packets = [tcp(1, 300, CLIENT, SERVER, "PA", seq=1, ack=1, payload=b"hello"),
               tcp(2, 800, SERVER, CLIENT, "PA", seq=1, ack=6, payload=b"world")]
    a = align(calls, packets)
    assert a.packets_of_call(1) == (1,) and a.packets_of_call(2) == (2,)


def test_a_connection_handed_to_another_socket_object_follows_it() -> None:
    # ssl.wrap_socket detaches the plain socket: the same connection continues under a new socket object
    calls = [call(1, "connect", 0, 30, socket=1), call(2, "do_handshake", 100, 500, socket=2)]
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 20, SERVER, CLIENT, "SA", seq=50, ack=2),
               tcp(3, 150, CLIENT, SERVER, "PA", seq=2, ack=51, payload=b"\x16\x03\x01")]
    a = align(calls, packets)
    assert a.packets_of_call(1) == (1, 2) and a.packets_of_call(2) == (3,)


def test_another_program_reusing_the_4_tuple_later_is_not_ours() -> None:
    # our refused connect at 0-30 µs; 53 ms later another process's SYN on the same 4-tuple (a new ISN)
    calls = [call(1, "connect", 0, 30, errno=111), call(2, "close", 35, 40)]
    packets = [tcp(1, 10, CLIENT, SERVER, "S", seq=1), tcp(2, 20, SERVER, CLIENT, "RA", ack=2),
               tcp(3, 53_000, CLIENT, SERVER, "S", seq=999), tcp(4, 53_010, SERVER, CLIENT, "RA", ack=1000)]
    assert [p.id for p in traced_packets(calls, packets)] == [1, 2]
    a = align(calls, packets)
    assert a.packets_of_call(1) == (1, 2) and not a.pairs_of(3)


def test_resolver_queries_go_to_the_lookup_they_left_inside() -> None:
    """Two getaddrinfo calls 1.5 ms apart (a name, then a numeric address that asks no one): the DNS queries made
    inside the first are its, not the later one's, though both lie within the resolver's clock slack."""
    first = call(1, "getaddrinfo", 0, 2400, socket=0, local=None, remote=None, args={"host": "name.example"})
    second = call(2, "getaddrinfo", 3900, 3930, socket=0, local=None, remote=None, args={"host": "192.0.2.99"})
    resolver, dns = ("192.0.2.10", 40106), ("198.51.100.53", 53)
    packets = [udp(1, 2070, resolver, dns), udp(2, 2290, dns, resolver)]
    alignment = align([first, second], packets)
    assert [x.call for p in packets for x in alignment.pairs_of(p.id)] == [1, 1]
    assert alignment.packets_of_call(1) == (1, 2) and alignment.packets_of_call(2) == ()


def test_a_gateway_lookup_goes_to_the_call_running_when_it_was_asked() -> None:
    """ARP for the gateway, asked inside getaddrinfo (its resolver's first query needs the router's MAC), while a
    connect to a host on the link begins 1.8 ms later, within the clocks' slack: the lookup is getaddrinfo's."""
    gai = call(1, "getaddrinfo", 0, 1650, socket=0, local=None, remote=None, args={"host": "name.example"})
    connect = call(2, "connect", 3150, 3_080_000, local=("192.0.2.10", 0), remote=("192.0.2.99", 80), errno=113)
    resolver, dns = ("192.0.2.10", 40106), ("198.51.100.53", 53)
    packets = [arp(1, 1375, "192.0.2.10", "192.0.2.1", request=True),
               arp(2, 1392, "192.0.2.1", "192.0.2.10", request=False),
               udp(3, 1395, resolver, dns), udp(4, 1580, dns, resolver),
               arp(5, 3180, "192.0.2.10", "192.0.2.99", request=True)]
    alignment = align([gai, connect], packets)
    assert {p.id: [x.call for x in alignment.pairs_of(p.id)] for p in packets} == {1: [1], 2: [1], 3: [1], 4: [1],
                                                                                   5: [2]}


def arp(pid: int, t_us: float, sender: str, target: str, request: bool) -> Packet:
    """An ARP request ("who has TARGET, tell SENDER") or reply (SENDER is at ..., to TARGET), as dissect makes it."""
    return Packet(pid, T0 + int(t_us * US), "ARP", sender, target, length=42, icmp=(1 if request else 2, 0))
