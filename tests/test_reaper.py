"""No process of the traced program outlives a stopped run (record.reaper): a child in a session of its own, and
its child after a double fork, end with the program on --timeout and on SIGTERM to wirestack; a program that
ends by itself leaves its processes running, as python does, and the report says so. Also under sudo (the
program runs as user 65534 while wirestack is root)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import pythonpath

pytestmark = pytest.mark.capture

# the program: a setsid child that double-forks a grandchild; each writes its pid, then all sleep
PROGRAM = """
import os, sys, time
folder = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open(os.path.join(folder, "grandchild"), "w").write(str(os.getpid()))
        time.sleep(60)
        os._exit(0)
    open(os.path.join(folder, "child"), "w").write(str(os.getpid()))
    time.sleep(60)
    os._exit(0)
while len(os.listdir(folder)) < 2:
    time.sleep(0.01)
print("forked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def all_ended(processes: list[int], within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while any(map(alive, processes)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(map(alive, processes))


def pids(folder: Path) -> list[int]:
    return [int((folder / name).read_text()) for name in ("child", "grandchild")]


@pytest.fixture
def tmp() -> Iterator[Path]:
    """A folder user 65534 can reach (pytest's own are root's, mode 0700)."""
    base = Path(tempfile.mkdtemp(prefix="wirestack-reaper-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def start(tmp: Path, sleep: float, *options: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str],
                                                                                               Path]:
    folder = tmp / "pids"
    folder.mkdir()
    folder.chmod(0o777)
    script = tmp / "forker.py"
    script.write_text(PROGRAM)
    script.chmod(0o644)
    # output to files: the program's processes inherit them, and a pipe would stay open as long as they live
    with open(tmp / "out", "w") as out, open(tmp / "err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "wirestack", "run", "--no-pcap", *options, str(script),
                                 str(folder), str(sleep)], cwd=tmp, stdout=out, stderr=err, text=True,
                                stdin=subprocess.DEVNULL, env={**os.environ, **(env or {}), "PYTHONPATH": pythonpath()})
    return proc, folder


def finish(proc: subprocess.Popen[str], folder: Path) -> str:
    try:
        proc.wait(timeout=60)
    finally:
        proc.kill()
    return (folder.parent / "err").read_text()


@pytest.mark.parametrize("sudo", [False, True], ids=["root", "sudo"])
def test_timeout_ends_every_process_of_the_program(tmp: Path, sudo: bool) -> None:
    env = {"SUDO_UID": "65534", "SUDO_GID": "65534"} if sudo else {"SUDO_UID": "", "SUDO_GID": ""}
    # under sudo the program runs as the user: an interpreter that user can run (pyenv's live under /root)
    options = ("--python", "/usr/bin/python3") if sudo else ()
    proc, folder = start(tmp, 30, "--timeout", "3", *options, env=env)
    err = finish(proc, folder)
    assert all_ended(pids(folder)), err
    assert "2 processes the program started" in " ".join(err.split()) and "ended them with it" in err
    if sudo:
        assert (tmp / "pids" / "child").stat().st_uid == 65534  # the program really ran as the user


def test_sigterm_to_wirestack_ends_every_process_of_the_program(tmp: Path) -> None:
    proc, folder = start(tmp, 30)
    deadline = time.monotonic() + 20
    while len(list(folder.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    err = finish(proc, folder)
    assert all_ended(pids(folder)), err


def test_a_program_that_ends_by_itself_leaves_its_processes_as_python_does(tmp: Path) -> None:
    proc, folder = start(tmp, 0.2)
    err = finish(proc, folder)
    child, grandchild = pids(folder)
    try:
        assert proc.returncode == 0, err
        assert alive(child) and alive(grandchild)
        assert "left running, as under python" in " ".join(err.split())
    finally:
        for pid in (child, grandchild):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_sigkill_of_wirestack_ends_the_program(tmp: Path) -> None:
    """Nothing is left to end anything when wirestack is killed with SIGKILL: the program it started dies with
    it all the same (PR_SET_PDEATHSIG, set by the probe in that one process). Its own children outlive it, as
    under python."""
    proc, folder = start(tmp, 30)
    deadline = time.monotonic() + 20
    while len(list(folder.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    program = next((int(p) for p in os.listdir("/proc") if p.isdigit() and _is_program(int(p), tmp)), None)
    assert program is not None, (tmp / "err").read_text()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    try:
        assert all_ended([program]), "the program outlived wirestack's SIGKILL"
    finally:
        for pid in pids(folder):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _is_program(pid: int, tmp: Path) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(tmp / "forker.py").encode() in argv and b"-m" not in argv and pid not in _children_of_forker(tmp)


def _children_of_forker(tmp: Path) -> set[int]:
    folder = tmp / "pids"
    return {int((folder / n).read_text()) for n in ("child", "grandchild") if (folder / n).exists()}
