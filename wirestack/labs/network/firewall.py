"""Packet filter and NAT rules for a host, as data, rendered into one nftables table.

Each host with rules gets the table `inet wirestack` in its own network namespace (never the machine's), so the
table goes with the namespace. `inet` covers IPv4 and IPv6 at once; chains have policy accept, so a rule only
adds what the scenario breaks; each rule counts what it matched (`counters` reads the counts back). Note where
the packets are: a router *forwards* the client's packets (chain `forward`) but *sends* its own ICMP errors and
TCP resets (chain `output`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Chain = Literal["input", "forward", "output"]
CHAINS: tuple[Chain, ...] = ("input", "forward", "output")
TABLE = "wirestack"


@dataclass(frozen=True)
class Rule:
    """`MATCH VERDICT` in one chain, e.g. Rule("tcp dport 80", "drop")."""

    match: str
    verdict: str
    chain: Chain = "forward"
    note: str = ""  # what the rule is for, for the report

    def text(self) -> str:
        return f"{self.match} {self.verdict}".strip()

    def describe(self) -> dict[str, Any]:
        return {"chain": self.chain, "rule": self.text(), "note": self.note}


@dataclass(frozen=True)
class Masquerade:
    """Source NAT to the address of `out`, for packets leaving through that interface."""

    out: str

    def describe(self) -> dict[str, Any]:
        return {"masquerade": self.out}


def drop(port: int, proto: Literal["tcp", "udp"] = "tcp") -> Rule:
    """Silently drop what is forwarded to PORT: the sender retransmits until it gives up."""
    return Rule(f"{proto} dport {port}", "drop", note=f"drop {proto} to port {port}")


def reject_admin(port: int, proto: Literal["tcp", "udp"] = "tcp") -> Rule:
    """Answer with ICMP destination unreachable, administratively prohibited (type 3 code 13; ICMPv6 1/1)."""
    return Rule(f"{proto} dport {port}", "reject with icmpx type admin-prohibited",
                note=f"reject {proto} to port {port} with icmp admin-prohibited")


def reject_reset(port: int) -> Rule:
    """Answer a SYN to PORT with a TCP reset, sent by this host in the server's name."""
    return Rule(f"tcp dport {port}", "reject with tcp reset", note=f"reject tcp to port {port} with a reset")


def drop_frag_needed() -> tuple[Rule, ...]:
    """Drop ICMP fragmentation-needed (and ICMPv6 packet-too-big): a PMTU black hole. Both chains, since the
    router's own errors leave through `output` and those of a router further along pass through `forward`."""
    note = "drop ICMP fragmentation needed (PMTU black hole)"
    v4 = "icmp type destination-unreachable icmp code frag-needed"
    chains: tuple[Chain, ...] = ("output", "forward")
    return tuple(Rule(match, "drop", chain, note) for chain in chains for match in (v4, "icmpv6 type packet-too-big"))


def ruleset(rules: Iterable[Rule], nat: Iterable[Masquerade]) -> str:
    """The nft script (for `nft -f -`) that makes the table; empty when there is nothing to add."""
    rules, nat = list(rules), list(nat)
    if not rules and not nat:
        return ""
    lines = [f"table inet {TABLE} {{"]
    for chain in CHAINS:
        mine = [r for r in rules if r.chain == chain]
        if mine:
            lines.append(f"\tchain {chain} {{")
            lines.append(f"\t\ttype filter hook {chain} priority filter; policy accept;")
            lines.extend(f"\t\t{r.match} counter {r.verdict}".strip() for r in mine)  # counted: see counters()
            lines.append("\t}")
    if nat:
        lines.append("\tchain postrouting {")
        lines.append("\t\ttype nat hook postrouting priority srcnat; policy accept;")
        lines.extend(f'\t\toifname "{m.out}" masquerade' for m in nat)
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def counters(listing: dict[str, Any], rules: Iterable[Rule]) -> list[dict[str, Any]]:
    """What each rule matched, from `nft -j list table inet wirestack` (parsed JSON): the rules' descriptions
    with "packets" and "bytes" added, in the order `ruleset` wrote them (chain by chain)."""
    found: dict[str, list[tuple[int, int]]] = {}
    for item in listing.get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not isinstance(rule, dict) or rule.get("table") != TABLE:
            continue
        counts = [e["counter"] for e in rule.get("expr", []) if isinstance(e, dict) and isinstance(e.get("counter"),
                                                                                                   dict)]
        if counts:
            found.setdefault(str(rule.get("chain")), []).append((int(counts[0].get("packets", 0)),
                                                                 int(counts[0].get("bytes", 0))))
    out = []
    seen: dict[str, int] = {}
    for r in rules:
        i = seen.get(r.chain, 0)
        seen[r.chain] = i + 1
        mine = found.get(r.chain, [])
        packets, size = mine[i] if i < len(mine) else (0, 0)
        out.append({**r.describe(), "packets": packets, "bytes": size})
    return out
