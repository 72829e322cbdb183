"""`wirestack firewall-reject`: the router rejects, once with a TCP reset in the server's name, once with ICMP
administratively prohibited; a closed port on the server answers with its own reset, for comparison."""

from ..network import reject_admin, reject_reset, three_hosts
from ..network.lab import Lab
from ..network.topology import SERVER
from . import Scenario

SCENARIO = Scenario(
    name="firewall-reject",
    lesson="a firewall that rejects: its RST has the TTL of the router, not the server; ICMP 3/13 is EHOSTUNREACH",
    default_host=SERVER,
    default_port=80,
    template=("import socket\n"
              "for p in (81, 82):  # 81: the router resets in the server's name; 82: nothing listens on the server\n"
              "    try:\n"
              "        socket.create_connection(({host!r}, p), timeout={timeout!r})\n"
              "    except ConnectionRefusedError:\n"
              "        pass\n"
              "socket.create_connection(({host!r}, {port!r}), timeout={timeout!r})  # the router: ICMP 3/13\n"),
    lab=Lab(three_hosts(firewall=(reject_admin(80), reject_reset(81))),
            setup="the router's nftables rejects TCP to port 80 with ICMP admin-prohibited and to port 81 with a TCP "
                  "reset; nothing listens on the server's port 82"),
)
