"""A small network of hosts, described as data and brought up in private namespaces.

    layout = three_hosts(firewall=(drop(80),))
    with Topology(layout) as net:
        server = net.run("server", ["python3", "-m", "http.server", "80"])
        with net.enter("router"):                      # this thread only
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL
            sock.bind(("router-eth0", 0))              # stays in the router's namespace after we leave
        net.run("client", ["python3", "client.py"]).wait(10)

How a host is made: a helper process (`python -I -S -c HOLDER`) calls unshare(CLONE_NEWNET | CLONE_NEWUTS)
(and CLONE_NEWNS when the host has its own resolv.conf), then blocks reading its stdin. Nothing is bind-mounted
under /run/netns, so the namespaces live exactly as long as the processes in them: the helper ends when its
stdin closes, when it is killed, or when the thread that started it dies (PR_SET_PDEATHSIG=SIGTERM; so bring a
topology up from a thread that outlives it, normally the main thread), and before ending it kills every other
process in its network namespace. Processes started with `run` get SIGKILL as their own death signal
(`setpriv --pdeathsig KILL`), and `close` kills them and whatever else it finds in the hosts' namespaces. A
socket opened inside a host keeps that namespace (and its veths) alive until it is closed.

Veth pairs are made inside the first host's namespace with the peer created straight in the second's
(`ip link add name A index I type veth peer name B index J netns PID`: nothing to move afterwards), so no
interface of ours ever exists in the caller's namespace; all `ip` (one `ip -batch -` per host) and `nft -f -`
commands run through `nsenter --net=/proc/PID/ns/net`. This works as root and as
root of a user namespace (`unshare --user --map-root-user --net`): there the helpers' namespaces belong to that
user namespace, in which the caller holds CAP_SYS_ADMIN and CAP_NET_ADMIN.

Own resolv.conf: a host with `resolv_conf` text gets a private mount namespace (propagation private, as
`unshare --mount` makes it) in which the helper bind-mounts a file with that text over /etc/resolv.conf, as
`mount --bind FILE /etc/resolv.conf` would (the file lives on a tmpfs that only that mount still holds). `run` enters
that mount namespace too (`nsenter --mount --wd=CWD`), so glibc's resolver in the host asks the host's server.
`enter` cannot switch mount namespaces (a thread shares its filesystem context with the process), so
getaddrinfo inside `enter` still reads the caller's resolv.conf.

Captures stay true to the wire: TSO and GSO are turned off on every veth (Link.offload keeps them), else
tcpdump on the sender would see one 64 KiB "frame" per burst; IPv6 is disabled on every interface with no IPv6
address, and router solicitations and DAD are off on the others, so the links stay quiet until used.

It is long because a topology must be built and torn down as one unit (hosts, links, routes, nft, the holders that
keep the namespaces), with its guarantees stated once.
"""

from __future__ import annotations

import ctypes
import fcntl
import ipaddress
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, TypeVar

from ...errors import NetworkError as NetworkError
from .firewall import Masquerade, Rule, ruleset

T = TypeVar("T")

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWNET = 0x00020000, 0x04000000, 0x40000000
SIOCGIFFLAGS, SIOCGIFMTU, SIOCGIFHWADDR, SIOCETHTOOL = 0x8913, 0x8921, 0x8927, 0x8946
IFF_RUNNING = 0x40
ETHTOOL_STSO, ETHTOOL_SGSO = 0x1F, 0x24
DOCUMENTATION = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
                                                         "2001:db8::/32"))
HOLDER_MARK = "# wirestack-network-host"  # in the helpers' command lines, to find them
READY_SECONDS = 5.0  # for a helper to report its namespaces
COMMAND_SECONDS = 10.0  # for one ip or nft command
CLOSE_SECONDS = 3.0  # for every process to be gone at teardown

