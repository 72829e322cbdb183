"""`wirestack no-route-host`: connect to an address on the client's own link that no host owns."""

from ..network import three_hosts
from ..network.lab import Lab
from ..network.topology import NOBODY
from . import Scenario

SCENARIO = Scenario(
    name="no-route-host",
    lesson="an address on the link nobody owns: ARP asks and gets no answer, no SYN leaves, EHOSTUNREACH",
    default_host=NOBODY,
    default_port=80,
    timeout=10.0,  # the kernel gives up on ARP after ~3 s, before this
    template="import socket\nsocket.create_connection(({host!r}, {port!r}), timeout={timeout!r})\n",
    lab=Lab(three_hosts(), setup="client 192.0.2.10 -- router 192.0.2.1 | 198.51.100.1 -- server 198.51.100.10; "
            "192.0.2.99 is on the client's link, and no host has it"),
)
