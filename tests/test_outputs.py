"""Outputs go only to regular files this call creates (output.files): a device node, a FIFO, a socket or a
symbolic link in the way is refused with one line and left exactly as it was (mode, owner, contents), also
under sudo with --force; nothing blocks on a FIFO. Checked with os.stat, not with wirestack's word."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from conftest import ROOT, wirestack

CAPTURE = str(ROOT / "captures" / "smtp.pcapng")
SUDO = {"SUDO_UID": "65534", "SUDO_GID": "65534"}


def _state(path: Path) -> tuple[int, int, int, int]:
    st = os.lstat(path)
    return st.st_mode, st.st_uid, st.st_gid, st.st_rdev


def _things(folder: Path) -> dict[str, Path]:
    made = {"fifo": folder / "fifo", "link": folder / "link", "socket": folder / "sock"}
    os.mkfifo(made["fifo"], 0o644)
    (folder / "target").write_text("root's own file\n")
    os.symlink(folder / "target", made["link"])
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(made["socket"]))
    s.close()
    if os.geteuid() == 0:  # a replica of /dev/null (1, 3) and of /dev/full (1, 7)
        for name, minor in (("null", 3), ("full", 7)):
            made[name] = folder / name
            os.mknod(made[name], 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    return made


@pytest.mark.parametrize("option", ["--json", "--svg", "--html"])
@pytest.mark.parametrize("env", [{}, SUDO], ids=["as-is", "sudo"])
def test_non_regular_outputs_are_refused_and_left_alone(tmp_path: Path, option: str, env: dict[str, str]) -> None:
    for name, path in _things(tmp_path).items():
        before = _state(path)
        done = wirestack("read", CAPTURE, option, str(path), "--force", env=env, timeout=30)
        lines = done.stderr.splitlines()
        assert done.returncode == 2 and len(lines) == 1 and "writes only regular files" in lines[0], (name, done.stderr)
        assert _state(path) == before, name
    assert (tmp_path / "target").read_text() == "root's own file\n"


@pytest.mark.capture
def test_a_capture_over_a_device_is_refused_before_the_run(tmp_path: Path) -> None:
    """`wirestack smtp -w` over a device or FIFO: refused at once (nothing is run), the node unchanged."""
    things = _things(tmp_path)
    for name in ("fifo", "null"):
        if name not in things:
            continue
        before = _state(things[name])
        done = wirestack("smtp", "-w", str(things[name]), "--force", env=SUDO, cwd=tmp_path, timeout=60)
        assert done.returncode == 2 and "writes only regular files" in done.stderr, done.stderr
        assert "Traceback" not in done.stdout + done.stderr and _state(things[name]) == before


def test_an_existing_file_is_kept_without_force(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    out.write_text("mine\n")
    done = wirestack("read", CAPTURE, "--json", str(out), timeout=30)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert out.read_text() == "mine\n"


def test_written_under_sudo_the_file_is_the_users(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    out = tmp_path / "report.json"
    done = wirestack("read", CAPTURE, "--json", str(out), env=SUDO, timeout=30)
    assert done.returncode == 0, done.stderr
    st = out.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o600)
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".wirestack-tmp")]  # no temporary left
