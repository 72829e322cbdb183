"""`wirestack fragments`: one UDP datagram larger than the link's MTU."""

from ..network import three_hosts
from ..network.lab import Lab
from ..network.servers import Server
from ..network.topology import SERVER
from . import Scenario

SCENARIO = Scenario(
    name="fragments",
    lesson="a UDP datagram larger than the MTU leaves as IP fragments; the server's kernel puts them together",
    default_host=SERVER,
    default_port=9000,
    template=("import socket\n"
              "s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n"
              "s.sendto(b'f' * 3000, ({host!r}, {port!r}))  # the link carries 1500 bytes a frame\n"),
    lab=Lab(three_hosts(), (Server("server", "udp", 9000),),
            setup="client -- router -- server, MTU 1500 everywhere; the server reads UDP port 9000"),
)