# The helper that holds one host's namespaces. argv: owner pid, host name, "1" and the resolv.conf text, or "0".
# The text goes into a file on a tmpfs mounted over /tmp in the private mount namespace, which is bind-mounted
# over /etc/resolv.conf; then the tmpfs is detached from /tmp. The bind mount keeps the file: nothing is ever
# written to the machine's disks, so nothing can be left there.
HOLDER = HOLDER_MARK + r"""
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG: SIGTERM, to sweep the namespace before dying
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the owner, which tears down in order
if os.getppid() != int(sys.argv[1]):  # the owner died before prctl took effect
    os._exit(1)
name, own_resolv = sys.argv[2], sys.argv[3] == "1"
def fail(step):
    sys.stdout.write("error %s %d\n" % (step, ctypes.get_errno())); sys.stdout.flush(); os._exit(2)
if libc.unshare(0x40000000 | 0x04000000 | (0x00020000 if own_resolv else 0)) != 0:
    fail("unshare")
if libc.sethostname(name.encode(), len(name)) != 0:
    fail("sethostname")
if own_resolv:
    if libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) != 0:  # MS_REC | MS_PRIVATE
        fail("private-mounts")
    if libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, b"size=64k,mode=0755") != 0:
        fail("tmpfs")
    with open("/tmp/resolv.conf", "w") as f:
        f.write(sys.argv[4])
    os.chmod("/tmp/resolv.conf", 0o644)
    if libc.mount(b"/tmp/resolv.conf", b"/etc/resolv.conf", None, 0x1000, None) != 0:  # MS_BIND
        fail("bind-resolv.conf")
    if libc.umount2(b"/tmp", 2) != 0:  # MNT_DETACH
        fail("detach-tmpfs")
def sweep(*_):
    # The owner is gone (or closed our stdin): kill what else is in this namespace, such as the orphans of
    # processes run here, which no death signal reaches. Then the namespace dies with us.
    me, mine = os.getpid(), os.stat("/proc/self/ns/net").st_ino
    for _ in range(3):
        found = False
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and int(entry) != me and os.stat("/proc/%s/ns/net" % entry).st_ino == mine:
                    os.kill(int(entry), signal.SIGKILL)
                    found = True
            except OSError:
                pass
        if not found:
            break
    os._exit(0)
signal.signal(signal.SIGTERM, sweep)
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.read()
sweep()
"""


@dataclass(frozen=True)
class End:
    """One end of a link: interface NAME in HOST, with addresses like "192.0.2.10/24" or "2001:db8:1::10/64".
    `mtu` overrides the link's MTU at this end only (see three_hosts' `bottleneck`)."""

    host: str
    name: str
    addresses: tuple[str, ...] = ()
    mtu: int | None = None

    def ipv6(self) -> bool:
        return any(ipaddress.ip_interface(a).version == 6 for a in self.addresses)


@dataclass(frozen=True)
class Link:
    """A veth pair between two hosts. `offload` keeps TSO/GSO on (captures then show frames above the MTU)."""

    a: End
    b: End
    mtu: int | None = None
    offload: bool = False

    def ends(self) -> tuple[End, End]:
        return self.a, self.b

    def mtu_of(self, end: End) -> int | None:
        return end.mtu if end.mtu is not None else self.mtu


@dataclass(frozen=True)
class Route:
    """A route: TO is "default" or a network ("203.0.113.0/24"), VIA a gateway on one of the host's links."""

    to: str
    via: str

    def family(self) -> int:
        return ipaddress.ip_address(self.via).version

    def destination(self) -> str:
        if self.to == "default":
            return "0.0.0.0/0" if self.family() == 4 else "::/0"
        return self.to


@dataclass(frozen=True)
class Host:
    """A host: its own network (and UTS) namespace. `forwarding` makes it a router (IPv4, and IPv6 if any of
    its interfaces has an IPv6 address); `resolv_conf` is the text of its private /etc/resolv.conf."""

    name: str
    routes: tuple[Route, ...] = ()
    forwarding: bool = False
    firewall: tuple[Rule, ...] = ()
    nat: tuple[Masquerade, ...] = ()
    resolv_conf: str | None = None


