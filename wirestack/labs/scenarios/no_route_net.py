"""`wirestack no-route-net`: connect to a network the client has no route to (no default route either)."""

from ..network import three_hosts
from ..network.lab import Lab
from ..network.topology import UNROUTED
from . import Scenario

SCENARIO = Scenario(
    name="no-route-net",
    lesson="no route to the network: ENETUNREACH at once, and not one packet leaves",
    default_host=UNROUTED,
    default_port=80,
    template="import socket\nsocket.create_connection(({host!r}, {port!r}), timeout={timeout!r})\n",
    lab=Lab(three_hosts(client_default_route=False),
            setup="client 192.0.2.10 -- router -- server, and the client has no default route"),
)
