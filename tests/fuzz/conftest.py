"""The fuzz marker and the fixtures the fuzz tests share (the settings profile is in harness.py).

    pytest tests/fuzz                                   the bounded run (CI): a few examples a test
    WIRESTACK_FUZZ_EXAMPLES=2000 pytest tests/fuzz -m fuzz   a longer hunt
    pytest -m "not fuzz"                                everything else (the regressions still run)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: the fuzzing harness (tests/fuzz): bounded by default, "
                                       "WIRESTACK_FUZZ_EXAMPLES=N for more")


@pytest.fixture(scope="session")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture
def without_tshark(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The real "tshark is not installed" path (no tshark on PATH): a read costs milliseconds, not a tshark
    run. The tshark tests (payloads, subprocess) run it for real."""
    monkeypatch.setenv("PATH", "/nonexistent-wirestack-fuzz")
    yield