@dataclass(frozen=True)
class Layout:
    """The whole description. Frozen: vary one with dataclasses.replace."""

    hosts: tuple[Host, ...]
    links: tuple[Link, ...] = ()

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise NetworkError(f"no host named {name!r} in this topology")

    def ends(self, host: str | None = None) -> list[End]:
        return [end for link in self.links for end in link.ends() if host is None or end.host == host]

    def link_of(self, end: End) -> Link:
        return next(link for link in self.links if end in link.ends())

    def validate(self) -> None:
        """Raise NetworkError on the first mistake: names, addresses outside the documentation ranges, ..."""
        names = [h.name for h in self.hosts]
        for name in names:
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
                raise NetworkError(f"host name {name!r}: use lowercase letters, digits and '-'")
            if names.count(name) > 1:
                raise NetworkError(f"two hosts are named {name!r}")
        seen: set[str] = set()
        for end in self.ends():
            if end.host not in names:
                raise NetworkError(f"link end {end.name!r} is on unknown host {end.host!r}")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}", end.name) or end.name == "lo":
                raise NetworkError(f"interface name {end.name!r}: at most 15 letters, digits, '-', '_', '.'")
            if f"{end.host}/{end.name}" in seen:
                raise NetworkError(f"host {end.host!r} has two interfaces named {end.name!r}")
            seen.add(f"{end.host}/{end.name}")
            for address in end.addresses:
                _documentation(address, f"address of {end.name}")
            mtu = self.link_of(end).mtu_of(end)
            if mtu is not None and not 68 <= mtu <= 65535:
                raise NetworkError(f"MTU {mtu} of {end.name}: must be between 68 and 65535")
        for host in self.hosts:
            mine = {e.name for e in self.ends(host.name)}
            for route in host.routes:
                _documentation(route.via, f"gateway of a route on {host.name}")
                if route.to != "default":
                    _documentation(route.to, f"route on {host.name}")
            for masq in host.nat:
                if masq.out not in mine:
                    raise NetworkError(f"masquerade on {host.name}: it has no interface {masq.out!r}")
            for rule in host.firewall:
                if any(c in rule.text() for c in "{};\n"):
                    raise NetworkError(f"firewall rule on {host.name}: one rule without braces or ';'")

    def describe(self) -> dict[str, Any]:
        """Hosts, links, routes, firewall rules and NAT as plain data (JSON-ready)."""
        return {
            "hosts": [{
                "name": h.name,
                "forwarding": h.forwarding,
                "routes": [{"to": r.to, "via": r.via} for r in h.routes],
                "firewall": [r.describe() for r in h.firewall],
                "nat": [m.describe() for m in h.nat],
                "resolv_conf": h.resolv_conf,
            } for h in self.hosts],
            "links": [{
                "mtu": link.mtu,
                "ends": [{"host": e.host, "name": e.name, "addresses": list(e.addresses),
                          "mtu": link.mtu_of(e)} for e in link.ends()],
            } for link in self.links],
        }


def _documentation(text: str, what: str) -> None:
    try:
        net = ipaddress.ip_interface(text).network
    except ValueError:
        raise NetworkError(f"{what}: {text!r} is not an address") from None
    if not any(net.version == doc.version and net.subnet_of(doc) for doc in DOCUMENTATION):  # type: ignore[arg-type]
        raise NetworkError(f"{what}: {text} is outside the documentation ranges (192.0.2.0/24, 198.51.100.0/24, "
                           "203.0.113.0/24, 2001:db8::/32)")


# The standard three hosts: client -- router -- server.
CLIENT, ROUTER_CLIENT, ROUTER_SERVER, SERVER, DNS = ("192.0.2.10", "192.0.2.1", "198.51.100.1", "198.51.100.10",
                                                     "198.51.100.53")
CLIENT6, ROUTER_CLIENT6, ROUTER_SERVER6, SERVER6, DNS6 = ("2001:db8:1::10", "2001:db8:1::1", "2001:db8:2::1",
                                                          "2001:db8:2::10", "2001:db8:2::53")
NOBODY = "192.0.2.99"  # on the client's link, owned by nobody
NOBODY6 = "2001:db8:1::99"  # the same, over IPv6
UNROUTED = "203.0.113.10"  # in no one's routing table but through a default route


