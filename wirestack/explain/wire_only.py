"""What the wire alone shows: flows and findings from packets, for captures that carry no wirestack trace.

Pure. Nothing here knows of calls, frames or programs, and nothing it says claims any: a RST/ACK answering a SYN
means the connection was refused (no listener, or a firewall rejecting), not which line of Python asked for it.

The summary is one pass over the file's packet index (see `wirestack.formats.reader`), decoding only the headers it
counts (IPv4 over Ethernet on a fast path, anything else through `dissect`). Per flow (a 5-tuple, both
directions) it keeps counters and the ids of the first example of each finding; packets themselves are not
kept, so a million packets cost a dictionary of flows, not a million objects. TCP connections on a reused
4-tuple are told apart by their SYN's sequence number.

Findings, failures first:
- **refused**: a SYN answered by RST/ACK before any SYN/ACK;
- **unanswered**: a SYN (and its retransmissions) with no reply captured;
- **reset**: a RST after the handshake;
- **ICMP errors**: destination unreachable and friends, matched to the flow they quote;
- **retransmissions**: SYNs sent again with the same sequence number, data segments sent again.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ..core.dissect import LINKTYPE_ETHERNET
from ..formats.reader import CaptureFile
from .explanation import Finding, duration, endpoint

Addr = tuple[str, int]
_Ep = tuple[bytes, int]
SHOW_ALL = 100  # files with at most this many packets are shown whole
MAX_SHOWN = 60  # otherwise: the packets the findings rest on, at most this many
MAX_FLOWS_SHOWN = 20
MAX_FINDINGS = 12

_ICMP4_UNREACH = {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable",
                  3: "port unreachable", 4: "fragmentation needed", 9: "network administratively prohibited",
                  10: "host administratively prohibited", 13: "communication administratively prohibited"}
_ICMP6_UNREACH = {0: "no route to destination", 1: "communication administratively prohibited",
                  3: "address unreachable", 4: "port unreachable"}
_ICMP4_TYPES = {3: "destination unreachable", 4: "source quench", 5: "redirect", 11: "time exceeded",
                12: "parameter problem"}
_ICMP6_TYPES = {1: "destination unreachable", 2: "packet too big", 3: "time exceeded", 4: "parameter problem"}


def icmp_name(proto: str, itype: int, code: int) -> str:
    """'destination unreachable (port unreachable)' for ICMP 3/3 or ICMPv6 1/4."""
    v6 = proto == "ICMPv6"
    kind = (_ICMP6_TYPES if v6 else _ICMP4_TYPES).get(itype, f"type {itype}")
    if itype == (1 if v6 else 3):
        return f"{kind} ({(_ICMP6_UNREACH if v6 else _ICMP4_UNREACH).get(code, f'code {code}')})"
    return kind if code == 0 else f"{kind} (code {code})"


class _Flow:
    __slots__ = ("proto", "client", "server", "first", "last", "count", "bytes", "start", "end", "attempts",
                 "refused", "reset", "unanswered", "retrans", "icmp", "isn", "syns", "state", "syn_ids",
                 "end_c", "end_s", "ex_refused", "ex_unanswered", "ex_reset", "ex_icmp", "ex_retrans", "data")

    def __init__(self, proto: str, client: _Ep, server: _Ep, pid: int, t: int) -> None:
        self.proto, self.client, self.server = proto, client, server
        self.first = self.last = pid
        self.start = self.end = t
        self.count = self.bytes = self.attempts = self.refused = self.reset = self.unanswered = 0
        self.retrans = self.icmp = self.syns = self.state = self.data = 0
        self.isn = -1
        self.syn_ids: list[tuple[int, int]] = []  # (id, time) of the current attempt's SYNs
        self.end_c = self.end_s = -1  # highest sequence end seen in each direction (data retransmissions)
        self.ex_refused: tuple[int, int, int] | None = None  # (last SYN id, RST id, ns between)
        self.ex_unanswered: tuple[tuple[int, int], ...] | None = None
        self.ex_reset: tuple[int, str] | None = None  # (RST id, who sent it: "client"/"server")
        self.ex_icmp: tuple[int, int, str] | None = None  # (datagram id, ICMP id, what)
        self.ex_retrans: int | None = None

    def answered_after_retransmits(self) -> None:
        if self.syns > 1:
            self.retrans += self.syns - 1
            if self.ex_retrans is None:
                self.ex_retrans = self.syn_ids[1][0]

    def close_attempt(self) -> None:
        if self.state == 1:  # SYN sent, never answered
            self.unanswered += 1
            if self.ex_unanswered is None:
                self.ex_unanswered = tuple(self.syn_ids[:8])
        self.state, self.syns, self.syn_ids = 0, 0, []


@dataclass(frozen=True)
class Flow:
    proto: str
    client: Addr  # the side that sent the first SYN (TCP) or the first datagram
    server: Addr
    packets: int
    bytes: int
    first: int  # packet ids
    last: int
    start_ns: int
    end_ns: int
    attempts: int = 0  # TCP: SYNs with distinct sequence numbers
    refused: int = 0
    reset: int = 0
    unanswered: int = 0
    retransmits: int = 0
    icmp_errors: int = 0
    outcome: str = ""  # "refused", "unanswered", "reset", "ICMP error", "retransmits" or "" (nothing failed)

    @property
    def failed(self) -> bool:
        return self.outcome not in ("", "retransmits")


@dataclass(frozen=True)
class Summary:
    packets: int  # in the file
    start_ns: int
    end_ns: int
    flows: tuple[Flow, ...]  # failures first, then in order of appearance
    other: dict[str, int]  # packets that belong to no TCP/UDP flow, by protocol
    findings: tuple[Finding, ...]
    shown: tuple[int, ...]  # packet ids worth decoding and showing


def _host(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _addr(ep: _Ep) -> Addr:
    return (_host(ep[0]), ep[1])


def _pton(host: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)


def summarise(cf: CaptureFile) -> Summary:
    """One pass over every packet of `cf`: flows, findings, and the packets worth showing."""
    flows: dict[tuple[int, _Ep, _Ep], _Flow] = {}
    other: dict[str, int] = {}
    data, times, offsets, caplens, wirelens, links = cf.data, cf.times, cf.offsets, cf.caplens, cf.wirelens, cf.links
    fast = struct.Struct("!BxHxxxxxBxx4s4sHHIIH").unpack_from  # IPv4 (no options) + TCP/UDP head
    n = len(cf)
    for i in range(n):
        off, cap = offsets[i], caplens[i]
        pid, t = i + 1, times[i]
        head = None
        if links[i] == LINKTYPE_ETHERNET and cap >= 54 and data[off + 12] == 8 and data[off + 13] == 0:
            head = fast(data, off + 14)
            if head[0] != 0x45 or head[2] not in (6, 17):
                head = None
        if head is not None:
            _vihl, total, proto, src, dst, sport, dport, seq, ack, offflags = head
            if proto == 6:
                hlen = (offflags >> 12) * 4
                paylen = max(0, min(total, cap - 14) - 20 - hlen)
                _tcp(flows, pid, t, wirelens[i], (src, sport), (dst, dport), offflags & 0x1FF, seq, ack, paylen)
            else:
                _udp(flows, pid, t, wirelens[i], (src, sport), (dst, dport))
            continue
        p = cf.packet(pid)
        if p.proto == "TCP":
            hbits = sum(1 << "FSRPAUECN".index(f) for f in p.flags)
            _tcp(flows, pid, t, p.length, (_pton(p.src), p.sport), (_pton(p.dst), p.dport), hbits, p.seq, p.ack,
                 len(p.payload))
        elif p.proto == "UDP":
            _udp(flows, pid, t, p.length, (_pton(p.src), p.sport), (_pton(p.dst), p.dport))
        else:
            other[p.proto] = other.get(p.proto, 0) + 1
            if p.quoted is not None and p.icmp is not None:
                q = p.quoted
                key = _key(6 if q.proto == "TCP" else 17, (_pton(q.src), q.sport), (_pton(q.dst), q.dport))
                f = flows.get(key)
                if f is not None:
                    f.icmp += 1
                    f.last, f.end = pid, t
                    if f.ex_icmp is None:
                        f.ex_icmp = (f.first, pid, f"{p.proto} {icmp_name(p.proto, *p.icmp)} from {p.src}")
    for f in flows.values():
        f.close_attempt()
    done = [_public(f) for f in flows.values()]
    order = {"refused": 0, "reset": 1, "unanswered": 2, "ICMP error": 3, "retransmits": 4, "": 5}
    done.sort(key=lambda f: (order[f.outcome], f.first))
    findings = _findings(list(flows.values()))
    if n <= SHOW_ALL:
        shown = tuple(range(1, n + 1))
    else:
        ids: set[int] = set()
        for finding in findings:
            ids.update(finding.packets)
        shown = tuple(sorted(ids)[:MAX_SHOWN])
    return Summary(n, times[0] if n else 0, max(times) if n else 0, tuple(done), other, tuple(findings), shown)


def _key(proto: int, a: _Ep, b: _Ep) -> tuple[int, _Ep, _Ep]:
    return (proto, a, b) if a <= b else (proto, b, a)


def _udp(flows: dict[tuple[int, _Ep, _Ep], _Flow], pid: int, t: int, length: int, src: _Ep, dst: _Ep) -> None:
    key = (17, src, dst) if src <= dst else (17, dst, src)
    f = flows.get(key)
    if f is None:
        f = flows[key] = _Flow("UDP", src, dst, pid, t)
    f.count += 1
    f.bytes += length
    f.last, f.end = pid, t


def _after(x: int, base: int) -> bool:
    return (x - base) % (1 << 32) < (1 << 31)


def _tcp(flows: dict[tuple[int, _Ep, _Ep], _Flow], pid: int, t: int, length: int, src: _Ep, dst: _Ep,
         flags: int, seq: int, ack: int, paylen: int) -> None:
    key = (6, src, dst) if src <= dst else (6, dst, src)
    f = flows.get(key)
    syn, rst, ackf = flags & 2, flags & 4, flags & 16
    if f is None:
        client, server = (dst, src) if syn and ackf else (src, dst)
        f = flows[key] = _Flow("TCP", client, server, pid, t)
        if not syn:
            f.state = 2  # the capture began mid-connection
    f.count += 1
    f.bytes += length
    f.last, f.end = pid, t
    from_client = src == f.client
    if syn and not ackf:
        if from_client and f.isn == seq and f.state == 1:  # counted as retransmits if it gets an answer
            f.syns += 1
            f.syn_ids.append((pid, t))
            return
        f.close_attempt()
        if not from_client:
            f.client, f.server, from_client = src, dst, True
        f.attempts += 1
        f.isn, f.state, f.syns, f.syn_ids = seq, 1, 1, [(pid, t)]
        f.end_c = f.end_s = -1
        return
    if syn and ackf:
        if f.state == 1:
            f.answered_after_retransmits()
            f.state = 2
            f.syn_ids = []
        return
    if rst:
        if f.state == 1 and not from_client and (not ackf or ack == (f.isn + 1) % (1 << 32)):
            f.answered_after_retransmits()
            f.refused += 1
            if f.ex_refused is None:
                last_id, last_t = f.syn_ids[-1] if f.syn_ids else (f.first, f.start)
                f.ex_refused = (last_id, pid, t - last_t)
            f.state, f.syns, f.syn_ids = 3, 0, []
        elif f.state == 2:
            f.reset += 1
            if f.ex_reset is None:
                f.ex_reset = (pid, "client" if from_client else "server")
            f.state = 3
        return
    if paylen:
        f.data += 1
        end = (seq + paylen) % (1 << 32)
        mark = f.end_c if from_client else f.end_s
        if mark >= 0 and not _after(seq, mark):  # it starts before the end of what was already sent
            f.retrans += 1
            if f.ex_retrans is None:
                f.ex_retrans = pid
        elif mark < 0 or _after(end, mark):
            if from_client:
                f.end_c = end
            else:
                f.end_s = end


def _public(f: _Flow) -> Flow:
    outcome = ("refused" if f.refused else "reset" if f.reset else "unanswered" if f.unanswered
               else "ICMP error" if f.icmp else "retransmits" if f.retrans else "")
    return Flow(f.proto, _addr(f.client), _addr(f.server), f.count, f.bytes, f.first, f.last, f.start, f.end,
                f.attempts, f.refused, f.reset, f.unanswered, f.retrans, f.icmp, outcome)


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def _findings(flows: Sequence[_Flow]) -> list[Finding]:
    """Aggregated by the server endpoint: one finding per (kind, endpoint), the biggest first."""
    groups: dict[tuple[str, Addr], list[_Flow]] = {}
    for f in flows:
        server = _addr(f.server)
        for kind, count in (("refused", f.refused), ("unanswered", f.unanswered), ("reset", f.reset),
                            ("icmp", f.icmp), ("retrans", f.retrans)):
            if count:
                groups.setdefault((kind, server), []).append(f)
    rank = {"refused": 0, "reset": 1, "unanswered": 2, "icmp": 3, "retrans": 4}
    attr = {"refused": "refused", "unanswered": "unanswered", "reset": "reset", "icmp": "icmp", "retrans": "retrans"}
    items = sorted(groups.items(), key=lambda kv: (rank[kv[0][0]], -sum(getattr(f, attr[kv[0][0]]) for f in kv[1]),
                                                   kv[1][0].first))
    out = []
    for (kind, server), members in items[:MAX_FINDINGS]:
        total = sum(getattr(f, attr[kind]) for f in members)
        out.append(_finding(kind, server, members, total))
    if len(items) > MAX_FINDINGS:
        out.append(Finding(f"… and {len(items) - MAX_FINDINGS:,} more findings of the same kinds (see the flows)"))
    return out


def _finding(kind: str, server: Addr, members: Sequence[_Flow], total: int) -> Finding:
    dst = endpoint(*server)
    first = members[0]
    if kind == "refused":
        ex = next(f.ex_refused for f in members if f.ex_refused is not None)
        syn, rst, dt = ex
        if total == 1:
            text = (f"RST/ACK answered the SYN to {dst} after {duration(dt)} (#{syn} → #{rst}): the connection was "
                    "refused (nothing listening there, or a firewall rejecting it)")
        else:
            text = (f"{_plural(total, 'connection attempt')} to {dst} were refused: each SYN was answered with "
                    f"RST/ACK (first: #{syn} → #{rst}, after {duration(dt)}); nothing listening there, or a "
                    "firewall rejecting them")
        return Finding(text, (syn, rst))
    if kind == "unanswered":
        ex_u = next(f.ex_unanswered for f in members if f.ex_unanswered is not None)
        ids = tuple(i for i, _ in ex_u)
        if len(ex_u) > 1:
            times = ", ".join("+" + duration(t - ex_u[0][1]) for _, t in ex_u[1:])
            how = f"the SYN was sent {len(ex_u)} times (retransmitted at {times}) and no reply was captured"
        else:
            how = "no reply to the SYN was captured"
        prefix = f"{_plural(total, 'connection attempt')} to {dst}: " if total > 1 else f"to {dst}: "
        return Finding(prefix + how + (" (first attempt shown)" if total > 1 else ""), ids)
    if kind == "reset":
        ex_r = next(f.ex_reset for f in members if f.ex_reset is not None)
        rid, who = ex_r
        f0 = next(f for f in members if f.ex_reset is not None)
        sender = endpoint(*_addr(f0.server if who == "server" else f0.client))
        if total == 1:
            text = (f"{sender} reset the connection {endpoint(*_addr(f0.client))} → {dst} after the handshake "
                    f"(RST #{rid}, {_plural(f0.count, 'packet')} into the flow)")
        else:
            text = f"{_plural(total, 'established connection')} to {dst} ended in a RST (first: #{rid} from {sender})"
        return Finding(text, (rid,))
    if kind == "icmp":
        ex_i = next(f.ex_icmp for f in members if f.ex_icmp is not None)
        dgram, icmp_id, what = ex_i
        f0 = next(f for f in members if f.ex_icmp is not None)
        proto = f0.proto
        if total == 1:
            text = f"{what} answered the {proto} packet {endpoint(*_addr(f0.client))} → {dst} (#{dgram} → #{icmp_id})"
        else:
            text = f"{_plural(total, 'ICMP error')} answered {proto} packets to {dst}: {what} (first: #{icmp_id})"
        if "port unreachable" in what:
            text += ": nothing listened on that port"
        return Finding(text, (dgram, icmp_id))
    ex_t = next((f.ex_retrans for f in members if f.ex_retrans is not None), None)
    text = (f"{_plural(total, 'segment')} to or from {dst} were sent again with sequence numbers already sent "
            "(retransmissions" + (")" if ex_t is None else f"; first: #{ex_t})"))
    if ex_t is None:
        syn_flow = next((f for f in members if f.syn_ids), first)
        return Finding(text, tuple(i for i, _ in syn_flow.syn_ids[:8]))
    return Finding(text, (ex_t,))


def flow_line(f: Flow) -> str:
    """'TCP 127.0.0.1:40000 → 127.0.0.1:464  2 packets  refused 1 of 1'"""
    parts = [f"{f.proto} {endpoint(*f.client)} → {endpoint(*f.server)}", _plural(f.packets, "packet")]
    if f.proto == "TCP" and f.attempts:
        parts.append(_plural(f.attempts, "SYN attempt"))
    for label, value in (("refused", f.refused), ("unanswered", f.unanswered), ("reset", f.reset),
                         ("ICMP errors", f.icmp_errors), ("retransmitted", f.retransmits)):
        if value:
            parts.append(f"{label} {value:,}")
    return "  ".join(parts)
