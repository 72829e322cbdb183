"""The failure modes a network course teaches, each on a fresh client -- router -- server topology: a plain Python
client runs inside `client`, tcpdump captures inside the hosts, tshark reads the captures.

The measurements go into the table of wirestack/labs/network/__init__.py (WIRESTACK_NETLAB_RECORD=FILE to
collect them again).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from netlab import (
    SINK,
    UDP_SINK,
    captures,
    dns_server,
    frames,
    lines_until_quiet,
    nothing_left,  # noqa: F401 (autouse fixture)
    python,
    record,
    serve,
    times,
)

from wirestack.labs.network import Topology, drop, drop_frag_needed, reject_admin, reject_reset, three_hosts
from wirestack.labs.network.dns import resolv_conf
from wirestack.labs.network.topology import (
    CLIENT,
    DNS,
    NOBODY,
    ROUTER_CLIENT,
    ROUTER_CLIENT6,
    ROUTER_SERVER,
    SERVER,
    SERVER6,
    UNROUTED,
)

pytestmark = pytest.mark.capture

CONNECT = '''
def main():
    s = socket.create_connection(({host!r}, {port}), timeout={timeout})
    return s.getsockname()[:2]
done(main)
'''


def connect(host: str, port: int = 80, timeout: float = 10) -> str:
    return CONNECT.format(host=host, port=port, timeout=timeout)


def test_no_route_to_host(tmp_path: Path) -> None:
    """An address on the client's own link that nobody owns: ARP asks three times, one second apart, then
    connect fails with EHOSTUNREACH. The SYN never leaves: it waits for a MAC address that never comes."""
    with Topology(three_hosts()) as net, captures(net, tmp_path, ("client", "client-eth0")) as pcap:
        result = python(net, "client", connect(NOBODY))
    wire = frames(pcap["client-eth0"])
    asks = [f for f in wire if f.get("arp.opcode") == "1" and f.get("arp.dst.proto_ipv4") == NOBODY]
    record("no-route-host", result=result, arp_requests=times(asks), frames=len(wire))
    assert (result["exception"], result["errno"]) == ("OSError", 113)  # No route to host
    assert 2.5 < result["seconds"] < 4.5
    assert len(asks) == 3 and 1.8 < float(asks[-1]["frame.time_relative"]) - float(asks[0]["frame.time_relative"])
    assert not [f for f in wire if "tcp.srcport" in f]
    assert len(wire) == 3  # and nothing else: no answer


def test_no_route_to_net(tmp_path: Path) -> None:
    """No route at all (the client has no default route): ENETUNREACH at once, and not one packet."""
    with Topology(three_hosts(client_default_route=False)) as net, \
            captures(net, tmp_path, ("client", "client-eth0")) as pcap:
        result = python(net, "client", connect(UNROUTED))
    wire = frames(pcap["client-eth0"])
    record("no-route-net", result=result, frames=len(wire))
    assert (result["exception"], result["errno"]) == ("OSError", 101)  # Network is unreachable
    assert result["seconds"] < 0.1
    assert wire == []


def test_no_route_at_the_router(tmp_path: Path) -> None:
    """The client routes it, the router cannot: ICMP network unreachable (3/0) from the router, and the same
    ENETUNREACH at once. RFC 1122 calls 3/0 a soft error, but Linux aborts a connect in SYN-SENT on any
    destination unreachable."""
    with Topology(three_hosts()) as net, captures(net, tmp_path, ("client", "client-eth0")) as pcap:
        result = python(net, "client", connect(UNROUTED))
    wire = frames(pcap["client-eth0"], "tcp or icmp")
    syns = [f for f in wire if f.get("tcp.flags.syn") == "1" and "icmp.type" not in f]
    icmp = [f for f in wire if f.get("icmp.type") == "3"]
    record("no-route-net at router", result=result, syns=times(syns),
           icmp=[(f["ip.src"], f["icmp.type"], f["icmp.code"]) for f in icmp])
    assert (result["exception"], result["errno"]) == ("OSError", 101)
    assert result["seconds"] < 0.1
    assert len(syns) == 1 and [(f["ip.src"], f["icmp.code"]) for f in icmp] == [(ROUTER_CLIENT, "0")]


def test_firewall_drop(tmp_path: Path) -> None:
    """nft drop on the router: the SYN reaches the router's client side and is retransmitted every second
    (net.ipv4.tcp_syn_linear_timeouts=4, Linux >= 6.7: the first four retries are linear, then they double);
    nothing comes out on the server side; the client's connect times out."""
    with Topology(three_hosts(firewall=(drop(80),))) as net:
        serve(net, "server", SINK, "80")
        with captures(net, tmp_path, ("router", "router-eth0"), ("router", "router-eth1")) as pcap:
            result = python(net, "client", connect(SERVER, timeout=2.5))
    inside, outside = frames(pcap["router-eth0"], "tcp"), frames(pcap["router-eth1"], "tcp")
    syns = [f for f in inside if f.get("tcp.flags.syn") == "1"]
    record("firewall-drop", result=result, syns=times(syns), server_link_tcp=len(outside))
    assert result["exception"] == "TimeoutError"
    assert 2.4 < result["seconds"] < 3.0
    assert len(syns) >= 2 and len({f["tcp.seq_raw"] for f in syns}) == 1  # one SYN, retransmitted
    at = times(syns)
    assert all(0.8 < later - earlier < 1.5 for earlier, later in zip(at, at[1:], strict=False))
    assert outside == []