def three_hosts(*, ipv6: bool = False, mtu: int | None = None, bottleneck: int | None = None,
                firewall: Sequence[Rule] = (), nat: bool = False, client_default_route: bool = True,
                client_resolv_conf: str | None = None) -> Layout:
    """client (192.0.2.10) -- router (192.0.2.1 | 198.51.100.1) -- server (198.51.100.10 and .53).

    `mtu`: the MTU of the router-server link, both ends (the server then announces a smaller MSS, so TCP never
    needs path MTU discovery). `bottleneck`: the MTU of the router's end of that link only, as if the small link
    lay further along the path: the server keeps 1500 and announces MSS 1460. `firewall` and `nat`
    (masquerade out of router-eth1) go on the router."""
    def addresses(*pairs: tuple[str, str, int]) -> tuple[str, ...]:
        return tuple(f"{a}/{n}" for v4, v6, n4 in pairs for a, n in ((v4, n4), (v6, 64)) if ipv6 or a == v4)

    client = End("client", "client-eth0", addresses((CLIENT, CLIENT6, 24)))
    router_a = End("router", "router-eth0", addresses((ROUTER_CLIENT, ROUTER_CLIENT6, 24)))
    router_b = End("router", "router-eth1", addresses((ROUTER_SERVER, ROUTER_SERVER6, 24)), mtu=bottleneck)
    server = End("server", "server-eth0", addresses((SERVER, SERVER6, 24), (DNS, DNS6, 24)))
    client_routes = [Route("default", ROUTER_CLIENT)] if client_default_route else []
    server_routes = [Route("default", ROUTER_SERVER)]
    if ipv6:
        client_routes += [Route("default", ROUTER_CLIENT6)] if client_default_route else []
        server_routes += [Route("default", ROUTER_SERVER6)]
    return Layout(
        hosts=(Host("client", tuple(client_routes), resolv_conf=client_resolv_conf),
               Host("router", forwarding=True, firewall=tuple(firewall),
                    nat=(Masquerade("router-eth1"),) if nat else ()),
               Host("server", tuple(server_routes))),
        links=(Link(client, router_a), Link(router_b, server, mtu=mtu)),
    )


