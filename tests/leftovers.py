"""Finding peer processes of this checkout that outlived the test that started them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parent.parent)
MARK = "from wirestack.labs.peers import main"


def peer_pids() -> set[int]:
    """Processes running a wirestack peer from this checkout (the other checkouts' peers are not ours)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if MARK in cmdline and ROOT in cmdline:
            found.add(int(entry))
    return found


@pytest.fixture(autouse=True)
def no_peer_left_behind() -> Iterator[None]:
    before = peer_pids()
    yield
    deadline = time.monotonic() + 2.0
    while (left := peer_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"peer processes left running: {sorted(left)}"
