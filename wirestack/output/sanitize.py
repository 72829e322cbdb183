"""One sanitiser for every string that comes from data (a capture file, the traced program's records, a payload)
before it is rendered anywhere: terminal, SVG, HTML, JSON-for-humans, pcapng comment.

- C0 controls (ESC, CR, BS, ...), DEL, C1 controls (0x80-0x9f: CSI, OSC, NEL), the bidirectional overrides and
  isolates (which reorder what a terminal shows) and the Unicode line and paragraph separators become visible
  escapes (`\\x1b`, `\\u202e`); so do lone surrogates and the characters XML 1.0 forbids. Tabs and newlines too,
  in one-line fields.
- rich markup is never interpreted in data: renderers pass data as `rich.text.Text`, never as markup strings.
"""

from __future__ import annotations

import re

_BAD = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff\ufffe\uffff\ud800-\udfff]")
_BAD_MULTILINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff\ufffe"
                            "\uffff\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    n = ord(m.group(0))
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def clean(text: object, limit: int = 4000) -> str:
    """One line of data made safe to show: every control and reordering character visible as an escape."""
    s = text if isinstance(text, str) else str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return _BAD.sub(_escape, s) if _BAD.search(s) else s


def clean_lines(text: str, limit: int = 100_000) -> str:
    """Several lines of data (newlines and tabs kept), otherwise as `clean`."""
    s = text[:limit]
    return _BAD_MULTILINE.sub(_escape, s)