class _Libc:
    """setns and errno through ctypes (os.setns arrives only in Python 3.12)."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL(None, use_errno=True)

    def setns(self, fd: int, nstype: int) -> None:
        if self.lib.setns(fd, nstype) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))


@dataclass
class _Live:
    holder: subprocess.Popen[bytes]
    inode: int  # of its network namespace
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)


class Topology:
    """A Layout brought up: `with Topology(layout) as net: ...`. Not reentrant; one bring-up per object."""

    def __init__(self, layout: Layout) -> None:
        layout.validate()
        self.layout = layout
        self._live: dict[str, _Live] = {}
        self._libc = _Libc()
        self._lock = threading.Lock()
        self._outside: set[str] = set()  # interface names in the caller's namespace before bring-up
        self._tools: dict[str, str] = {}

    # -- bring-up and teardown -------------------------------------------------------------------------------

    def __enter__(self) -> Topology:
        self.up()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def up(self) -> None:
        if self._live:
            raise NetworkError("this topology is already up")
        needs = ["ip", "nsenter", "setpriv"]
        if any(h.firewall or h.nat for h in self.layout.hosts):
            needs.append("nft")
        for tool in needs:
            path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")
            if not path:
                package = {"ip": "iproute2", "nft": "nftables"}.get(tool, "util-linux")
                raise NetworkError(f"`{tool}` is missing: install {package}")
            self._tools[tool] = path
        self._outside = {name for _, name in socket.if_nameindex()}
        try:
            self._spawn()
            self._configure()
        except BaseException:
            self.close()
            raise

    def _spawn(self) -> None:
        for host in self.layout.hosts:  # all started first, then waited for together
            resolv = ["0"] if host.resolv_conf is None else ["1", host.resolv_conf]
            holder = subprocess.Popen([sys.executable, "-I", "-S", "-c", HOLDER, str(os.getpid()), host.name, *resolv],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self._live[host.name] = _Live(holder, 0)  # from now on close() finds it
        deadline = time.monotonic() + READY_SECONDS
        for name, live in self._live.items():
            line = _read_line(live.holder, deadline)
            if line != "ready":
                raise NetworkError(_refused(name, line, live.holder))
            live.inode = os.stat(f"/proc/{live.holder.pid}/ns/net").st_ino

    def _configure(self) -> None:
        layout = self.layout
        # 1. The veth pairs, made in the first end's namespace with the peer put straight into the second's.
        # Every end gets its own ifindex: were a veth's index equal to its peer's (both 2, each first in its own
        # namespace), the kernel would take its carrier change for a non-urgent event and delay the operstate
        # (and IPv6's readiness: neighbour solicitations unanswered) by up to a second.
        index = {(e.host, e.name): 2 + i for i, e in enumerate(layout.ends())}
        for host in layout.hosts:
            adds = []
            for link in layout.links:
                if link.a.host == host.name:
                    where = f" netns {self.pid(link.b.host)}" if link.b.host != host.name else ""
                    adds.append(f"link add name {link.a.name} index {index[link.a.host, link.a.name]} type veth "
                                f"peer name {link.b.name} index {index[link.b.host, link.b.name]}{where}")
            if adds:
                self._ip(host.name, adds)
        # 2. Per host: sysctls and offloads (this thread, inside), then addresses, MTUs, links up and routes.
        for host in layout.hosts:
            ends = layout.ends(host.name)
            with self.enter(host.name):
                for end in ends:
                    if not os.path.isdir("/proc/sys/net/ipv6"):
                        if end.ipv6():
                            raise NetworkError(f"{end.name} has an IPv6 address but this kernel has no IPv6")
                    elif end.ipv6():
                        for key in ("accept_dad", "router_solicitations"):
                            _sysctl(f"net/ipv6/conf/{end.name}/{key}", "0")
                    else:
                        _sysctl(f"net/ipv6/conf/{end.name}/disable_ipv6", "1")
                    if not layout.link_of(end).offload:
                        _offload_off(end.name)
                if host.forwarding:
                    _sysctl("net/ipv4/ip_forward", "1")
                    if any(end.ipv6() for end in ends):
                        _sysctl("net/ipv6/conf/all/forwarding", "1")
            batch = ["link set lo up"]
            for end in ends:
                mtu = layout.link_of(end).mtu_of(end)
                if mtu is not None:
                    batch.append(f"link set dev {end.name} mtu {mtu}")
                for address in end.addresses:
                    nodad = " nodad" if ipaddress.ip_interface(address).version == 6 else ""
                    batch.append(f"address add {address} dev {end.name}{nodad}")
                batch.append(f"link set dev {end.name} up")
            batch += [f"route add {r.destination()} via {r.via}" for r in host.routes]
            self._ip(host.name, batch)
        # 3. Firewall and NAT.
        for host in layout.hosts:
            script = ruleset(host.firewall, host.nat)
            if script:
                self._command(host.name, [self._tools["nft"], "-f", "-"], script, "nft")
        # 4. Every link running (carrier and operstate up) before anyone uses it.
        deadline = time.monotonic() + READY_SECONDS
        for end in layout.ends():
            with self.enter(end.host):
                while not _flags(end.name) & IFF_RUNNING:
                    if time.monotonic() > deadline:
                        raise NetworkError(f"{end.name} in {end.host} did not come up")
                    time.sleep(0.005)

    def close(self) -> None:
        """Kill every process of the topology; the namespaces, veths and nft tables go with them. Idempotent.
        A Ctrl-C arriving meanwhile is held back until the teardown is done."""
        with _sigint_deferred():
            with self._lock:
                live, self._live = self._live, {}
            if not live:
                return
            deadline = time.monotonic() + CLOSE_SECONDS
            procs: list[subprocess.Popen[Any]] = [p for v in live.values() for p in v.processes]
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
            inodes = {v.inode for v in live.values() if v.inode}
            for pid in _pids_in(inodes):
                _kill(pid)
            for v in live.values():
                if v.holder.stdin:
                    v.holder.stdin.close()
                if v.holder.poll() is None:
                    v.holder.kill()
            for proc in [*procs, *(v.holder for v in live.values())]:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise NetworkError(f"process {proc.pid} would not die at teardown") from None
            for v in live.values():  # the streams of processes started by `run` are the caller's to close
                for stream in (v.holder.stdout, v.holder.stderr):
                    if stream:
                        stream.close()
            while (left := _pids_in(inodes)) and time.monotonic() < deadline:
                time.sleep(0.01)  # killed, not yet gone
            if left:
                raise NetworkError(f"processes {sorted(left)} are still in the topology's namespaces")
            ours = {e.name for e in self.layout.ends()}
            stray = ours & ({name for _, name in socket.if_nameindex()} - self._outside)
            if stray:
                raise NetworkError(f"interfaces {sorted(stray)} appeared in the caller's namespace")

    # -- working inside --------------------------------------------------------------------------------------

    def pid(self, host: str) -> int:
        """The pid of the helper holding HOST's namespaces."""
        live = self._live.get(host)
        if live is None:
            self.layout.host(host)  # unknown host: a clearer message
            raise NetworkError("the topology is not up")
        return live.holder.pid

    def netns(self, host: str) -> str:
        """A path to HOST's network namespace, for nsenter --net= or open() + setns."""
        return f"/proc/{self.pid(host)}/ns/net"

    def run(self, host: str, argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
        """Start ARGV inside HOST (its network, UTS and, with a resolv.conf, mount namespace) and return the
        Popen. It gets SIGKILL when the calling thread dies, and is killed at close() if still running."""
        proc = subprocess.Popen([*self.prefix(host, popen.get("cwd")), *argv], **popen)
        with self._lock:
            self._live[host].processes.append(proc)
        return proc

    def prefix(self, host: str, cwd: str | os.PathLike[str] | None = None) -> list[str]:
        """The argv that runs a command inside HOST as `run` does (put the command after it): setpriv (SIGKILL
        when the caller's thread dies) and nsenter into its network, UTS and, with a resolv.conf, mount
        namespace (in the working folder CWD, by default the caller's). Both exec: the command keeps the pid."""
        pid = self.pid(host)
        cmd = [self._tools["setpriv"], "--pdeathsig", "KILL", "--", self._tools["nsenter"],
               f"--net=/proc/{pid}/ns/net", f"--uts=/proc/{pid}/ns/uts"]
        if self.layout.host(host).resolv_conf is not None:
            # setns to a mount namespace resets the working folder: take the caller's along.
            cmd += [f"--mount=/proc/{pid}/ns/mnt", f"--wd={os.fspath(cwd or os.getcwd())}"]
        return [*cmd, "--"]

    def adopt(self, host: str, proc: subprocess.Popen[Any]) -> None:
        """Count PROC (started with `prefix`) among HOST's processes: close() kills it if it still runs."""
        with self._lock:
            self._live[host].processes.append(proc)

    @contextmanager
    def enter(self, host: str) -> Iterator[None]:
        """Switch the calling thread (only) into HOST's network namespace, and back on leaving. Sockets opened
        inside stay in HOST's namespace: an AF_PACKET socket bound there captures HOST's interface after we
        left (capture needs one such socket per link end, each opened in its own host)."""
        target = os.open(self.netns(host), os.O_RDONLY | os.O_CLOEXEC)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                self._libc.setns(target, CLONE_NEWNET)
            except OSError as exc:
                raise NetworkError(f"cannot enter {host}'s network namespace: {exc.strerror}") from None
            try:
                yield
            finally:
                self._libc.setns(home, CLONE_NEWNET)  # if this failed the thread would be stranded: let it raise
        finally:
            os.close(target)
            os.close(home)

    def call(self, host: str, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) with the calling thread inside HOST's network namespace."""
        with self.enter(host):
            return fn(*args)

    def packet_socket(self, host: str, interface: str, proto: int = 0x0003) -> socket.socket:
        """An AF_PACKET socket bound to INTERFACE of HOST (all protocols by default), usable from any thread and
        namespace. Close it before the topology closes, or the namespace outlives the helpers."""
        with self.enter(host):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
            try:
                sock.bind((interface, proto))
            except OSError:
                sock.close()
                raise
        return sock

    def describe(self) -> dict[str, Any]:
        """Layout.describe(), plus (while up) each host's helper pid and each end's MAC and effective MTU."""
        data = self.layout.describe()
        if not self._live:
            return data
        for host in data["hosts"]:
            host["pid"] = self.pid(host["name"])
        for link in data["links"]:
            for end in link["ends"]:
                with self.enter(end["host"]):
                    end["mac"], end["mtu"] = _hwaddr(end["name"]), _mtu(end["name"])
        return data

    # -- plumbing --------------------------------------------------------------------------------------------

    def _ip(self, host: str, batch: list[str]) -> None:
        done = self._command(host, [self._tools["ip"], "-batch", "-"], "\n".join(batch) + "\n", "ip", check=False)
        if done.returncode != 0:
            err = _first_line(done.stderr)
            at = re.search(r"Command failed -:(\d+)", done.stderr)
            where = f" (at `ip {batch[int(at.group(1)) - 1]}`)" if at and int(at.group(1)) <= len(batch) else ""
            raise NetworkError(f"ip in {host}: {err}{where}")

    def _command(self, host: str, argv: list[str], stdin: str, what: str,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [self._tools["nsenter"], f"--net={self.netns(host)}", "--", *argv]
        try:
            done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=COMMAND_SECONDS)
        except subprocess.TimeoutExpired:
            raise NetworkError(f"{what} in {host} took more than {COMMAND_SECONDS:.0f} s") from None
        if check and done.returncode != 0:
            raise NetworkError(f"{what} in {host}: {_first_line(done.stderr)}")
        return done


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and "Command failed" not in line]
    return lines[0] if lines else "failed"


