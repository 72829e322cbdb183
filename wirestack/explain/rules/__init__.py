"""The registry of rules: each rule reads a `Context` and yields facts. A new lesson is one rule here.

Rules are grouped by topic, one module each (tcp, udp, names, tls, app, calls, exceptions, kernel, run,
network); `ALL` lists every registered rule in the order their facts are told.
"""

from __future__ import annotations

from ..context import Rule

ALL: list[Rule] = []


def rule(fn: Rule) -> Rule:
    ALL.append(fn)
    return fn


def load() -> list[Rule]:
    """Every rule (importing the topic modules registers them)."""
    from . import app, calls, exceptions, kernel, names, network, run, tcp, tls, udp  # noqa: F401

    return ALL