def test_firewall_reject_admin_prohibited(tmp_path: Path) -> None:
    """reject with icmp admin-prohibited: ICMP 3/13 from the router at once; Linux maps it to EHOSTUNREACH and
    the connect (with a timeout, as here) fails at once, no retry. (A blocking connect takes a second: see note 1
    of the package docstring.)"""
    with Topology(three_hosts(firewall=(reject_admin(80),))) as net, \
            captures(net, tmp_path, ("client", "client-eth0"), ("router", "router-eth1")) as pcap:
        result = python(net, "client", connect(SERVER))
    wire = frames(pcap["client-eth0"], "tcp or icmp")
    icmp = [f for f in wire if "icmp.type" in f]
    syns = [f for f in wire if f.get("tcp.flags.syn") == "1" and "icmp.type" not in f]
    record("firewall-reject admin-prohibited", result=result, syns=len(syns),
           icmp=[(f["ip.src"], f["icmp.type"], f["icmp.code"]) for f in icmp])
    assert (result["exception"], result["errno"]) == ("OSError", 113)
    assert result["seconds"] < 0.1
    assert len(syns) == 1 and [(f["ip.src"], f["icmp.type"], f["icmp.code"]) for f in icmp] == [
        (ROUTER_CLIENT, "3", "13")]
    assert frames(pcap["router-eth1"], "tcp") == []


def test_firewall_reject_admin_prohibited_ipv6(tmp_path: Path) -> None:
    """The same rule over IPv6 (icmpx): ICMPv6 1/1, administratively prohibited, which Linux maps to EACCES.
    It takes a second here: the router's ICMP comes back while connect() still holds the socket (the veth path
    runs in the sender's own softirq; TcpExt LockDroppedIcmps counts it), so only the answer to the SYN's
    retransmission ends the connect."""
    with Topology(three_hosts(ipv6=True, firewall=(reject_admin(80),))) as net, \
            captures(net, tmp_path, ("client", "client-eth0")) as pcap:
        result = python(net, "client", connect(SERVER6))
    icmp = frames(pcap["client-eth0"], "icmpv6.type == 1")
    record("firewall-reject admin-prohibited ipv6", result=result,
           icmp=[(f["ipv6.src"], f["icmpv6.type"], f["icmpv6.code"]) for f in icmp])
    assert (result["exception"], result["errno"]) == ("PermissionError", 13)
    assert result["seconds"] < 1.5
    assert icmp and {(f["ipv6.src"], f["icmpv6.code"]) for f in icmp} == {(ROUTER_CLIENT6, "1")}


