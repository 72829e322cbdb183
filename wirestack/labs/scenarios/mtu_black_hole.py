"""`wirestack mtu-black-hole`: the same path as `mtu`, with the router's ICMP fragmentation-needed filtered."""

from ..network import drop_frag_needed, three_hosts
from ..network.lab import Lab
from ..network.servers import Server
from ..network.topology import SERVER
from . import Scenario

SCENARIO = Scenario(
    name="mtu-black-hole",
    lesson="a PMTU black hole: full-size segments vanish at the router, no ICMP comes back, the transfer stalls",
    default_host=SERVER,
    default_port=5001,
    timeout=1.5,  # the first segment and its retransmissions at ~0.2, 0.6, 1.4 s
    template=("import socket\n"
              "s = socket.create_connection(({host!r}, {port!r}), timeout={timeout!r})\n"
              "s.sendall(bytes(2000000))\n"),
    lab=Lab(three_hosts(bottleneck=1000, firewall=drop_frag_needed()), (Server("server", "tcp", 5001),),
            setup="the router's interface toward the server has MTU 1000, and its nftables drops ICMP fragmentation "
                  "needed"),
)
