"""The probe's optional C short path (wirestack/record/_fastpath.c) records exactly what the pure Python probe records.

CI builds it (scripts/bootstrap installs a compiler and Python's headers), so under CI=true it must be there;
elsewhere, without it, the probe is pure Python and these tests check that much."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import IN_CI, pythonpath, wirestack

TARGET = Path(__file__).parent / "targets" / "data_calls.py"
BUILT = importlib.util.find_spec("wirestack.record._fastpath") is not None


def calls(pure: bool) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "WIRESTACK_PURE_PROBE"}
    if pure:
        env["WIRESTACK_PURE_PROBE"] = "1"
    done = subprocess.run([sys.executable, str(TARGET)], capture_output=True, text=True, timeout=30,
                          env={**env, "PYTHONPATH": pythonpath()})
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_built_where_ci_runs() -> None:
    assert BUILT or not IN_CI, "CI must build wirestack/record/_fastpath.c (bootstrap installs gcc, python3-dev)"


def test_the_c_twin_builds_data_items_in_the_layout_of_items() -> None:
    from wirestack.record import items

    if BUILT:
        from wirestack.record import _fastpath

        assert _fastpath.DATA_FIELDS == items.DATA
    assert "DATA_FIELDS" in Path(items.__file__).with_name("_fastpath.c").read_text()


def test_the_c_short_path_records_what_python_records() -> None:
    c, python = calls(pure=False), calls(pure=True)
    assert c["fast"] is BUILT and python["fast"] is False
    kinds = [item[0] for item in python["items"]]
    ops = {item[2] for item in python["items"] if item[0] == "data"}
    assert kinds.count("data") == 19 and ops == {"send", "sendall", "sendto", "recv", "recvfrom"}
    assert {item[3] for item in python["items"] if item[0] == "data"} == {"MainThread", "sender"}
    assert len({item[4] for item in python["items"] if item[0] == "data"}) == 2  # each thread's own tid
    assert c["items"] == python["items"]
    # a call that raised: the same exception, marked with its call, and no wrapper frame in between
    assert c["exception"] == python["exception"] == {"type": "ConnectionRefusedError", "errno": 111,
                                                      "marked": True, "traceback": ["exchange"]}


@pytest.mark.capture
def test_a_traced_program_gets_the_c_short_path_on_the_same_interpreter(tmp_path: Path) -> None:
    code = "import socket; print(type(socket.socket.sendto).__name__, socket.socket.sendto.__name__)"
    done = wirestack("run", "--no-pcap", "--no-kernel", "-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    fast = BUILT and not os.environ.get("WIRESTACK_PURE_PROBE")  # (the whole suite may run on pure Python)
    assert done.stdout.split() == ["Hot" if fast else "function", "sendto"]
    shim = "import socket; print(type(socket.socket.connect).__name__)"
    done = wirestack("run", "--no-pcap", "--no-kernel", "-c", shim, cwd=tmp_path)
    assert done.stdout.split() == ["Shim" if fast else "function"]
    done = wirestack("run", "--no-pcap", "--no-kernel", "-c", code, cwd=tmp_path, env={"WIRESTACK_PURE_PROBE": "1"})
    assert done.stdout.split() == ["function", "sendto"]
