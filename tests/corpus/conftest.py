"""The corpus's table: with WIRESTACK_CORPUS_TABLE=FILE, a run of tests/corpus writes one markdown row per case:
the case, the wire truth (its `truth` over the tshark witness of the pcapng wirestack wrote), the kinds of fact
wirestack stated, and the verdict (each corpus test of that case passed, or which failed)."""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

OUTCOMES: dict[str, dict[str, str]] = defaultdict(dict)  # case -> test function -> outcome
RUNS: dict[str, tuple[Any, dict[str, Any], Path]] = {}  # filled by test_corpus.runs


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "test_corpus.py::" not in report.nodeid or "[" not in report.nodeid:
        return
    if report.when == "call" or report.outcome != "passed":
        test, _, case = report.nodeid.split("::", 1)[1].partition("[")
        OUTCOMES[case.rstrip("]")][test] = report.outcome


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")[:400]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("WIRESTACK_CORPUS_TABLE")  # "{python}" in it: the interpreter's version
    if not target or not RUNS:
        return
    target = target.replace("{python}", f"{sys.version_info[0]}.{sys.version_info[1]}")
    rows = ["| case | library | classes | wire truth (tshark) | wirestack's facts | verdict |",
            "|---|---|---|---|---|---|"]
    for name, (run, data, pcap) in sorted(RUNS.items()):
        case = run.case
        try:
            truth = case.truth(run.witness(str(pcap))) if pcap.exists() else "no capture"
        except Exception as exc:  # noqa: BLE001  (a table row, not a test)
            truth = f"witness failed: {exc}"
        kinds = sorted({f["kind"] for f in data.get("facts", [])})
        tests = OUTCOMES.get(name, {})
        failed = sorted(t for t, o in tests.items() if o != "passed")
        verdict = f"{len(tests) - len(failed)}/{len(tests)} pass" + (f"; failed: {', '.join(failed)}" if failed else "")
        rows.append(f"| {name} | {_cell(case.library)} | {_cell(', '.join(case.classes))} | {_cell(truth)} | "
                    f"{_cell(', '.join(kinds))} | {verdict} |")
    Path(target).write_text("\n".join(rows) + "\n")
