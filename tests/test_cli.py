"""The command line as a user meets it: bad input gets one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import wirestack


def _one_line_error(done, code: int = 2) -> str:  # type: ignore[no-untyped-def]
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wirestack: "), done.stderr
    assert "Traceback" not in done.stderr  # (stdout may hold the report, whose traceback is the client's)
    return str(lines[0])


@pytest.mark.parametrize("port, words", [("abc", "port must be a number"), ("0", "out of range"),
                                         ("99999999999", "out of range"), ("-5", "port must be a number")])
def test_bad_port(port: str, words: str, workdir: Path) -> None:
    assert words in _one_line_error(wirestack("smtp", "--port", port))


def test_unknown_command() -> None:
    assert "invalid choice: 'smtpp'" in _one_line_error(wirestack("smtpp"))


def test_unknown_option() -> None:
    assert "unrecognized arguments: --frobnicate" in _one_line_error(wirestack("smtp", "--frobnicate"))


def test_list_and_version() -> None:
    done = wirestack("list")
    assert done.returncode == 0 and done.stdout.startswith("on loopback (one host)\n  smtp ")
    assert wirestack("--version").stdout.startswith("wirestack ")


def test_output_in_a_missing_folder(workdir: Path) -> None:
    assert "folder nowhere does not exist" in _one_line_error(wirestack("smtp", "-w", "nowhere/x.pcapng"))
    assert "folder nowhere does not exist" in _one_line_error(wirestack("smtp", "--json", "nowhere/x.json"))


def test_existing_output_is_not_overwritten_without_force(workdir: Path) -> None:
    (workdir / "x.pcapng").write_text("keep me")
    assert "x.pcapng exists" in _one_line_error(wirestack("smtp", "-w", "x.pcapng"))
    assert (workdir / "x.pcapng").read_text() == "keep me"


@pytest.mark.capture
def test_force_overwrites(workdir: Path) -> None:
    (workdir / "x.pcapng").write_text("old")
    done = wirestack("smtp", "-w", "x.pcapng", "--force")
    assert done.returncode == 0, done.stderr
    assert (workdir / "x.pcapng").read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"


@pytest.mark.capture
def test_symlink_planted_as_output_is_refused(workdir: Path) -> None:
    target = workdir / "victim"
    target.write_text("secret")
    (workdir / "trap.pcapng").symlink_to(target)
    _one_line_error(wirestack("smtp", "-w", "trap.pcapng", "--force"))
    assert target.read_text() == "secret"


@pytest.mark.capture
def test_unknown_interface(workdir: Path) -> None:
    assert "no such interface: nosuch0" in _one_line_error(wirestack("smtp", "-i", "nosuch0", "--no-pcap"))


@pytest.mark.capture
def test_without_cap_net_raw_says_what_to_do(workdir: Path) -> None:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop CAP_NET_RAW"
    import subprocess
    import sys

    drop = [setpriv, "--bounding-set=-net_raw", "--inh-caps=-net_raw", sys.executable, "-m", "wirestack", "smtp",
            "--no-pcap"]
    done = subprocess.run([*drop, "--no-netns"], capture_output=True, text=True, env=dict(os.environ))
    assert "needs root or CAP_NET_RAW: run it with sudo" in _one_line_error(done)
    # without --no-netns it falls back to a private namespace, where it may capture
    done = subprocess.run(drop, capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode == 0 and "ECONNREFUSED (111)" in done.stdout, done.stderr


@pytest.mark.capture
@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_interrupted_run_still_writes_a_valid_capture(sig: str, code: int, workdir: Path) -> None:
    import signal
    import socket
    import subprocess
    import sys
    import time

    # a peer that accepts but never sends the SMTP banner: smtplib waits until interrupted
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "wirestack", "smtp", "--port", str(port), "-w", "cut.pcapng",
                             "--json", "cut.json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        conn, _ = server.accept()  # the client connected: the run is under way
        time.sleep(0.3)
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        server.close()
    assert proc.returncode == code, err
    assert "interrupted" in err and "Traceback" not in err
    tshark = shutil.which("tshark")
    assert tshark
    rows = subprocess.run([tshark, "-r", "cut.pcapng", "-T", "fields", "-e", "tcp.flags.str"], capture_output=True,
                          text=True, check=True).stdout.split()
    assert len(rows) >= 3  # at least the handshake was kept
    import json

    report = json.loads(Path("cut.json").read_text())
    assert [p["flags"] for p in report["packets"]][:3] == ["S", "SA", "A"]
    assert any(c["op"] == "connect" for c in report["calls"])
    from wirestack.record import tracefs

    # the kernel layer's tracefs instance is gone too (others' runs may be under way: only dead owners count)
    assert [n for n in tracefs.instances() if not Path(f"/proc/{n.split('-')[1]}").exists()] == []


@pytest.mark.capture
@pytest.mark.parametrize("extra_env, extra_args, coloured", [({}, [], True), ({"NO_COLOR": "1"}, [], False),
                                                               ({}, ["--no-color"], False)])
def test_colour_on_a_terminal_unless_told_not_to(extra_env: dict[str, str], extra_args: list[str], coloured: bool,
                                                 workdir: Path) -> None:
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | extra_env | {"COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "wirestack", "smtp", "--no-pcap", *extra_args], stdout=slave,
                            stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(30)
    os.close(master)
    out = b"".join(chunks).decode()
    assert "ConnectionRefusedError" in out
    assert ("\x1b[" in out) is coloured


def test_run_options_with_values_stay_wirestack_s() -> None:
    from wirestack.cli import split_run_argv

    assert split_run_argv(["--svg", "a.svg", "--html", "a.html", "prog.py", "--svg", "x"]) == (
        ["--svg", "a.svg", "--html", "a.html"], ["prog.py", "--svg", "x"])


@pytest.mark.capture
def test_full_disk_while_writing(workdir: Path) -> None:
    import subprocess

    disk = workdir / "tiny"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(disk)], check=True)
    try:
        (disk / "filler").write_bytes(b"x" * 6000)  # leaves less than a capture needs
        done = wirestack("smtp", "-w", str(disk / "x.pcapng"), "--no-color")
        assert done.returncode == 2
        assert done.stderr.strip().splitlines()[-1].startswith(f"wirestack: cannot write {disk / 'x.pcapng'}: "
                                                              "No space left on device")
        assert "Traceback" not in done.stderr
        assert not (disk / "x.pcapng").exists()  # nothing half-written is left behind
        assert "ConnectionRefusedError" in done.stdout  # and the report was still shown
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.capture
def test_duration_stops_a_long_program(workdir: Path) -> None:
    done = wirestack("run", "--duration", "1", "--no-pcap", "-c", "import time; time.sleep(30)")
    assert done.returncode == 130  # stopped with SIGINT, as Ctrl-C would
    assert "stopped after 1 s" in done.stderr


@pytest.mark.capture
@pytest.mark.parametrize("phase", ["setup", "drain", "write"])
def test_a_signal_at_any_moment_leaves_complete_files(phase: str, workdir: Path) -> None:
    """SIGTERM before the client starts, while the capture drains, while files are written: the files are
    complete and valid (the recording saved unanalysed when the analysis had not finished), the exit status is
    143, nothing is left running or half-written."""
    import json
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "wirestack", "smtp", "-w", "cut.pcapng", "--json", "cut.json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "WIRESTACK_PAUSE_AT": phase})
    assert proc.stderr is not None
    seen = [proc.stderr.readline() for _ in range(1)]
    while not seen[-1].startswith(f"wirestack: pausing at {phase}") and seen[-1]:
        seen.append(proc.stderr.readline())
    time.sleep(0.2)  # inside the one-second pause at that phase
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    err = "".join(seen) + err
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    tshark = shutil.which("tshark")
    assert tshark
    done = subprocess.run([tshark, "-r", "cut.pcapng"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not [p for p in Path(".").iterdir() if "wirestack-" in p.name]  # no spool, no temporary file left
    if phase == "setup":  # the client was stopped as soon as it started, then analysed: all of it is there
        report = json.loads(Path("cut.json").read_text())
        assert report["capture"]["packets"] == len(report["packets"])
        return
    # the program had ended: the signal stopped the analysis, and the recording was saved unanalysed (drain), or
    # the annotated pcapng was written first (write); either way the JSON is whole or absent, never cut, and
    # `wirestack read` of the pcapng gives the full report
    assert len(done.stdout.strip().splitlines()) == 2
    if Path("cut.json").exists():
        json.loads(Path("cut.json").read_text())
    again = subprocess.run([sys.executable, "-m", "wirestack", "read", "cut.pcapng", "--json", "-"],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert [p["flags"] for p in report["packets"]] == ["S", "RA"]
    assert any(f["kind"] == "tcp.refused" for f in report["facts"])


@pytest.mark.capture
def test_a_read_only_output_folder(workdir: Path) -> None:
    import subprocess

    ro = workdir / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], check=True)
    try:
        assert "is not writable" in _one_line_error(wirestack("smtp", "-w", str(ro / "x.pcapng")))
    finally:
        subprocess.run(["umount", str(ro)], check=False)
