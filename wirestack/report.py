"""The report: a trace with its pairing, the kernel's joins and the facts they show. Pure.

    build_report(trace) -> Report       pairing (core.pairing), kernel joins (core.kernel), facts (explain)

A Report is what every renderer reads (`wirestack.output`): text, JSON, the annotated pcapng, SVG and HTML.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from .core.chains import linked
from .core.kernel import KernelView, link
from .core.pairing import Alignment, align
from .core.paths import own_link
from .explain import Explanation, explain
from .explain.facts import Fact
from .model import Call, KernelEvent, Packet, Trace


@dataclass(frozen=True)
class Linked:
    """A trace with its pairing and its kernel layer joined: all that the pcapng needs (no facts yet)."""

    trace: Trace
    alignment: Alignment
    kernel: KernelView

    @cached_property
    def _events(self) -> dict[int, KernelEvent]:
        return {e.id: e for e in self.trace.kernel}

    def event(self, kid: int) -> KernelEvent:
        return self._events[kid]


@dataclass(frozen=True)
class Report(Linked):
    explanation: Explanation

    @property
    def facts(self) -> tuple[Fact, ...]:
        return self.explanation.facts

    @cached_property
    def origin(self) -> Call | None:
        """The socket call that raised the escaped exception (that very object, or one chained to it)."""
        by_id = {c.id: c for c in self.trace.calls}
        for e in linked(self.trace.exception):
            if e.call is not None and e.call in by_id:
                return by_id[e.call]
        return None

    @cached_property
    def _packets(self) -> dict[int, Packet]:
        return {p.id: p for p in self.trace.packets}

    def packet(self, pid: int) -> Packet:
        return self._packets[pid]


def build_report(trace: Trace, alignment: Alignment | None = None) -> Report:
    """`alignment`: the trace's own, when the caller has it already (`record.assemble`)."""
    return explained(link_trace(trace, alignment))


def link_trace(trace: Trace, alignment: Alignment | None = None) -> Linked:
    """The pairing (unless given) and the kernel layer's join: the first half of `build_report`."""
    own = own_link(trace)  # a capture on several links: the program's own (see core.paths)
    alignment = alignment if alignment is not None else align(trace.calls, own)
    kernel = link(trace.kernel, trace.calls, own, alignment) if trace.kernel else KernelView()
    return Linked(trace, alignment, kernel)


def explained(base: Linked) -> Report:
    """The facts: the second half of `build_report`."""
    return Report(base.trace, base.alignment, base.kernel, explain(base.trace, base.alignment, base.kernel))
