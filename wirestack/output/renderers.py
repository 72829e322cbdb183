"""The renderers, one class per format, chosen by name or by a file's extension.

    text     TextRenderer      (output.text)      str
    json     JsonRenderer      (output.json)      str
    pcapng   PcapngRenderer    (output.annotate)  bytes
    svg      SvgRenderer       (output.picture)   str
    html     HtmlRenderer      (output.picture)   str

Each has `name`, `extensions` and `render(report)`; a new format is one class and one line here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..report import Report


class Renderer(Protocol):
    name: str
    extensions: tuple[str, ...]

    def render(self, report: Report) -> str | bytes: ...


def renderers() -> dict[str, type[Renderer]]:
    from .annotate import PcapngRenderer
    from .json import JsonRenderer
    from .picture import HtmlRenderer, SvgRenderer
    from .text import TextRenderer

    kinds: list[type[Renderer]] = [TextRenderer, JsonRenderer, PcapngRenderer, SvgRenderer, HtmlRenderer]
    return {r.name: r for r in kinds}


def by_name(name: str) -> Renderer:
    return renderers()[name]()


def for_path(path: str | Path) -> Renderer | None:
    suffix = Path(path).suffix.lower()
    for r in renderers().values():
        if suffix in r.extensions:
            return r()
    return None


def render_bytes(renderer: Renderer, report: Report) -> bytes:
    out = renderer.render(report)
    return out if isinstance(out, bytes) else out.encode("utf-8", "replace")
