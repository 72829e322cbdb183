"""Scenario-level findings (retransmit spacing, resets, EOF, TLS, ICMP, reply codes). Pure, like explanation.

`explanation.explain` appends what `lessons()` returns; each lesson is computed from the capture and the calls.
"""

from __future__ import annotations

from .explanation import Finding
from .model import Trace
from .pairing import Alignment


def lessons(trace: Trace, alignment: Alignment) -> list[Finding]:
    return []
