"""A traced program is untrusted (docs/trust.md): the names it gives its code must not make root's wirestack,
or the probe inside the program, read what python would not. Checked on the bytes wirestack wrote."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import pythonpath

pytestmark = pytest.mark.capture
SECRET = b"TOPSECRET-wirestack-canary"


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder user 65534 can use (pytest's own are root's, mode 0700)."""
    base = Path(tempfile.mkdtemp(prefix="wirestack-hostile-", dir="/tmp"))
    base.chmod(0o777)
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)


def _program(filename: str, port: int, catch: bool) -> str:
    body = f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\n"
    run = f"exec(compile({body!r}, {filename!r}, 'exec'))"
    if catch:  # python's own traceback would read the file too: catch, so only the probe could
        run = f"try:\n    {run}\nexcept ConnectionRefusedError:\n    print('caught')"
    return run + "\n"


def test_a_frame_named_after_a_root_only_file_gets_no_line_of_it(shared: Path) -> None:
    """Under sudo the program runs as user 65534 and names its code after a file only root may read: not one
    byte of that file reaches the report, the JSON or the pcapng (root's wirestack reads no source line)."""
    secret = shared / "secret.txt"
    secret.write_bytes((SECRET + b"\n") * 5)
    secret.chmod(0o600)
    script = shared / "forger.py"
    script.write_text(_program(str(secret), closed_port(), catch=False))
    script.chmod(0o644)
    done = subprocess.run([sys.executable, "-m", "wirestack", "run", "--python", "/usr/bin/python3", "--json",
                           str(shared / "r.json"), "-w", str(shared / "r.pcapng"), str(script)], cwd=shared,
                          capture_output=True, timeout=90, stdin=subprocess.DEVNULL,
                          env={**os.environ, "SUDO_UID": "65534", "SUDO_GID": "65534", "PYTHONPATH": pythonpath()})
    assert done.returncode == 1, done.stderr[-2000:]
    assert b"ConnectionRefusedError" in done.stderr
    for blob in (done.stdout, done.stderr, (shared / "r.json").read_bytes(), (shared / "r.pcapng").read_bytes()):
        assert SECRET not in blob
    assert str(secret).encode() in (shared / "r.json").read_bytes()  # the frame itself is there, by its name


def test_a_frame_named_after_a_device_does_not_hang_the_program(tmp_path: Path) -> None:
    """Code compiled under the name /dev/zero makes a socket call and catches its error: under python it ends at
    once (nothing reads the file); under wirestack too, since the probe reads only regular files."""
    script = tmp_path / "zero.py"
    script.write_text(_program("/dev/zero", closed_port(), catch=True))
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert plain.returncode == 0 and plain.stdout == "caught\n"
    done = subprocess.run([sys.executable, "-m", "wirestack", "run", "--no-pcap", "--timeout", "30", str(script)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": pythonpath()})
    assert done.returncode == 0 and done.stdout == "caught\n", done.stderr[-2000:]
    assert "stopped after" not in done.stderr and "ECONNREFUSED" in done.stderr