def _read_line(proc: subprocess.Popen[bytes], deadline: float) -> str:
    """The helper's first line, or "" if it exits or stays silent until DEADLINE."""
    assert proc.stdout
    fd, data = proc.stdout.fileno(), b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return ""
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").split("\n", 1)[0].strip()


def _refused(host: str, line: str, proc: subprocess.Popen[bytes]) -> str:
    if not line:
        proc.kill()
        proc.wait(CLOSE_SECONDS)
        err = proc.stderr.read(4000).decode(errors="replace") if proc.stderr else ""
        return f"the helper for {host} did not start: {_first_line(err) if err.strip() else 'no answer'}"
    parts = line.split()
    if len(parts) == 3 and parts[0] == "error" and parts[2].isdigit():
        step, name = parts[1], os.strerror(int(parts[2]))
        if step == "unshare":
            return (f"the kernel refused a network namespace for {host} ({name}): run as root, or inside "
                    "`unshare --user --map-root-user --net`")
        return f"cannot set up {host} ({step}: {name})"
    return f"the helper for {host} said {line!r}"


def _sysctl(key: str, value: str) -> None:
    """Write /proc/sys/KEY; /proc/sys/net shows the network namespace of the calling thread."""
    try:
        with open(f"/proc/sys/{key}", "w") as f:
            f.write(value)
    except OSError as exc:
        raise NetworkError(f"cannot set {key.replace('/', '.')}={value}: {exc.strerror}") from None


