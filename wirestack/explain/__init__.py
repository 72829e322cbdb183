"""Explaining: from a trace and its pairing to facts (typed, with evidence), and from facts to sentences.

    scene.build      connections and conversations reconstructed from the packets, both directions
    rules            the registry: each rule reads the scene, the calls and the kernel's joins, and yields facts
    facts            the fact types (kind, evidence ids, fields)
    wording          one sentence per fact kind

Pure: no IO. The same rules run on a traced run and on a plain capture file (which has packets only); a rule
whose evidence is absent says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.kernel import KernelView
from ..core.pairing import Alignment
from ..core.paths import own_link
from ..model import Trace
from .context import Context
from .facts import Fact
from .scene import Scene, build


@dataclass(frozen=True)
class Explanation:
    scene: Scene
    facts: tuple[Fact, ...]


def explain(trace: Trace, alignment: Alignment, kernel: KernelView) -> Explanation:
    from .rules import load

    scene = build(own_link(trace), alignment, trace.calls)  # a capture on several links: the program's own
    ctx = Context(trace, alignment, scene, kernel)
    found: list[tuple[int, int, Fact]] = []
    for order, rule in enumerate(load()):
        for fact in rule(ctx):
            found.append((fact.time_ns, order, fact))
    found.sort(key=lambda x: (x[0], x[1]))
    return Explanation(scene, tuple(f for _, _, f in found))


_FLAGS = {"SYN": "S", "RST": "R", "FIN": "F", "SYN/ACK": "SA"}


def disagreements(trace: Trace, facts: tuple[Fact, ...]) -> list[str]:
    """Where a fact's claim about a packet (who sent it, what it is: `Fact.claims`) contradicts the packet, or
    another fact's claim. Empty when the facts agree; the suite checks every report it makes (see
    `commands.pipeline`, WIRESTACK_CHECK_FACTS)."""
    packets = {p.id: p for p in trace.packets}
    said: dict[int, tuple[str, tuple[str, int]]] = {}  # packet -> (the first fact that named its sender, sender)
    out = []
    for f in facts:
        for pid, sender, what in f.claims():
            p = packets.get(pid)
            if p is None:
                out.append(f"{f.kind}: packet #{pid} is not in the trace")
                continue
            if sender is not None:
                if (p.src, p.sport) != sender:
                    out.append(f"{f.kind}: #{pid} was sent by {p.src}:{p.sport}, not {sender[0]}:{sender[1]}")
                earlier = said.setdefault(pid, (f.kind, sender))
                if earlier[1] != sender:
                    out.append(f"{f.kind} and {earlier[0]} disagree on who sent #{pid}")
            need = _FLAGS.get(what)
            if need is not None and not set(need) <= set(p.flags):
                out.append(f"{f.kind}: #{pid} is {p.flags or 'no TCP segment'}, not a {what}")
    return out


__all__ = ["Explanation", "Fact", "disagreements", "explain"]
