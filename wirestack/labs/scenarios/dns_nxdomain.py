"""`wirestack dns-nxdomain`: getaddrinfo() asks the lab's DNS server, which is set to answer nxdomain."""

from ..network import three_hosts
from ..network.dns import resolv_conf
from ..network.lab import Lab
from ..network.servers import Server
from ..network.topology import DNS, SERVER
from . import Scenario

SCENARIO = Scenario(
    name="dns-nxdomain",
    lesson="a resolver that answers NXDOMAIN: the name does not exist, glibc stops at once: EAI_NONAME",
    default_host="name.example",
    default_port=80,
    template="import socket\nsocket.create_connection(({host!r}, {port!r}), timeout={timeout!r})\n",
    lab=Lab(three_hosts(client_resolv_conf=resolv_conf([DNS], timeout=1, attempts=2)),
            (Server("server", "dns", 53, ("--mode", "nxdomain", "--bind", DNS, "--a", SERVER)),),
            setup=f"the client's resolv.conf: nameserver {DNS}, timeout:1 attempts:2; the server there answers "
                  "nxdomain"),
)
