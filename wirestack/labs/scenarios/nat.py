"""`wirestack nat`: the router masquerades: the server sees the router's address, not the client's."""

from ..network import three_hosts
from ..network.lab import Lab
from ..network.servers import Server
from ..network.topology import SERVER
from . import Scenario

SCENARIO = Scenario(
    name="nat",
    lesson="NAT: the 4-tuple on the client's link and on the server's differ; the router rewrote the source",
    default_host=SERVER,
    default_port=80,
    template=("import socket\n"
              "s = socket.create_connection(({host!r}, {port!r}), timeout={timeout!r})\n"
              "s.sendall(b'hello')\n"
              "s.close()\n"),
    lab=Lab(three_hosts(nat=True), (Server("server", "tcp", 80),),
            setup="the router masquerades what leaves toward the server (nftables, postrouting)"),
)
