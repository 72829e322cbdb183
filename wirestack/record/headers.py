"""Reading the system's headers for the `#define` of each error a trace names (the IO half of `core.errnos`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..core.errnos import HEADERS, key, parse_defines


def defines(faults: Iterable[tuple[str, int]], headers: dict[str, tuple[str, ...]] = HEADERS) -> dict[str, str]:
    """For each (namespace, code): 'path: #define ... line' from the installed headers, where present."""
    wanted: dict[str, set[int]] = {}
    for namespace, code in faults:
        if namespace in headers:
            wanted.setdefault(namespace, set()).add(code)
    found: dict[str, str] = {}
    for namespace, codes in wanted.items():
        for header in headers[namespace]:
            try:
                text = Path(header).read_text(errors="replace")
            except OSError:
                continue
            for number, line in parse_defines(text, namespace).items():
                k = key(namespace, number)
                if number in codes and k not in found:
                    found[k] = f"{header}: {line}"
    return found
