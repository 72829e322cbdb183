"""Labs on a real (small) network: hosts in private namespaces, veth links, a router with nftables, a DNS server.

    from wirestack.labs.network import Topology, drop, three_hosts
    with Topology(three_hosts(firewall=(drop(80),))) as net:       # client -- router -- server
        net.run("client", ["python3", "client.py"]).wait(10)        # a Popen inside the client
        sock = net.packet_socket("router", "router-eth0")           # AF_PACKET, captures the router's link

Works as root and as root of a user namespace (`unshare --user --map-root-user --net`); nothing outlives the
topology (see topology.py for how). Addresses must lie in the documentation ranges.

Capturing per link: open one AF_PACKET socket per link end, each inside its own host: `with net.enter(host):
socket.socket(AF_PACKET, ...)` (or `net.packet_socket(host, iface)`). A socket belongs to the network namespace
it was created in, for good: after the thread is back home it still captures that host's interface, from any
thread, and bind((iface, 0)) may even happen after leaving (the name is looked up in the socket's namespace). A
socket opened outside cannot bind a host's interface (ENODEV). Close the sockets before the topology closes:
an open socket keeps its namespace, and the veths in it, alive.

Reference: what each failure looks like here (tests/network/test_network_failures.py; Linux 6.18, glibc 2.36,
Python 3.11; times over three runs idle and two with both cores busy; they varied by a few ms). The client is
192.0.2.10, the router 192.0.2.1 / 198.51.100.1, the server 198.51.100.10 (and .53 for DNS).

Each entry: scenario -- exception (errno) -- time; then what the client did, and what tshark saw.

no-route-host -- OSError 113 EHOSTUNREACH -- 3.05-3.07 s
    does: connect 192.0.2.99:80, an address on its own link that nobody owns
    wire: client-eth0: 3 ARP who-has 192.0.2.99 at 0, 1.00, 2.03 s, no reply; no SYN at all (it waits for a MAC)
no-route-net -- OSError 101 ENETUNREACH -- 1-2 ms
    does: connect 203.0.113.10:80 with no default route
    wire: not one frame
no-route-net at the router -- OSError 101 ENETUNREACH -- 1-2 ms
    does: the same with a default route; the router has no route
    wire: 1 SYN, ICMP 3/0 from 192.0.2.1 (a soft error in RFC 1122, but Linux aborts SYN-SENT on it)
firewall-drop -- TimeoutError "timed out" -- 2.50 s
    does: create_connection(server:80, timeout=2.5) through nft `tcp dport 80 drop` (forward chain)
    wire: router-eth0: the SYN at 0, 1.01-1.02, 2.03-2.05 s (same seq; one second apart, not doubling:
          net.ipv4.tcp_syn_linear_timeouts=4 since Linux 6.7); router-eth1: no TCP
firewall-reject -- OSError 113 EHOSTUNREACH -- 2-6 ms
    does: connect server:80 through `reject with icmpx type admin-prohibited`
    wire: 1 SYN, ICMP 3/13 from 192.0.2.1; nothing on the server's link
firewall-reject, IPv6 -- PermissionError 13 EACCES -- 1.01-1.03 s
    does: the same to [2001:db8:2::10]:80
    wire: SYN, ICMPv6 1/1 from 2001:db8:1::1, the SYN again at 1 s, ICMPv6 1/1 again (see note 1)
firewall-reset -- ConnectionRefusedError 111 ECONNREFUSED -- 2-6 ms
    does: connect server:80 through `reject with tcp reset`, and server:81 (closed, nothing listens)
    wire: both RSTs come from 198.51.100.10; port 80's has TTL 64 (made by the router), port 81's TTL 63 (the
          server's, one hop spent); the server's link sees only port 81's SYN
ttl, UDP -- OSError 113 EHOSTUNREACH from recv -- < 5 ms
    does: send with IP_TTL 1 and IP_RECVERR; the error queue names ICMP 11/0 from 192.0.2.1
    wire: the datagram with TTL 1, ICMP 11/0 from 192.0.2.1 (TTL 64); nothing on the server's link
ttl, TCP -- OSError 113 EHOSTUNREACH -- < 5 ms
    does: connect with IP_TTL 1 (timeout 3)
    wire: the SYN with TTL 1, ICMP 11/0 from 192.0.2.1
mtu, both ends -- no error -- 3-14 ms
    does: send 200 kB to the server over a router-server link with MTU 1000 (three_hosts(mtu=1000))
    wire: the server's SYN-ACK says MSS 960: every segment <= 1000 bytes, no ICMP; PMTUD is never needed
mtu, PMTUD -- no error -- 3-24 ms
    does: the same with three_hosts(bottleneck=1000): only router-eth1 has MTU 1000 (note 2)
    wire: 10 segments of 1500 bytes (DF), 10 ICMP 3/4 "next-hop MTU 1000" from 192.0.2.1, then 1000-byte
          segments (about 213 more, retransmissions included); the server's link never carries more than 1000
mtu, black hole -- TimeoutError "timed out" -- 2.00-2.01 s
    does: the same with drop_frag_needed() on the router (output chain); sendall 2 MB with timeout 2
    wire: 14 segments of 1500 bytes, no ICMP; the first re-sent at 0.22, 0.64, 1.47 s (RTO 200 ms, doubling);
          no data reaches the server
nat -- no error -- 2-7 ms
    does: connect server:80 through masquerade out of router-eth1, send 5 bytes
    wire: client link 192.0.2.10:P -> 198.51.100.10:80, server link 198.51.100.1:P -> 198.51.100.10:80 (the
          port kept); the server's accept() sees 198.51.100.1
dns-answer -- no error: 198.51.100.10, 2001:db8:2::10 -- 2-8 ms
    does: socket.getaddrinfo("name.example", 80); resolv.conf: nameserver 198.51.100.53, timeout:1 attempts:2
    wire: A and AAAA queried at once from one socket, both answered
dns-nxdomain -- socket.gaierror -2 EAI_NONAME -- 2-3 ms
    wire: A + AAAA, both answered rcode 3; no retry
dns-servfail -- socket.gaierror -3 EAI_AGAIN -- 2-7 ms
    wire: A + AAAA twice (attempts:2) within 1 ms, 4 answers rcode 2
dns-refused -- socket.gaierror -3 EAI_AGAIN -- 2-7 ms
    wire: as SERVFAIL, rcode 5
dns-silent -- socket.gaierror -3 EAI_AGAIN -- 2.005 s
    wire: A + AAAA at 0 s and again at 1.00 s (timeout:1 attempts:2), no answer
fragments -- no error (3000 sent; the server reads one 3000-byte datagram) -- < 5 ms
    does: sendto 3000 bytes of UDP over the 1500-byte link
    wire: 3 fragments of 1500/1500/68 bytes, offsets 0/1480/2960 (tshark's ip.frag_offset is in 8-byte units:
          0/185/370), MF 1/1/0, DF 0

Notes.
1. ICMP that answers a SYN at once may arrive while connect() still holds the socket lock: the veth path runs
   inside the sender's own softirq, so there is no round trip. The kernel then keeps the error as a soft one
   (TcpExt LockDroppedIcmps +1, every time here). IPv4 with a socket timeout (Python's non-blocking connect)
   still failed at once; a *blocking* IPv4 connect (no timeout) took 1.02-1.03 s, and IPv6 took ~1.01 s either
   way: only the ICMP answering the retransmitted SYN ended them. Real networks, with a real RTT, rarely show it.
2. TCP never needs PMTUD when the small MTU is at the receiver's own link (its MSS says so). `bottleneck`
   narrows the router's end only, as if the small link lay further along: a lab device, not a mismatched link
   (large frames from the server to the router would be dropped by the veth itself).
3. The glibc resolver runs A and AAAA in parallel; with attempts:2 a server answering SERVFAIL or REFUSED is
   asked twice at once, a silent one twice `timeout` apart. Writing `search .` would double every query.
4. tcpdump needs `-Z root` (else it opens the file as user tcpdump) and `--immediate-mode`; offloads are off
   (TSO/GSO) or the sender's capture shows 46 kB "frames" for a bulk transfer.
5. IPv6 adds MLD reports on every link at bring-up (router solicitations and DAD are off): filter them.
"""

from .firewall import Masquerade, Rule, drop, drop_frag_needed, reject_admin, reject_reset, ruleset
from .topology import End, Host, Layout, Link, NetworkError, Route, Topology, three_hosts

__all__ = ["End", "Host", "Layout", "Link", "Masquerade", "NetworkError", "Route", "Rule", "Topology", "drop",
           "drop_frag_needed", "reject_admin", "reject_reset", "ruleset", "three_hosts"]
