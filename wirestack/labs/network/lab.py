"""A scenario on a network of its own: the topology, its servers, the capture on every link, the traced client.

    run_lab(scenario, host, port)  ->  Recording   (what `record.runner.run_traced` returns, plus the links and
                                                     the network as it was: `Recording.links`, `.network`)

In order: bring the topology up (namespaces, veths, routes, nft), start the lab's servers in their hosts, read
what each host's kernel says of itself (routes, default TTL, MACs, MTUs), open one capture per link
(`capture.LinkCapture`), run the scenario's client traced inside its host (nsenter before the interpreter: the
probe and the records socket work as on loopback), then read the firewall's counters and tear everything
down. Nothing outlives the run: the topology's own guarantees (see topology.py), also on SIGINT (the
interrupted recording is kept and analysed, as for a loopback scenario).

As root, and as root of a user namespace (`wirestack` re-executes itself in one when it lacks the privilege:
see `record.netns`); there the kernel layer is off, and the firewall's own counters say where packets died.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
import subprocess
from dataclasses import dataclass, replace
from typing import Any

from ...errors import CaptureError, NetworkError
from ...record.runner import Interrupted, OnFrame, Recording, run_traced
from ...record.spool import Spool
from .capture import LinkCapture, Tap, taps
from .firewall import TABLE, counters
from .servers import Server, start
from .topology import Layout, Topology

_RTF_GATEWAY = 0x2


@dataclass(frozen=True)
class Lab:
    """What a network scenario runs on: LAYOUT, the servers to start, the host the client runs in, and one line
    saying what the lab sets up (shown in the report's notes)."""

    layout: Layout
    servers: tuple[Server, ...] = ()
    client: str = "client"
    setup: str = ""


def run_lab(scenario: Any, host: str | None = None, port: int | None = None, *, timeout: float | None = None,
            kernel: bool = True, snaplen: int | None = None, max_packets: int | None = None,
            spool: Spool | None = None, on_frame: OnFrame | None = None, source: str = "auto") -> Recording:
    """Run SCENARIO (a `labs.scenarios.Scenario` with a `lab`) in its own network; see the module docstring."""
    lab: Lab = scenario.lab
    if source not in ("auto", "raw", "netns"):
        raise CaptureError(f"--capture {source}: a network lab captures with raw sockets inside its own hosts")
    limits: dict[str, Any] = {k: v for k, v in (("snaplen", snaplen), ("max_packets", max_packets)) if v}
    with Topology(lab.layout) as net:
        for server in lab.servers:
            start(net, server)
        where = taps(lab.layout, lab.client)
        network = describe(net, lab, where)
        capture = LinkCapture(net, where, **limits)
        client = replace(scenario.client(host, port), prefix=tuple(net.prefix(lab.client, "/")))
        try:
            recording = run_traced(client, capture.interface, timeout=timeout or scenario.limit, on_frame=on_frame,
                                   kernel=kernel, source=capture, spool=spool, **limits)
        except Interrupted as exc:
            _finish(exc.recording, net, lab, capture, network)
            raise
        _finish(recording, net, lab, capture, network)
    return recording


def _finish(rec: Recording, net: Topology, lab: Lab, capture: LinkCapture, network: dict[str, Any]) -> None:
    network["firewall"] = _counted(net, lab)
    rec.links, rec.network = capture.names, network
    if lab.setup:
        rec.notes.insert(0, f"network lab: {lab.setup}")


def describe(net: Topology, lab: Lab, where: list[Tap]) -> dict[str, Any]:
    """The network as its hosts' kernels have it now: each host's addresses, routes (IPv4 and IPv6, as the
    kernel lists them) and default TTL; each link's ends with MAC and MTU; where it is captured."""
    data = net.describe()
    hosts = []
    for h in data["hosts"]:
        with net.enter(h["name"]):
            routes, ttl = _routes(), _read_int("/proc/sys/net/ipv4/ip_default_ttl")
        layout_host = lab.layout.host(h["name"])
        hosts.append({"name": h["name"], "forwarding": layout_host.forwarding, "routes": routes, "ttl": ttl,
                      "addresses": [a for e in lab.layout.ends(h["name"]) for a in e.addresses],
                      "nat": [m.out for m in layout_host.nat]})
    links = [{"ends": [{k: e[k] for k in ("host", "name", "addresses", "mac", "mtu")} for e in link["ends"]]}
             for link in data["links"]]
    return {"hosts": hosts, "links": links, "client": lab.client,
            "taps": [{"name": t.name, "host": t.host, "interface": t.interface, "link": [t.a, t.b]} for t in where],
            "servers": [s.describe() for s in lab.servers], "firewall": []}


def _counted(net: Topology, lab: Lab) -> list[dict[str, Any]]:
    """Each host's firewall rules with what they counted, read from nft at the end of the run."""
    out: list[dict[str, Any]] = []
    for h in lab.layout.hosts:
        if not h.firewall:
            continue
        try:
            done = subprocess.run([*net.prefix(h.name, "/"), "nft", "-j", "list", "table", "inet", TABLE],
                                  capture_output=True, text=True, timeout=10)
            listing = json.loads(done.stdout) if done.returncode == 0 else {}
        except (OSError, ValueError, subprocess.TimeoutExpired):
            listing = {}
        out += [{"host": h.name, **c} for c in counters(listing, h.firewall)]
    return out


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _routes() -> list[dict[str, Any]]:
    """The calling thread's network namespace's main routing tables (IPv4 and IPv6), from /proc/thread-self/net
    (/proc/net is the process's namespace, not the thread's)."""
    out: list[dict[str, Any]] = []
    try:
        with open("/proc/thread-self/net/route") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        lines = []
    for line in lines:
        cols = line.split()
        if len(cols) < 8:
            continue
        dev, dest, gateway, flags, mask = cols[0], int(cols[1], 16), int(cols[2], 16), int(cols[3], 16), \
            int(cols[7], 16)
        net_ = ipaddress.ip_network((socket.inet_ntoa(struct.pack("<I", dest)),
                                     bin(mask).count("1")), strict=False)
        out.append({"dst": "default" if net_.prefixlen == 0 else str(net_), "dev": dev,
                    "via": socket.inet_ntoa(struct.pack("<I", gateway)) if flags & _RTF_GATEWAY else None})
    if os.path.exists("/proc/thread-self/net/ipv6_route"):
        with open("/proc/thread-self/net/ipv6_route") as f:
            for line in f.read().splitlines():
                cols = line.split()
                if len(cols) < 10 or cols[9] == "lo":
                    continue
                dest6 = ipaddress.IPv6Address(bytes.fromhex(cols[0]))
                prefix, via = int(cols[1], 16), ipaddress.IPv6Address(bytes.fromhex(cols[4]))
                if dest6.is_link_local or dest6.is_multicast:
                    continue
                out.append({"dst": "default" if prefix == 0 else f"{dest6}/{prefix}", "dev": cols[9],
                            "via": None if via.is_unspecified else str(via)})
    return out


__all__ = ["Lab", "NetworkError", "run_lab"]
