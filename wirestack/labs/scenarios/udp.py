"""`wirestack udp`: a connected UDP socket sends a datagram to a port where no socket receives, then reads."""

from . import Scenario

SCENARIO = Scenario(
    name="udp",
    lesson="UDP to a closed port: the datagram out, ICMP port unreachable back, errno 111 at the next recv()",
    default_host="127.0.0.1",
    default_port=None,
    peer="closed-udp",
    template=("import socket\n"
              "s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n"
              "s.settimeout({timeout!r})\n"
              "s.connect(({host!r}, {port!r}))\n"
              "s.send(b'hello, is anyone there?')\n"
              "s.recv(1024)\n"),
)
