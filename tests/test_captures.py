"""The example captures shipped in captures/ (made by scripts/refresh-captures) read back whole, without root."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, wirestack

CAPTURES = ROOT / "captures"
SHIPPED = sorted(p for p in CAPTURES.glob("*.pcapng") if not re.search(r"-\d{8}-\d{6}\.pcapng$", p.name))


def test_every_scenario_has_a_shipped_capture() -> None:
    names = [line.split()[0] for line in wirestack("list").stdout.splitlines() if line.startswith("  ")]
    missing = [n for n in names if not (CAPTURES / f"{n}.pcapng").is_file()]
    assert not missing, f"no example capture for {missing}: run `sudo scripts/refresh-captures {' '.join(missing)}`"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_capture_reads_back(path: Path) -> None:
    done = wirestack("read", str(path.relative_to(ROOT)), "--json", "-", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data.get("kind") != "wire", "the file lost its wirestack trace"
    assert data["title"] == path.stem and data["capture"]["file"] == f"captures/{path.name}"
    assert data["calls"] and data["capture"]["packets"] == len(data["packets"])
    assert not [n for n in data["notes"] if "paired again" in n or "cut short" in n]
    capinfos = shutil.which("capinfos")
    if capinfos:
        out = subprocess.run([capinfos, "-c", "-M", str(path)], capture_output=True, text=True).stdout
        assert f"Number of packets:   {len(data['packets'])}" in out
    text = wirestack("read", str(path), "--no-color")
    assert text.returncode == 0 and text.stdout.startswith(f"wirestack {path.stem}: ")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_capture_opens_cleanly_and_its_errnos_filter(path: Path) -> None:
    tshark = shutil.which("tshark")
    assert tshark, "tshark is required (scripts/bootstrap installs it)"
    plain = subprocess.run([tshark, "-r", str(path)], capture_output=True, text=True)
    assert plain.returncode == 0
    assert [ln for ln in plain.stderr.splitlines() if not ln.startswith("Running as user")] == []
    data = json.loads(wirestack("read", str(path), "--json", "-").stdout)
    lua = wirestack("wireshark", "--path").stdout.strip()
    for c in data["calls"]:
        f = c["fault"]
        if f is None or not c["packets"]:
            continue
        if f["namespace"] == "errno":
            done = subprocess.run([tshark, "-X", f"lua_script:{lua}", "-r", str(path), "-Y",
                                   f"wirestack.errno == {f['code']} && wirestack.call == {c['id']}", "-T", "fields",
                                   "-e", "frame.number"], capture_output=True, text=True)
            assert [int(n) for n in done.stdout.split()] == c["packets"], done.stderr
        else:  # an OpenSSL error, a resolver error, a timeout: never an errno in the file
            done = subprocess.run([tshark, "-X", f"lua_script:{lua}", "-r", str(path), "-Y",
                                   f"wirestack.call == {c['id']} && wirestack.errno", "-T", "fields",
                                   "-e", "frame.number"], capture_output=True, text=True)
            assert done.stdout.split() == [], done.stderr