def _offload_off(name: str) -> None:
    """ethtool -K NAME tso off gso off, through the legacy ETHTOOL_STSO/SGSO ioctls."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for cmd in (ETHTOOL_STSO, ETHTOOL_SGSO):
            value = ctypes.create_string_buffer(struct.pack("II", cmd, 0))
            request = struct.pack("16sP", name.encode(), ctypes.addressof(value))
            try:
                fcntl.ioctl(s.fileno(), SIOCETHTOOL, request)
            except OSError as exc:
                raise NetworkError(f"cannot turn segmentation offload off on {name}: {exc.strerror}") from None


def _ifreq(name: str, request: int) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return fcntl.ioctl(s.fileno(), request, struct.pack("16s16x", name.encode()))


def _flags(name: str) -> int:
    value: int = struct.unpack_from("H", _ifreq(name, SIOCGIFFLAGS), 16)[0]
    return value


def _mtu(name: str) -> int:
    value: int = struct.unpack_from("i", _ifreq(name, SIOCGIFMTU), 16)[0]
    return value


def _hwaddr(name: str) -> str:
    return ":".join(f"{b:02x}" for b in _ifreq(name, SIOCGIFHWADDR)[18:24])


def _pids_in(inodes: set[int]) -> set[int]:
    """Processes (other than this one) whose network namespace is one of INODES."""
    found = set()
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    found.add(int(entry))
            except OSError:
                continue  # gone, a zombie, or not ours to look at
    return found


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold SIGINT until the block is done, then deliver it (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)
