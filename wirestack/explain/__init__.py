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

    scene = build(trace.packets, alignment, trace.calls)
    ctx = Context(trace, alignment, scene, kernel)
    found: list[tuple[int, int, Fact]] = []
    for order, rule in enumerate(load()):
        for fact in rule(ctx):
            found.append((fact.time_ns, order, fact))
    found.sort(key=lambda x: (x[0], x[1]))
    return Explanation(scene, tuple(f for _, _, f in found))


__all__ = ["Explanation", "Fact", "explain"]
