"""`wirestack ttl`: a SYN with an IP TTL of 1: the router may not forward it."""

from ..network import three_hosts
from ..network.lab import Lab
from ..network.servers import Server
from ..network.topology import SERVER
from . import Scenario

SCENARIO = Scenario(
    name="ttl",
    lesson="a TTL of 1: the router answers ICMP time exceeded instead of forwarding, and connect() fails",
    default_host=SERVER,
    default_port=80,
    template=("import socket\n"
              "s = socket.socket(socket.{family}, socket.SOCK_STREAM)\n"
              "s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)  # one hop: as traceroute's first probe\n"
              "s.settimeout({timeout!r})\n"
              "s.connect(({host!r}, {port!r}))\n"),
    lab=Lab(three_hosts(), (Server("server", "tcp", 80),),
            setup="client 192.0.2.10 -- router 192.0.2.1 | 198.51.100.1 -- server 198.51.100.10 (listening on 80)"),
)
