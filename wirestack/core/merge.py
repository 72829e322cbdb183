"""Two captures of one exchange (this machine's and the peer's, `wirestack read FILE --peer OTHER`) lined up by
what the packets are, not by their times: two machines' clocks differ. Pure.

- **The same packet** is the same transport content: for TCP its sequence and acknowledgement numbers, flags and
  payload (ports and addresses may differ: a NAT between the two captures rewrites them); for anything else its
  protocol, IPv4 identification and payload. The n-th copy here of a key (a retransmission repeats it) is the n-th
  copy there.
- **The clock offset** comes from the matched pairs: `d = t_there - t_here` is the offset plus the one-way delay
  for a packet this side sent, the offset minus it for one the peer sent. The packets' senders (by their source
  address in this capture) fall in two groups by their median `d`; the offset is the mean of the two medians, the
  delay half their difference. Packets matched one way only give the offset plus an unknown delay, and say so.
- **Unseen**: a packet of a conversation both captures hold that only one of them has, sent after both had
  started (the offset applied): a segment sent and lost on the way, or one the peer sent that never arrived
  here. A capture file does not record when it stopped: those after the other file's last packet are counted
  apart, since that capture may have stopped before they could arrive.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from ..model import Packet
from .companions import ipv4

Key = tuple[object, ...]


def key(p: Packet) -> Key | None:
    """What makes a packet the same packet in both captures, or None for what cannot be matched (ARP: each link
    has its own)."""
    digest = hashlib.blake2b(p.payload, digest_size=8).digest()
    if p.proto == "TCP":
        return ("TCP", p.seq, p.ack, p.flags, len(p.payload), digest)
    if p.proto in ("UDP", "ICMP", "ICMPv6", "other") and p.src:
        ip = ipv4(p)
        if ip is not None:
            return (p.proto, ip.ident, ip.offset, len(p.payload), digest)
        return (p.proto, p.sport, p.dport, len(p.payload), digest)
    return None


@dataclass(frozen=True)
class Merge:
    pairs: tuple[tuple[int, int], ...]  # (id here, id there) of each packet both saw
    offset_ns: int  # the peer's clock minus this one's
    delay_ns: int  # one-way delay (0 when matched one way only)
    both_ways: bool
    senders_here: frozenset[str]  # the source addresses (as this capture shows them) of this side's packets
    unseen_there: tuple[int, ...]  # ids here of packets this side sent that the peer never saw
    unseen_here: tuple[int, ...]  # ids there of packets the peer sent that never arrived here
    late_there: int = 0  # of unseen_there: after the peer file's last packet (had its capture stopped?)
    late_here: int = 0  # of unseen_here: after this file's last packet


def merge(here: Sequence[Packet], there: Sequence[Packet]) -> Merge | None:
    """The two captures lined up (see the module docstring); None when not one packet is in both."""
    theirs: dict[Key, list[Packet]] = defaultdict(list)
    for p in sorted(there, key=lambda p: (p.time_ns, p.id)):
        k = key(p)
        if k is not None:
            theirs[k].append(p)
    used: dict[Key, int] = defaultdict(int)
    pairs: list[tuple[Packet, Packet]] = []
    for p in sorted(here, key=lambda p: (p.time_ns, p.id)):
        k = key(p)
        if k is None or used[k] >= len(theirs.get(k, ())):
            continue
        pairs.append((p, theirs[k][used[k]]))
        used[k] += 1
    if not pairs:
        return None
    by_src: dict[str, list[int]] = defaultdict(list)
    for a, b in pairs:
        by_src[a.src].append(b.time_ns - a.time_ns)
    medians = sorted((median(ds), src) for src, ds in by_src.items())
    if len(medians) >= 2:
        # the largest step between sorted medians splits the peer's senders (low) from this side's (high)
        cut = max(range(1, len(medians)), key=lambda i: medians[i][0] - medians[i - 1][0])
        low = median([d for m, s in medians[:cut] for d in by_src[s]])
        high = median([d for m, s in medians[cut:] for d in by_src[s]])
        offset, delay, both = int((low + high) / 2), int((high - low) / 2), True
        senders = frozenset(s for _, s in medians[cut:])
    else:
        offset, delay, both = int(medians[0][0]), 0, False
        senders = frozenset(s for _, s in medians)
    matched_here = {a.id for a, _ in pairs}
    matched_there = {b.id for _, b in pairs}
    # unseen: only in the conversations both captures hold (the other machine's other traffic is none of this
    # exchange), and only after both had started; the end of a capture file is not recorded (pcap has no end
    # marker), so what comes after the other file's last packet is counted apart (`late`)
    start = max(min(p.time_ns for p in here), min(p.time_ns for p in there) - offset)
    ends_there = max(p.time_ns for p in there) - offset
    ends_here = max(p.time_ns for p in here)
    conv_here = {c for a, _ in pairs for c in _both(a)}
    conv_there = {c for _, b in pairs for c in _both(b)}
    theirs_from_us = _sources_of(pairs, senders)
    unseen_there = [p for p in here if p.id not in matched_here and key(p) is not None and p.time_ns >= start
                    and _conv(p) in conv_here and p.src in senders]
    unseen_here = [p for p in there if p.id not in matched_there and key(p) is not None and p.time_ns - offset >= start
                   and _conv(p) in conv_there and p.src not in theirs_from_us]
    return Merge(tuple((a.id, b.id) for a, b in pairs), offset, delay, both, senders,
                 tuple(p.id for p in unseen_there), tuple(p.id for p in unseen_here),
                 sum(p.time_ns > ends_there for p in unseen_there),
                 sum(p.time_ns - offset > ends_here for p in unseen_here))


def _conv(p: Packet) -> tuple[str, int, str, int]:
    return (p.src, p.sport, p.dst, p.dport)


def _both(p: Packet) -> tuple[tuple[str, int, str, int], tuple[str, int, str, int]]:
    return (p.src, p.sport, p.dst, p.dport), (p.dst, p.dport, p.src, p.sport)


def _sources_of(pairs: Sequence[tuple[Packet, Packet]], senders: frozenset[str]) -> set[str]:
    """This side's addresses as the peer's capture shows them (a NAT may have rewritten them)."""
    return {b.src for a, b in pairs if a.src in senders}
