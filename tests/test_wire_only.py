"""What the wire alone shows: refusals, unanswered SYNs, resets, ICMP errors, retransmissions; nothing else."""

from __future__ import annotations

from pcaps import A, B, pcap, port_unreachable, refused, tcp, udp

from wirestack.explain.wire_only import summarise
from wirestack.formats.reader import parse

C = ("127.0.0.1", 41000)
SERVER = ("127.0.0.1", 8080)


def _summary(frames):  # type: ignore[no-untyped-def]
    return summarise(parse(pcap(frames)))


def test_a_refusal() -> None:
    s = _summary(refused(after_us=22))
    [f] = s.findings
    assert f.text == ("RST/ACK answered the SYN to 127.0.0.1:464 after 22 µs (#1 → #2): the connection was refused "
                      "(nothing listening there, or a firewall rejecting it)")
    assert f.packets == (1, 2) and s.shown == (1, 2)
    [flow] = s.flows
    assert (flow.client, flow.server, flow.outcome, flow.refused, flow.attempts) == (A, B, "refused", 1, 1)


def test_many_refusals_on_a_reused_port_are_counted_as_attempts() -> None:
    frames = refused(0, isn=1) + refused(100, isn=5000) + refused(200, client=C, isn=9)
    s = _summary(frames)
    assert s.findings[0].text.startswith("3 connection attempts to 127.0.0.1:464 were refused")
    assert [f.attempts for f in s.flows] == [2, 1]


def test_unanswered_syn_with_retransmissions() -> None:
    frames = [tcp(0, A, B, "S", seq=5), tcp(1_000_000, A, B, "S", seq=5), tcp(3_000_000, A, B, "S", seq=5)]
    [f] = _summary(frames).findings
    assert f.text == ("to 127.0.0.1:464: the SYN was sent 3 times (retransmitted at +1.00 s, +3.00 s) and no reply "
                      "was captured")
    assert f.packets == (1, 2, 3)


def test_reset_after_the_handshake_and_retransmitted_data() -> None:
    frames = [tcp(0, A, SERVER, "S", seq=100), tcp(10, SERVER, A, "SA", seq=900, ack=101),
              tcp(20, A, SERVER, "A", seq=101, ack=901), tcp(30, A, SERVER, "PA", seq=101, ack=901, payload=b"GET"),
              tcp(40, A, SERVER, "PA", seq=101, ack=901, payload=b"GET"), tcp(50, SERVER, A, "R", seq=901)]
    s = _summary(frames)
    texts = [f.text for f in s.findings]
    assert texts[0] == ("127.0.0.1:8080 reset the connection 127.0.0.1:40000 → 127.0.0.1:8080 after the handshake "
                        "(RST #6, 6 packets into the flow)")
    assert texts[1].startswith("1 segment to or from 127.0.0.1:8080 were sent again") and "first: #5" in texts[1]
    assert s.flows[0].outcome == "reset"


def test_icmp_port_unreachable_is_matched_to_the_datagram_it_quotes() -> None:
    dgram = udp(0, A, ("127.0.0.1", 9999))
    s = _summary([dgram, port_unreachable(5, dgram)])
    [f] = s.findings
    assert f.text == ("ICMP destination unreachable (port unreachable) from 127.0.0.1 answered the UDP packet "
                      "127.0.0.1:40000 → 127.0.0.1:9999 (#1 → #2): nothing listened on that port")
    assert s.other == {"ICMP": 1} and s.flows[0].icmp_errors == 1


def test_a_healthy_exchange_has_no_findings_and_claims_nothing_about_calls() -> None:
    frames = [tcp(0, A, SERVER, "S", seq=1), tcp(10, SERVER, A, "SA", seq=50, ack=2), tcp(20, A, SERVER, "A", seq=2,
              ack=51), tcp(30, A, SERVER, "FA", seq=2, ack=51), tcp(40, SERVER, A, "FA", seq=51, ack=3)]
    s = _summary(frames)
    assert s.findings == () and s.flows[0].outcome == ""


def test_findings_never_mention_calls_or_frames() -> None:
    dgram = udp(0, A, ("127.0.0.1", 9999))
    frames = refused() + [dgram, port_unreachable(5, dgram)] + [tcp(0, C, B, "S", seq=1)]
    for f in _summary(frames).findings:
        assert not any(w in f.text for w in ("connect(", "call", "frame", "socket.py", "errno"))