def test_firewall_reject_reset(tmp_path: Path) -> None:
    """reject with tcp reset: ECONNREFUSED, like a closed port on the server. The TTL tells them apart: the
    router's RST arrives with 64, the server's own (port 81, nothing listening) with 63, one hop spent."""
    with Topology(three_hosts(firewall=(reject_reset(80),))) as net, \
            captures(net, tmp_path, ("client", "client-eth0"), ("router", "router-eth1")) as pcap:
        by_router = python(net, "client", connect(SERVER, 80))
        by_server = python(net, "client", connect(SERVER, 81))
    rsts = {f["tcp.srcport"]: f for f in frames(pcap["client-eth0"], "tcp.flags.reset == 1")}
    outside = frames(pcap["router-eth1"], "tcp")
    record("firewall-reject tcp reset", result=by_router, closed_port=by_server,
           rst_ttl={port: f["ip.ttl"] for port, f in rsts.items()}, server_link_ports=sorted(
               {f["tcp.dstport"] for f in outside if f.get("tcp.flags.syn") == "1"}))
    assert (by_router["exception"], by_router["errno"]) == ("ConnectionRefusedError", 111)
    assert (by_server["exception"], by_server["errno"]) == ("ConnectionRefusedError", 111)
    assert rsts["80"]["ip.ttl"] == "64" and rsts["81"]["ip.ttl"] == "63"
    assert rsts["80"]["ip.src"] == rsts["81"]["ip.src"] == SERVER  # the router speaks in the server's name
    assert {f["tcp.dstport"] for f in outside if f.get("tcp.flags.syn") == "1"} == {"81"}


TTL_ONE = f'''
def main():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
    s.setsockopt(socket.IPPROTO_IP, 11, 1)  # IP_RECVERR: ICMP errors are reported to the socket
    s.settimeout(2)
    s.connect(({SERVER!r}, 9))
    s.send(b"hop")
    try:
        s.recv(100)
    except OSError as exc:
        # The error queue names who sent the ICMP: struct sock_extended_err, then the offender's sockaddr_in.
        _, anc, _, _ = s.recvmsg(100, 512, 0x2000)  # MSG_ERRQUEUE
        ee_errno, origin, kind, code = struct.unpack_from("IBBB", anc[0][2])
        offender = socket.inet_ntoa(anc[0][2][16 + 4:16 + 8])
        raise OSError(exc.errno, f"{{exc.strerror}} (ICMP {{kind}}/{{code}} from {{offender}})") from None
done(main)
'''


SYN_TTL_ONE = f'''
def main():
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
    s.settimeout(3)
    s.connect(({SERVER!r}, 80))
done(main)
'''


def test_ttl_exceeded(tmp_path: Path) -> None:
    """A datagram with IP TTL 1: the router may not forward it and answers ICMP time exceeded (11/0). With
    IP_RECVERR the socket reports EHOSTUNREACH and the error queue names the router. A SYN with TTL 1 gets the
    same ICMP, and connect fails with EHOSTUNREACH too."""
    with Topology(three_hosts()) as net, \
            captures(net, tmp_path, ("client", "client-eth0"), ("router", "router-eth1")) as pcap:
        result = python(net, "client", TTL_ONE)
        syn = python(net, "client", SYN_TTL_ONE)
    wire = frames(pcap["client-eth0"], "udp or icmp")
    sent = [f for f in wire if "icmp.type" not in f]
    icmp = [f for f in wire if "icmp.type" in f and "udp.srcport" in f]
    syn_wire = frames(pcap["client-eth0"], "tcp")
    record("ttl", result=result, sent_ttl=[f["ip.ttl"] for f in sent],
           icmp=[(f["ip.src"], f["icmp.type"], f["icmp.code"]) for f in icmp], syn=syn,
           syn_wire=[(t, f.get("icmp.type", "SYN"), f["ip.ttl"]) for t, f in zip(times(syn_wire), syn_wire,
                                                                                   strict=True)])
    assert (syn["exception"], syn["errno"]) == ("OSError", 113)
    assert {f.get("icmp.type") for f in syn_wire} == {None, "11"}
    assert result["errno"] == 113
    assert result["message"] == f"[Errno 113] No route to host (ICMP 11/0 from {ROUTER_CLIENT})"
    assert [f["ip.ttl"] for f in sent] == ["1"]
    assert [(f["ip.src"], f["icmp.type"], f["icmp.code"]) for f in icmp] == [(ROUTER_CLIENT, "11", "0")]
    assert frames(pcap["router-eth1"], "udp") == []


