"""`wirestack firewall-drop`: the router's firewall silently drops the SYNs to the server's port 80."""

from ..network import drop, three_hosts
from ..network.lab import Lab
from ..network.servers import Server
from ..network.topology import SERVER
from . import Scenario

SCENARIO = Scenario(
    name="firewall-drop",
    lesson="a firewall that drops: the SYNs reach the router and die there, retransmitted until the timeout",
    default_host=SERVER,
    default_port=80,
    timeout=1.5,  # the SYN and one retransmission (at ~1 s)
    template="import socket\nsocket.create_connection(({host!r}, {port!r}), timeout={timeout!r})\n",
    lab=Lab(three_hosts(firewall=(drop(80),)), (Server("server", "tcp", 80),),
            setup="the router's nftables drops TCP to port 80 (chain forward); the server listens on port 80"),
)
