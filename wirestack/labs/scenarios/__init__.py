"""The lab catalogue: each scenario is data, one small module each.

A scenario names a client to run (stdlib-only code, since it runs in an isolated interpreter), the peer to
start for it on loopback (a kind from `wirestack.labs.peers`, or none), its defaults and its one-line lesson; a
network scenario names instead the lab it runs in (`lab`: hosts, links, firewall, servers; see labs.network.lab).
The CLI does the same for every scenario: start the peer, run the client traced, stop the peer, explain what the
wire showed. Adding a scenario is adding a module here (and listing it in `catalogue`) plus its test.

Templates are `str.format`ted with: `host`, `port`, `timeout` (the client's own socket timeout, seconds),
`family` (`AF_INET` or `AF_INET6`, from the host) and `url` (`http://HOST:PORT/`, IPv6 hosts in brackets).
Literal braces in a template are doubled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...record.runner import Client

RESERVING = ("closed", "closed-udp")  # peers that only hold a port where nothing listens (see wirestack.labs.peers)


@dataclass(frozen=True)
class Scenario:
    name: str
    lesson: str
    default_host: str
    default_port: int | None  # None: the port the peer bound (an ephemeral one unless --port is given)
    template: str  # client code
    peer: str | None = None  # kind of peer process (wirestack.labs.peers), or None
    timeout: float = 5.0  # the client's socket timeout, where the template uses one
    limit: float = 60.0  # wirestack stops the client after this many seconds
    lab: Any = None  # a network of its own (wirestack.labs.network.lab.Lab): the client runs in its client host

    def peer_for(self, port_given: bool) -> str | None:
        """The peer to start: a port-reserving peer is not needed when the user chose the port."""
        if port_given and self.peer in RESERVING:
            return None
        return self.peer

    def client(self, host: str | None = None, port: int | None = None) -> Client:
        h = self.default_host if host is None else host
        p = self.default_port if port is None else port
        if p is None:
            raise ValueError(f"scenario {self.name} needs a port: the peer's, or one given")
        netloc = f"[{h}]:{p}" if ":" in h else f"{h}:{p}"
        code = self.template.format(host=h, port=p, timeout=self.timeout, url=f"http://{netloc}/",
                                    family="AF_INET6" if ":" in h else "AF_INET")
        return Client(self.name, code, f"<wirestack {self.name}>")


def catalogue() -> dict[str, Scenario]:
    from . import eof, ftp, http, http_ok, imap, ipv6, pop3, reset, smtp, smtp_ok, timeout, tls, udp

    modules = (smtp, http, ftp, pop3, imap, udp, timeout, reset, eof, tls, ipv6, smtp_ok, http_ok)
    return {m.SCENARIO.name: m.SCENARIO for m in modules} | network_catalogue()


def network_catalogue() -> dict[str, Scenario]:
    """The scenarios that run on a network of their own (client -- router -- server, see labs.network)."""
    from . import (
        dns_nxdomain,
        dns_servfail,
        dns_silent,
        firewall_drop,
        firewall_reject,
        fragments,
        mtu,
        mtu_black_hole,
        nat,
        no_route_host,
        no_route_host6,
        no_route_net,
        ttl,
    )

    modules = (no_route_host, no_route_host6, no_route_net, firewall_drop, firewall_reject, ttl, mtu, mtu_black_hole,
               nat, dns_nxdomain, dns_servfail, dns_silent, fragments)
    return {m.SCENARIO.name: m.SCENARIO for m in modules}