BULK = f'''
def main():
    s = socket.create_connection(({SERVER!r}, 5001), timeout={{timeout}})
    s.sendall(b"x" * {{size}})
    s.shutdown(socket.SHUT_WR)
    return int(s.recv(100))
done(main)
'''


def segment_sizes(rows: list[dict[str, str]]) -> list[int]:
    return [int(f["ip.len"]) for f in rows if int(f.get("tcp.len", "0")) > 0 and "icmp.type" not in f]


def test_mtu_on_the_server_link_needs_no_pmtud(tmp_path: Path) -> None:
    """MTU 1000 at both ends of the router-server link: the server announces MSS 960 in its SYN-ACK, so the
    client never sends more than fits. No ICMP; path MTU discovery never starts (why `bottleneck` exists)."""
    with Topology(three_hosts(mtu=1000)) as net:
        serve(net, "server", SINK, "5001")
        with captures(net, tmp_path, ("client", "client-eth0")) as pcap:
            result = python(net, "client", BULK.format(timeout=5, size=200_000))
    wire = frames(pcap["client-eth0"], "tcp or icmp")
    sizes = segment_sizes([f for f in wire if f.get("ip.src") == CLIENT])
    record("mtu both ends", result=result, largest=max(sizes), icmp=len([f for f in wire if "icmp.type" in f]))
    assert result["value"] == 200_000
    assert max(sizes) == 1000 and not [f for f in wire if "icmp.type" in f]


def test_path_mtu_discovery(tmp_path: Path) -> None:
    """The router's way to the server carries 1000 bytes, the client's link and the server's MSS say 1500: the
    first full segments (DF) are answered by ICMP fragmentation needed (3/4, next-hop MTU 1000) from the router,
    and the client re-sends them shrunk to 1000."""
    with Topology(three_hosts(bottleneck=1000)) as net:
        serve(net, "server", SINK, "5001")
        with captures(net, tmp_path, ("client", "client-eth0"), ("server", "server-eth0")) as pcap:
            result = python(net, "client", BULK.format(timeout=5, size=200_000))
    wire = frames(pcap["client-eth0"], "tcp or icmp")
    data = [f for f in wire if f.get("ip.src") == CLIENT and "icmp.type" not in f and int(f.get("tcp.len", "0"))]
    icmp = [f for f in wire if f.get("icmp.type") == "3"]
    big = [f for f in data if int(f["ip.len"]) > 1000]
    record("mtu pmtud", result=result, icmp=[(f["ip.src"], f["icmp.code"], f["icmp.mtu"]) for f in icmp],
           first_sizes=[int(f["ip.len"]) for f in data[:14]], big=len(big), segments=len(data),
           server_largest=max(segment_sizes(frames(pcap["server-eth0"], "tcp"))))
    assert result["value"] == 200_000
    assert icmp and {(f["ip.src"], f["icmp.code"], f["icmp.mtu"]) for f in icmp} == {(ROUTER_CLIENT, "4", "1000")}
    assert all(f["ip.flags.df"] == "1" for f in data)
    assert int(data[0]["ip.len"]) == 1500 and int(data[-1]["ip.len"]) <= 1000
    assert float(icmp[0]["frame.time_relative"]) < float(data[len(big)]["frame.time_relative"])  # shrunk after
    assert max(segment_sizes(frames(pcap["server-eth0"], "tcp"))) <= 1000


