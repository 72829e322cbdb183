"""`wirestack no-route-host6`: the IPv6 `no-route-host`: an address on the client's own link that no host owns,
asked for by neighbour solicitation instead of ARP."""

from ..network import three_hosts
from ..network.lab import Lab
from ..network.topology import NOBODY6
from . import Scenario

SCENARIO = Scenario(
    name="no-route-host6",
    lesson="IPv6: neighbour solicitations (ICMPv6 135) for an address nobody owns go unanswered, no SYN, "
           "EHOSTUNREACH",
    default_host=NOBODY6,
    default_port=80,
    timeout=10.0,  # the kernel gives up on neighbour discovery after ~3 s, before this
    template="import socket\nsocket.create_connection(({host!r}, {port!r}), timeout={timeout!r})\n",
    lab=Lab(three_hosts(ipv6=True), setup="client 2001:db8:1::10 -- router 2001:db8:1::1 | 2001:db8:2::1 -- server "
            "2001:db8:2::10 (and their IPv4 addresses); 2001:db8:1::99 is on the client's link, and no host has it"),
)
