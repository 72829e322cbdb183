"""Which TCP connections the traced program really took part in, by the kernel's word rather than its own. Pure.

Under sudo the program runs as a user while wirestack captures as root: a program could send records that name
another user's loopback connection (4-tuples are world-readable in /proc/net/tcp), and the pairing would put
that connection's packets into the user's own capture. So a connection is admitted only with the kernel's
evidence that one of the program's processes opened or accepted it:

- **its processes**: the run's first process and every task forked from one of them (the scheduler's
  `sched_process_fork` events; each trace line also names its thread's process, `record-tgid`);
- **opened**: one of them moved a socket from CLOSE to SYN_SENT toward the connection's server address and port
  (`inet_sock_set_state`, logged inside its connect() call) within `NEAR_NS` of the connection's first SYN;
- **accepted**: one of them had put a socket into LISTEN on the server's port before the connection began
  (`inet_sock_set_state` in its listen() call; another user cannot listen on a port that is taken) and returned
  from accept() after it began.

A connection whose beginning the capture did not see (no SYN) can only be admitted as accepted. UDP has no such
evidence in the kernel layer (datagram calls are not traced there: their cost is paid per datagram), so UDP
conversations stay the program's records' word; the report says so (see `record.assemble`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..model import Addr, KernelEvent, Packet
from .flows import Flows
from .pairing import Alignment, norm_host

NEAR_NS = 50_000_000  # a SYN leaves moments after its socket entered SYN_SENT; slack for the clocks' sync
_WILDCARD = frozenset({"0.0.0.0", "::", ""})


def program_tasks(events: Iterable[KernelEvent], root: int) -> set[int]:
    """Thread and process ids of the run's processes: `root` and everything forked from it, in time order."""
    tasks = {root}
    for ev in sorted((e for e in events if e.event == "sched_process_fork"), key=lambda e: e.time_ns):
        child = ev.fields.get("child_pid", "")
        if (ev.pid in tasks or ev.tid in tasks) and child.isdigit():
            tasks.add(int(child))
    return tasks


@dataclass
class Evidence:
    """What the kernel saw the program's tasks do to TCP sockets."""

    syn_sent: dict[Addr, list[int]] = field(default_factory=lambda: defaultdict(list))  # server -> times
    listening: dict[int, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))  # port -> (host, t)
    accepted: list[int] = field(default_factory=list)  # times accept() returned a connection

    @classmethod
    def of(cls, events: Iterable[KernelEvent], tasks: set[int]) -> Evidence:
        out = cls()
        for ev in events:
            if ev.pid not in tasks and ev.tid not in tasks:
                continue
            f = ev.fields
            if ev.event == "inet_sock_set_state" and f.get("protocol") == "IPPROTO_TCP":
                v6 = f.get("family") == "AF_INET6"
                if f.get("newstate") == "TCP_SYN_SENT" and f.get("dport", "").isdigit():
                    host = norm_host(f.get("daddrv6" if v6 else "daddr", ""))
                    out.syn_sent[(host, int(f["dport"]))].append(ev.time_ns)
                elif f.get("newstate") == "TCP_LISTEN" and f.get("sport", "").isdigit():
                    host = norm_host(f.get("saddrv6" if v6 else "saddr", ""))
                    out.listening[int(f["sport"])].append((host, ev.time_ns))
            elif ev.event in ("sys_exit_accept4", "sys_exit_accept") and not f.get("ret", "-").startswith("-"):
                out.accepted.append(ev.time_ns)
        out.accepted.sort()
        return out

    def opened(self, server: Addr, syn_ns: int) -> bool:
        return any(abs(t - syn_ns) <= NEAR_NS for t in self.syn_sent.get((norm_host(server[0]), server[1]), ()))

    def served(self, server: Addr, began_ns: int) -> bool:
        host = norm_host(server[0])
        listened = any(t <= began_ns + NEAR_NS and (h in _WILDCARD or h == host)
                       for h, t in self.listening.get(server[1], ()))
        return listened and bool(self.accepted) and self.accepted[-1] >= began_ns - NEAR_NS


def refused_flows(flows: Flows, alignment: Alignment, packets: Sequence[Packet], evidence: Evidence) -> list[int]:
    """Ids of the TCP flows the program's records claim but the kernel shows none of its tasks opening or
    accepting."""
    by_id = {p.id: p for p in packets}
    out = []
    for f in flows.flows:
        if f.proto != "TCP" or not f.packets:
            continue
        ends = alignment.ends.get(f.id, {})
        if not ends.get("a") and not ends.get("b"):
            continue  # no traced socket claims it (it is not kept anyway)
        first = by_id[f.packets[0]]
        client_ok = bool(ends.get("a")) and f.opened and evidence.opened(f.b, first.time_ns)
        server_ok = bool(ends.get("b")) and evidence.served(f.b, first.time_ns)
        if not client_ok and not server_ok:
            out.append(f.id)
    return out