def test_pmtu_black_hole(tmp_path: Path) -> None:
    """The same path with the router's ICMP fragmentation-needed dropped by nft: the full-size segments vanish,
    the client retransmits them with backoff, and the transfer stalls until sendall's timeout."""
    with Topology(three_hosts(bottleneck=1000, firewall=drop_frag_needed())) as net:
        serve(net, "server", SINK, "5001")
        with captures(net, tmp_path, ("client", "client-eth0"), ("server", "server-eth0")) as pcap:
            result = python(net, "client", BULK.format(timeout=2, size=2_000_000))
    wire = frames(pcap["client-eth0"], "tcp or icmp")
    data = [f for f in wire if f.get("ip.src") == CLIENT and "icmp.type" not in f and int(f.get("tcp.len", "0"))]
    first = [f for f in data if f["tcp.seq_raw"] == data[0]["tcp.seq_raw"]]
    server_data = segment_sizes(frames(pcap["server-eth0"], "tcp"))
    record("mtu black hole", result=result, icmp=len([f for f in wire if "icmp.type" in f]), segments=len(data),
           first_segment_sent_at=times(first), server_data_segments=len(server_data))
    assert result["exception"] == "TimeoutError" and 1.9 < result["seconds"] < 2.6
    assert not [f for f in wire if "icmp.type" in f]
    assert {int(f["ip.len"]) for f in data} == {1500}
    assert len(first) >= 3  # the first segment, retransmitted with exponential backoff
    assert server_data == []


def test_nat_masquerade(tmp_path: Path) -> None:
    """Masquerade out of router-eth1: on the client's link the connection is 192.0.2.10:P -> server:80, on the
    server's link the source is the router's 198.51.100.1; the server's accept() sees the router."""
    with Topology(three_hosts(nat=True)) as net:
        sink = serve(net, "server", SINK, "80")
        with captures(net, tmp_path, ("router", "router-eth0"), ("router", "router-eth1")) as pcap:
            result = python(net, "client", '''
def main():
    s = socket.create_connection(("198.51.100.10", 80), timeout=5)
    s.sendall(b"hello"); s.shutdown(socket.SHUT_WR)
    return [s.getsockname()[:2], int(s.recv(100))]
done(main)
''')
        peers = lines_until_quiet(sink, 0.3)

    def tuples(path: Path) -> set[tuple[str, str, str, str]]:
        return {(f["ip.src"], f["tcp.srcport"], f["ip.dst"], f["tcp.dstport"])
                for f in frames(path, "tcp.flags.syn == 1 && tcp.flags.ack == 0")}

    inside, outside = tuples(pcap["router-eth0"]), tuples(pcap["router-eth1"])
    record("nat", result=result, client_link=sorted(inside), server_link=sorted(outside), server_saw=peers)
    (sockname, count) = result["value"]
    assert count == 5
    assert inside == {(CLIENT, str(sockname[1]), SERVER, "80")}
    [(src, _sport, dst, dport)] = outside
    assert (src, dst, dport) == (ROUTER_SERVER, SERVER, "80")
    assert peers and peers[0].startswith(f"peer {ROUTER_SERVER} ")


RESOLVE = '''
def main():
    return sorted({a[4][0] for a in socket.getaddrinfo("name.example", 80, proto=socket.IPPROTO_TCP)})
done(main)
'''


def resolve(tmp_path: Path, mode: str) -> tuple[dict[str, Any], list[dict[str, str]], list[dict[str, str]]]:
    layout = three_hosts(client_resolv_conf=resolv_conf([DNS], timeout=1, attempts=2))
    with Topology(layout) as net:
        server = dns_server(net, mode, DNS, "--a", SERVER, "--aaaa", "2001:db8:2::10")
        with captures(net, tmp_path, ("client", "client-eth0")) as pcap:
            result = python(net, "client", RESOLVE)
        server.terminate()
        server.communicate(timeout=5)
    wire = frames(pcap["client-eth0"], "dns")
    queries = [f for f in wire if f.get("dns.flags.response") == "0"]
    answers = [f for f in wire if f.get("dns.flags.response") == "1"]
    record(f"dns-{mode}", result=result, queries=[(t, f["dns.qry.type"]) for t, f in zip(times(queries), queries,
                                                                                          strict=True)],
           rcodes=[f["dns.flags.rcode"] for f in answers])
    return result, queries, answers


