"""The lab catalogue: each scenario is data (a client to run, defaults, a one-line lesson), one module each."""

from __future__ import annotations

from dataclasses import dataclass

from ..tracer import Client


@dataclass(frozen=True)
class Scenario:
    name: str
    lesson: str
    default_host: str
    default_port: int
    template: str  # client code; {host!r} and {port!r} are filled in

    def client(self, host: str | None = None, port: int | None = None) -> Client:
        h = self.default_host if host is None else host
        p = self.default_port if port is None else port
        return Client(self.name, self.template.format(host=h, port=p), f"<wirestack {self.name}>")


def catalogue() -> dict[str, Scenario]:
    from . import smtp

    return {s.name: s for s in (smtp.SCENARIO,)}
