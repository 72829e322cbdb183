"""No sudo: an unprivileged user gets the same report through a private user + network namespace."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, errno, run_json

pytestmark = pytest.mark.capture
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"
TARGETS = Path(__file__).parent / "targets"


@pytest.fixture(scope="module")
def nobody() -> Iterator[tuple[list[str], Path]]:
    """A folder user nobody owns, holding a world-readable copy of this checkout's wirestack and the pure-Python
    packages it needs, and the command that runs `python -m wirestack` as nobody with the system interpreter
    (root's pyenv interpreter lives under /root, which nobody cannot enter)."""
    setpriv = shutil.which("setpriv")
    assert setpriv and os.access(SYSTEM_PYTHON, os.X_OK), "setpriv and /usr/bin/python3 are needed"
    folder = Path(tempfile.mkdtemp(prefix="wirestack-netns-", dir="/tmp"))
    lib = folder / "lib"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "wirestack", lib / "wirestack", ignore=ignore)
    for name in ("rich", "pygments", "markdown_it", "mdurl", "aiosmtpd", "public", "attr", "attrs"):
        module = importlib.import_module(name)
        assert module.__file__
        shutil.copytree(Path(module.__file__).parent, lib / name, ignore=ignore)
    shutil.copy(TARGETS / "udp_refused.py", folder / "udp_refused.py")
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    for path in [folder, *folder.iterdir()]:
        os.chown(path, NOBODY, NOBODY)
    cmd = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", "env", "-i",
           f"PYTHONPATH={lib}", "LANG=C.UTF-8", "PATH=/usr/bin:/bin", SYSTEM_PYTHON, "-m", "wirestack"]
    try:
        yield cmd, folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def as_nobody(nobody: tuple[list[str], Path], *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    cmd, folder = nobody
    report = folder / "report.json"
    report.unlink(missing_ok=True)
    command, *rest = args  # options go before a program's own arguments
    done = subprocess.run([*cmd, command, "--json", "report.json", "--force", *rest], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    return done, json.loads(report.read_text()) if report.exists() else {}


def shape(data: dict[str, Any]) -> dict[str, Any]:
    """What must agree between a root run and a namespaced one: the exception, its frames and their packets
    (by flags), and each failed call with its packets."""
    flags = {p["id"]: (p["proto"], p["flags"], (p["icmp"] or {}).get("type")) for p in data["packets"]}
    exc = data["exception"]
    return {
        "exception": exc and (exc["type"], errno(exc),
                              [(Path(f["file"]).name, f["function"], [flags[i] for i in f["packets"]])
                               for f in exc["frames"]]),
        "failed": [(c["op"], errno(c), [flags[i] for i in c["packets"]]) for c in data["calls"]
                   if errno(c) not in (None, 0, 11, 115)],
        # data, SYN, RST and non-TCP packets: the bare ACKs and the order of the two FINs vary from run to run
        "packets": sorted(flags[p["id"]] for p in data["packets"]
                          if p["payload"] or p["proto"] != "TCP" or "S" in p["flags"] or "R" in p["flags"]),
    }


def test_smtp_without_sudo_matches_the_root_run(nobody: tuple[list[str], Path], workdir: Path) -> None:
    done, data = as_nobody(nobody, "smtp", "-w", "refused.pcapng")
    assert done.returncode == 0, done.stderr
    root = run_json("smtp", "--no-pcap")
    assert shape(data) == shape(root)
    assert data["kernel_off"].startswith("kernel layer off: tracepoints need real root")
    pcap = nobody[1] / "refused.pcapng"
    st = pcap.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (NOBODY, NOBODY, 0o600)  # the user's file, as usual


def test_udp_client_run_without_sudo(nobody: tuple[list[str], Path], workdir: Path) -> None:
    port = "9"  # nothing listens on the discard port inside a fresh namespace: the ICMP is certain there
    done, data = as_nobody(nobody, "run", "--no-pcap", "udp_refused.py", port)
    assert done.returncode == 1, done.stderr
    root_report = workdir / "root.json"
    ran = subprocess.run([sys.executable, "-m", "wirestack", "run", "--netns", "--no-pcap", "--json",
                          str(root_report), str(TARGETS / "udp_refused.py"), port], capture_output=True, text=True,
                         timeout=120)
    assert root_report.exists(), ran.stderr
    assert shape(data) == shape(json.loads(root_report.read_text()))
    assert [p["proto"] for p in data["packets"]] == ["UDP", "ICMP"]


def test_scenario_with_a_peer_without_sudo(nobody: tuple[list[str], Path], workdir: Path) -> None:
    done, data = as_nobody(nobody, "smtp-ok", "--no-pcap")
    assert done.returncode == 0, done.stderr
    root = run_json("smtp-ok", "--no-pcap")
    assert shape(data) == shape(root)
    assert data["exception"] is None and any(p["payload"] for p in data["packets"])


def test_interrupted_namespaced_run_leaves_nothing(nobody: tuple[list[str], Path]) -> None:
    cmd, folder = nobody
    script = folder / "sleeper.py"
    script.write_text("import socket, time\ns = socket.socket()\ns.connect_ex(('127.0.0.1', 9))\ntime.sleep(60)\n")
    script.chmod(0o644)
    proc = subprocess.Popen([*cmd, "run", "-w", "cut.pcapng", "--force", "sleeper.py"], cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, text=True).stdout.split()
    assert left == [], left  # no wirestack, no traced program, no namespace holder survives
    assert (folder / "cut.pcapng").stat().st_size > 0
