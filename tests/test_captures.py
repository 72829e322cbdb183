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


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_tcp_options_as_tshark_reads_them(path: Path) -> None:
    """Every TCP packet's options in the JSON (`tcp_options`) are those tshark dissects in the same file."""
    tshark = shutil.which("tshark")
    assert tshark, "tshark is required (scripts/bootstrap installs it)"
    fields = ["frame.number", "tcp.options.mss_val", "tcp.options.wscale.shift", "tcp.options.sack_perm",
              "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr", "tcp.options.sack_le",
              "tcp.options.sack_re"]
    done = subprocess.run([tshark, "-o", "tcp.relative_sequence_numbers:FALSE", "-r", str(path), "-Y",
                           "tcp and not icmp and not icmpv6",  # not the headers an ICMP error quotes
                           "-T", "fields", "-E", "separator=|", *[x for f in fields for x in ("-e", f)]],
                          capture_output=True, text=True, check=True)
    report = json.loads(wirestack("read", "--json", "-", str(path)).stdout)
    ours = {p["id"]: p["tcp_options"] for p in report["packets"] if p["proto"] == "TCP"}
    rows = [line.split("|") for line in done.stdout.splitlines() if line]
    assert len(rows) == len(ours), (len(rows), len(ours))
    with_options = 0
    for number, mss, wscale, sack_perm, tsval, tsecr, left, right in rows:
        o = ours[int(number)]
        assert o is not None and not o["malformed"], number
        assert o["mss"] == (int(mss) if mss else None), number
        assert o["wscale"] == (int(wscale) if wscale else None), number
        assert o["sack_permitted"] == bool(sack_perm), number
        assert o["timestamps"] == ([int(tsval), int(tsecr)] if tsval else None), number
        blocks = list(zip(map(int, left.split(",")), map(int, right.split(",")), strict=True)) if left else []
        assert [tuple(b) for b in o["sack"]] == blocks, number
        with_options += bool(mss or wscale or sack_perm or tsval or left)
    if any("S" in p["flags"] for p in report["packets"] if p["proto"] == "TCP"):
        assert with_options, "a handshake without options: Linux always sends MSS on a SYN"
