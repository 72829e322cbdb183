"""The Lua post-dissector makes wirestack.* filterable; `wirestack wireshark`; `--open`."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import call
from conftest import wirestack
from test_pcapng import _trace

from wirestack.commands import wireshark
from wirestack.output.annotate import blocks, comment, quote
from wirestack.report import build_report

TSHARK = shutil.which("tshark")


def _fields(path: Path, filter_: str, *names: str) -> list[list[str]]:
    assert TSHARK
    cmd = [TSHARK, "-X", f"lua_script:{wireshark.lua_path()}", "-r", str(path), "-Y", filter_, "-T", "fields",
           "-E", "separator=|"]
    for n in names:
        cmd += ["-e", n]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [ln for ln in done.stderr.splitlines() if not ln.startswith("Running as user")] == []
    return [line.split("|") for line in done.stdout.splitlines()]


def test_comment_keeps_the_sentence_and_adds_key_value_pairs() -> None:
    c = call(7, "connect", 0, 5, errno=111, thread="Worker 1")
    text = comment(c, "sent", 2)
    assert text.startswith("sent by connect() → ECONNREFUSED (111) at socket.py:836 create_connection ← "
                           "smtplib.py:312 _get_socket")
    assert text.endswith('[wirestack call=7 op=connect role=sent namespace=errno error=ECONNREFUSED errno=111 '
                         'errname=ECONNREFUSED socket=2 thread="Worker 1" frame="socket.py:836 create_connection" '
                         'frame="smtplib.py:312 _get_socket" frame="smtplib.py:341 connect" frame="smtplib.py:255 '
                         '__init__" frame="<stdin>:1 <module>"]')
    assert quote('a "b" \\ c') == '"a \\"b\\" \\\\ c"' and quote("plain") == "plain" and quote("") == '""'


def test_lua_fields_filter_in_tshark(tmp_path: Path) -> None:
    path = tmp_path / "t.pcapng"
    path.write_bytes(b"".join(blocks(build_report(_trace()))))
    rows = _fields(path, "wirestack.errno == 111", "frame.number", "wirestack.call", "wirestack.op",
                   "wirestack.role", "wirestack.errname", "wirestack.thread", "wirestack.frame")
    assert [r[:6] for r in rows] == [["1", "1", "connect", "sent", "ECONNREFUSED", "MainThread"],
                                     ["2", "1", "connect", "received", "ECONNREFUSED", "MainThread"]]
    assert rows[0][6].split(",")[:2] == ["socket.py:836 create_connection", "smtplib.py:312 _get_socket"]
    assert _fields(path, 'wirestack.frame contains "smtplib" && wirestack.role == "received"', "frame.number") \
        == [["2"]]
    assert _fields(path, "wirestack.errno == 110", "frame.number") == []


def test_path_prints_the_shipped_dissector() -> None:
    done = wirestack("wireshark", "--path")
    assert done.returncode == 0
    path = Path(done.stdout.strip())
    assert path == wireshark.lua_path() and path.is_file() and "register_postdissector" in path.read_text()
    assert "one of the arguments --path --install is required" in wirestack("wireshark").stderr


def test_install_goes_to_the_personal_lua_plugin_folder(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "SUDO_UID": "", "SUDO_GID": ""}
    done = wirestack("wireshark", "--install", env=env)
    assert done.returncode == 0, done.stderr
    target = tmp_path / ".local" / "lib" / "wireshark" / "plugins" / "wirestack.lua"
    assert f"installed {target}" in done.stdout
    assert target.read_bytes() == wireshark.lua_path().read_bytes()
    if TSHARK:  # the folder is the one tshark reports as "Personal Lua Plugins" for that HOME
        folders = subprocess.run([TSHARK, "-G", "folders"], capture_output=True, text=True, env={**os.environ, **env})
        assert f"Personal Lua Plugins:\t{target.parent}" in folders.stdout


@pytest.fixture
def nobody_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A home folder of user 65534 (nobody) that it can reach (pytest's tmp_path is root's, mode 0700), and
    sudo's variables naming that user."""
    base = Path(tempfile.mkdtemp(prefix="wirestack-home-", dir="/tmp"))
    base.chmod(0o755)
    home = base / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    monkeypatch.setattr(wireshark, "_home", lambda user: home)
    monkeypatch.setenv("SUDO_UID", "65534")
    monkeypatch.setenv("SUDO_GID", "65534")
    yield home
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="installing as another user needs root")
def test_install_under_sudo_belongs_to_the_invoking_user(nobody_home: Path) -> None:
    target = wireshark.install()
    for path in (target, target.parent, nobody_home / ".local"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (65534, 65534), path
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


@pytest.mark.skipif(os.geteuid() != 0, reason="installing as another user needs root")
def test_install_under_sudo_follows_no_symlink_as_root(nobody_home: Path, tmp_path: Path) -> None:
    """The user's `.local` is a symlink to a folder only root may write (as tshark's global plugin folder): the
    install is done as the user, so it fails with one line and root's folder stays empty."""
    roots = tmp_path / "global-plugins"
    roots.mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    os.symlink(roots, nobody_home / ".local")
    with pytest.raises(wireshark.WiresharkError, match="cannot create .*Permission denied"):
        wireshark.install()
    assert list(roots.iterdir()) == []


def _fake_wireshark(folder: Path) -> Path:
    fake = folder / "wireshark"
    fake.write_text(f'#!/bin/sh\necho "$@" > {folder}/args\n')
    fake.chmod(0o755)
    return fake


def test_open_starts_wireshark_with_the_dissector(tmp_path: Path, workdir: Path) -> None:
    from pcaps import pcap, refused

    (workdir / "plain.pcap").write_bytes(pcap(refused()))
    _fake_wireshark(tmp_path)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "DISPLAY": ":0"}
    done = wirestack("read", "plain.pcap", "--open", env=env)
    assert done.returncode == 0, done.stderr
    assert "opening plain.pcap in Wireshark" in done.stderr
    for _ in range(50):
        if (tmp_path / "args").exists():
            break
        import time

        time.sleep(0.1)
    assert (tmp_path / "args").read_text().split() == ["-X", f"lua_script:{wireshark.lua_path()}", "-r",
                                                        "plain.pcap"]


def test_open_without_wireshark_says_so_before_anything_runs(workdir: Path) -> None:
    env = {"PATH": "/usr/bin:/bin"} if not shutil.which("wireshark", path="/usr/bin:/bin") else {"PATH": "/nowhere"}
    done = wirestack("smtp", "--open", env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--open: Wireshark is not installed (apt-get install wireshark)" in done.stderr
    assert "--open needs a capture file" in wirestack("smtp", "--open", "--no-pcap").stderr
