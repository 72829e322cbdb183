"""Errno names and the kernel header lines that define them."""

from __future__ import annotations

import errno as _errno
import re
from collections.abc import Iterable
from pathlib import Path

HEADERS = ("/usr/include/asm-generic/errno-base.h", "/usr/include/asm-generic/errno.h")
_DEFINE = re.compile(r"^#define\s+(E[A-Z0-9]+)\s+(\d+)\b")


def name(number: int) -> str:
    """ECONNREFUSED for 111; 'errno 999' for numbers this system does not name."""
    return _errno.errorcode.get(number, f"errno {number}")


def parse_defines(text: str) -> dict[int, str]:
    """errno number -> its `#define` line, from the text of an errno header. Pure."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        m = _DEFINE.match(line)
        if m:
            out.setdefault(int(m.group(2)), " ".join(line.split()))
    return out


def header_defines(numbers: Iterable[int], headers: Iterable[str] = HEADERS) -> dict[int, str]:
    """For each errno in `numbers`: 'path: #define ... line' from the installed kernel headers, where present."""
    wanted = {n for n in numbers if n > 0}
    found: dict[int, str] = {}
    for header in headers:
        try:
            text = Path(header).read_text(errors="replace")
        except OSError:
            continue
        for number, line in parse_defines(text).items():
            if number in wanted and number not in found:
                found[number] = f"{header}: {line}"
    return found