def test_dns_answer(tmp_path: Path) -> None:
    """The control: A and AAAA asked at once, both answered."""
    result, queries, answers = resolve(tmp_path, "answer")
    assert result["value"] == ["198.51.100.10", "2001:db8:2::10"]
    assert sorted(f["dns.qry.type"] for f in queries) == ["1", "28"] and len(answers) == 2


def test_dns_nxdomain(tmp_path: Path) -> None:
    """NXDOMAIN is an answer: glibc stops at once with EAI_NONAME (-2)."""
    result, queries, answers = resolve(tmp_path, "nxdomain")
    assert (result["exception"], result["errno"]) == ("gaierror", -2)
    assert result["seconds"] < 0.5
    assert len(queries) == 2 and [f["dns.flags.rcode"] for f in answers] == ["3", "3"]


def test_dns_servfail(tmp_path: Path) -> None:
    """SERVFAIL: glibc tries the next server, here the same one on the second attempt, then EAI_AGAIN (-3)."""
    result, queries, answers = resolve(tmp_path, "servfail")
    assert (result["exception"], result["errno"]) == ("gaierror", -3)
    assert result["seconds"] < 0.5
    assert len(queries) == 4 and [f["dns.flags.rcode"] for f in answers] == ["2"] * 4


def test_dns_refused(tmp_path: Path) -> None:
    """REFUSED is treated as SERVFAIL: four queries, EAI_AGAIN."""
    result, queries, answers = resolve(tmp_path, "refused")
    assert (result["exception"], result["errno"]) == ("gaierror", -3)
    assert len(queries) == 4 and [f["dns.flags.rcode"] for f in answers] == ["5"] * 4


def test_dns_silent(tmp_path: Path) -> None:
    """No answer: A and AAAA at 0 s, again after `timeout:1`, then EAI_AGAIN after attempts x timeout = 2 s."""
    result, queries, answers = resolve(tmp_path, "silent")
    assert (result["exception"], result["errno"]) == ("gaierror", -3)
    assert 1.9 < result["seconds"] < 2.5
    at = times(queries)
    assert len(queries) == 4 and answers == []
    assert at[1] - at[0] < 0.05 and 0.9 < at[2] - at[0] < 1.2


def test_fragments(tmp_path: Path) -> None:
    """A 3000-byte UDP datagram over a 1500-byte link leaves the client as three IP fragments (no DF; MF on all
    but the last; offsets 0, 1480 and 2960 bytes, which tshark shows in 8-byte units); the server reads one
    datagram of 3000 bytes."""
    with Topology(three_hosts()) as net:
        sink = serve(net, "server", UDP_SINK, "9000")
        with captures(net, tmp_path, ("client", "client-eth0")) as pcap:
            result = python(net, "client", f'''
def main():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return s.sendto(b"f" * 3000, ({SERVER!r}, 9000))
done(main)
''')
        got = lines_until_quiet(sink, 0.3)
    pieces = frames(pcap["client-eth0"], f"ip.src == {CLIENT}")
    shape = [(f["ip.flags.mf"], f["ip.frag_offset"], f["ip.len"], f["ip.flags.df"]) for f in pieces]
    record("fragments", result=result, fragments=shape, server=got)
    assert result["value"] == 3000
    assert shape == [("1", "0", "1500", "0"), ("1", "185", "1500", "0"), ("0", "370", "68", "0")]  # 8-byte units
    assert got == [f"got 3000 {CLIENT}"]
