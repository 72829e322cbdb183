"""The documents that describe formats stay what the code does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from wirestack.explain import facts
from wirestack.output import json as json_report

ROOT = Path(__file__).resolve().parent.parent


def test_the_fact_kinds_document_is_generated_from_the_code() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "facts-doc"), "--check"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    text = (ROOT / "docs" / "facts.md").read_text()
    kinds = {cls.kind for cls in vars(facts).values() if isinstance(cls, type) and issubclass(cls, facts.Fact)
             and cls.kind}
    assert all(f"## `{k}`" in text for k in kinds)


def test_the_json_document_names_the_schema_and_every_top_level_key() -> None:
    from builders import call, tcp, trace

    from wirestack.report import build_report

    client, server = ("127.0.0.1", 40000), ("127.0.0.1", 25)
    report = build_report(trace([call(1, "connect", 0, 50, remote=server, local=client, errno=111)],
                                [tcp(1, 10, client, server, "S"), tcp(2, 20, server, client, "RA")]))
    data = json_report.to_json(report)
    text = (ROOT / "docs" / "json.md").read_text()
    assert f"schema {json_report.SCHEMA}" in text
    assert all(f'"{key}"' in text for key in data)
    assert all(key in text for key in data["packets"][0]) and all(key in text for key in data["calls"][0])
