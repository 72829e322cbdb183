"""Inputs that once broke `wirestack read` (found by the fuzzer, or by hand), replayed in every output kind:
each must now keep every property of harness.check. Not marked `fuzz`: they run with `-m "not fuzz"` too.

To add one: copy the saved input from tests/fuzz/found/ (the newest is the shrunk one) into
tests/fuzz/regressions/, named for what it broke.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import KINDS, REGRESSIONS, check_all

INPUTS = sorted(p for p in REGRESSIONS.iterdir() if p.suffix in (".pcap", ".pcapng")) if REGRESSIONS.is_dir() else []


def test_there_are_regressions() -> None:
    assert INPUTS, "tests/fuzz/regressions/ holds no input"


@pytest.mark.parametrize("path", INPUTS, ids=[p.name for p in INPUTS])
def test_regression(path: Path, scratch: Path, without_tshark: None) -> None:
    check_all(path.read_bytes(), scratch / path.stem, KINDS, suffix=path.suffix)
