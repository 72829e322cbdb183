"""Calls the probe could not see: a runtime whose sockets live in C (uvloop's libuv) makes connect, send and recv
where no wrapper reaches. The probe says so in a note (`record.items.UNSEEN_PREFIX`), and its flows can still be
told from the kernel's own record: a socket changes state (CLOSE → SYN_SENT on connect(), CLOSE → LISTEN on
listen()) in the thread that made the syscall, so an `inet_sock_set_state` event in a traced process's thread
names a flow of the program by its 4-tuple. Pure functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..model import KernelEvent, Packet
from .kernel import addr
from .pairing import norm_host

PREFIX = "not seen by the probe: "  # = record.items.UNSEEN_PREFIX (core does not import record)

# state changes made in the thread of the syscall that caused them (the others happen in softirq context, in
# whichever thread was running)
_OWN_STATES = {("TCP_CLOSE", "TCP_SYN_SENT"), ("TCP_CLOSE", "TCP_LISTEN"), ("TCP_ESTABLISHED", "TCP_FIN_WAIT1"),
               ("TCP_CLOSE_WAIT", "TCP_LAST_ACK")}

Endpoint = tuple[str, int]


def unseen_notes(notes: Iterable[str]) -> list[str]:
    """The notes that name calls the probe could not see."""
    return [n for n in notes if n.startswith(PREFIX)]


Opening = tuple[int, str, Endpoint]  # (time, local host, remote end) of a connect() whose port was not chosen yet


def kernel_flows(events: Iterable[KernelEvent], tids: set[int]) -> tuple[set[frozenset[Endpoint]], set[Endpoint],
                                                                         list[Opening]]:
    """What the kernel shows threads `tids` open: TCP flows (4-tuples, either order), listening endpoints, and
    connects whose state change came before the local port was chosen (CLOSE → SYN_SENT shows port 0: the SYN
    that follows names it, see `of_flows`)."""
    flows: set[frozenset[Endpoint]] = set()
    listening: set[Endpoint] = set()
    opening: list[Opening] = []
    for ev in events:
        if ev.event != "inet_sock_set_state" or ev.tid not in tids:
            continue
        f = ev.fields
        if (f.get("oldstate"), f.get("newstate")) not in _OWN_STATES or f.get("protocol") not in (None, "IPPROTO_TCP"):
            continue
        here, there = addr(f, "s"), addr(f, "d")
        if f.get("newstate") == "TCP_LISTEN":
            listening.add(here)
        elif here[1] == 0:
            opening.append((ev.time_ns, here[0], there))
        else:
            flows.add(frozenset({here, there}))
    return flows, listening, opening


OPEN_NS = 2_000_000_000  # a connect's SYN leaves within this of its state change (else it is not told)
SLACK_NS = 5_000_000  # kernel event times against packet times (see DESIGN: clocks agree, with outliers)


def of_flows(packets: Sequence[Packet], flows: set[frozenset[Endpoint]], listening: set[Endpoint],
             opening: Sequence[Opening] = ()) -> list[Packet]:
    """The TCP packets of `flows`, of connections to a `listening` endpoint, and of each `opening` connect: the
    flow of the first SYN (no ACK) from its local host to its remote end after it, not claimed by another."""
    flows = set(flows)
    claimed: set[int] = set()
    for t, host, there in sorted(opening):
        for p in packets:
            if (p.proto == "TCP" and p.id not in claimed and p.flags == "S" and t - SLACK_NS <= p.time_ns
                    <= t + OPEN_NS and norm_host(p.src) == host and (norm_host(p.dst), p.dport) == there):
                claimed.add(p.id)
                flows.add(frozenset({(host, p.sport), there}))
                break
    out = []
    for p in packets:
        if p.proto != "TCP":
            continue
        a, b = (norm_host(p.src), p.sport), (norm_host(p.dst), p.dport)
        if frozenset({a, b}) in flows or _listens(a, listening) or _listens(b, listening):
            out.append(p)
    return out


def _listens(end: Endpoint, listening: set[Endpoint]) -> bool:
    return end in listening or ("0.0.0.0", end[1]) in listening or ("::", end[1]) in listening
