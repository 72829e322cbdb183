"""`wirestack mtu`: the router's way to the server carries only 1000-byte packets: path MTU discovery."""

from ..network import three_hosts
from ..network.lab import Lab
from ..network.servers import Server
from ..network.topology import SERVER
from . import Scenario

SCENARIO = Scenario(
    name="mtu",
    lesson="a smaller MTU on the path: ICMP fragmentation needed from the router, and the segments shrink",
    default_host=SERVER,
    default_port=5001,
    template=("import socket\n"
              "s = socket.create_connection(({host!r}, {port!r}), timeout={timeout!r})\n"
              "s.sendall(bytes(30000))\n"
              "s.close()\n"),
    lab=Lab(three_hosts(bottleneck=1000), (Server("server", "tcp", 5001),),
            setup="the router's interface toward the server has MTU 1000; the client's link and the server's MSS "
                  "say 1500"),
)
