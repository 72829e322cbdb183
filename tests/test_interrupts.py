"""Interruptions of a large run answer within a second, and nothing recorded is lost (issue: performance).

Each test runs a program that makes many refused connects (a few seconds of analysis after it ends), signals
wirestack once the program has printed its last line, and checks the files with tshark, never with wirestack's
own output: the pcapng holds every packet of the program, and `wirestack read` of it gives the full report.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CONNECTS = 10_000  # a few seconds of analysis after the program ends (this 2-core machine)
PROGRAM = f"""
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
for _ in range({CONNECTS}):
    c = socket.socket()
    c.connect_ex(("127.0.0.1", port))
    c.close()
print("done", port, flush=True)
"""


def _tshark_rows(path: Path, fields: list[str], display: str = "") -> list[list[str]]:
    tshark = shutil.which("tshark")
    assert tshark
    argv = [tshark, "-r", str(path), "-T", "fields", *sum((["-e", f] for f in fields), [])]
    if display:
        argv += ["-Y", display]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def _start(workdir: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    (workdir / "many.py").write_text(PROGRAM)
    proc = subprocess.Popen([sys.executable, "-m", "wirestack", "run", "-w", "big.pcapng", "--json", "big.json",
                             *extra, "many.py"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=workdir)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the program's last line
    assert line.startswith("done"), (line, proc.stderr.read() if proc.stderr else "")
    # it still has to exit (its probe sends what it holds): a signal before that stops the program, and the
    # analysis that follows is another test's business; wait until only wirestack's own process names many.py
    deadline = time.monotonic() + 20
    while _program_running(workdir / "many.py") and time.monotonic() < deadline:
        time.sleep(0.02)
    return proc, int(line.split()[1])


def _program_running(script: Path) -> bool:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if script.name.encode() in argv and b"wirestack" not in argv:
            return True
    return False


@pytest.mark.capture
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_the_analysis_saves_the_recording_within_a_second(sig: int, code: int,
                                                                           workdir: Path) -> None:
    proc, port = _start(workdir)
    time.sleep(0.5)
    assert proc.poll() is None, "the analysis ended too soon for this test: make the run larger"
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == code, err
    assert took < 1.0, f"exited {took:.2f} s after the signal"
    assert "Traceback" not in err and "saving the recording unanalysed" in err
    assert len([ln for ln in err.splitlines() if ln.startswith("wirestack: interrupted")]) == 1
    assert not (workdir / "big.json").exists()  # never half-written
    assert not [p for p in workdir.iterdir() if "wirestack-" in p.name]  # no spool or temporary file left

    # every packet of the program, as tshark reads the file: a SYN out and a RST/ACK back per connect
    rows = _tshark_rows(workdir / "big.pcapng", ["tcp.flags.str", "tcp.srcport", "tcp.dstport"])
    syns = [r for r in rows if r[2] == str(port) and "S" in r[0].replace("·", "")]
    resets = [r for r in rows if r[1] == str(port) and "R" in r[0]]
    assert len(syns) == CONNECTS and len(resets) == CONNECTS
    assert all(str(port) in (r[1], r[2]) for r in rows)  # nothing but the program's flows

    # and the analysis the interrupted run did not finish, done by `read`
    done = subprocess.run([sys.executable, "-m", "wirestack", "read", "big.pcapng", "--json", "-"], cwd=workdir,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert len(report["packets"]) == 2 * CONNECTS
    assert sum(1 for c in report["calls"] if c["op"] == "connect_ex") == CONNECTS
    refused = [f for f in report["facts"] if f["kind"] == "tcp.refused"]
    assert len(refused) == CONNECTS
    assert any("interrupted" in n for n in report["notes"])


@pytest.mark.capture
def test_a_second_signal_exits_at_once(workdir: Path) -> None:
    proc, _ = _start(workdir)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)  # while the recording is being saved
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert not [p for p in workdir.iterdir() if "wirestack-tmp" in p.name]  # the temporary file was removed


@pytest.mark.capture
def test_sigkill_leaves_the_raw_packets_on_disk(workdir: Path) -> None:
    """The frames reach disk while the program runs: killed outright, wirestack leaves them readable."""
    (workdir / "slow.py").write_text("import socket, time\n"
                                     "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]\n"
                                     "s.close()\n"
                                     "for _ in range(50):\n"
                                     "    c = socket.socket(); c.connect_ex(('127.0.0.1', port)); c.close()\n"
                                     "print('sent', port, flush=True)\n"
                                     "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-m", "wirestack", "run", "-w", "k.pcapng", "slow.py"], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
        time.sleep(1.6)  # the spool is at most a second behind
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    from wirestack.record import tracefs

    if tracefs.MOUNT.joinpath("instances").is_dir():
        tracefs._remove_stale()  # the killed run's kernel instance (the next run would remove it too)
    spools = [p for p in workdir.iterdir() if p.name.endswith(".wirestack-spool.pcapng")]
    assert len(spools) == 1
    rows = _tshark_rows(spools[0], ["tcp.flags.str", "tcp.srcport"], f"tcp.port == {port}")
    assert sum(1 for r in rows if r[1] == str(port) and "R" in r[0]) == 50
    assert not (workdir / "k.pcapng").exists()


@pytest.mark.capture
def test_a_long_run_keeps_its_first_calls_within_the_cap(workdir: Path) -> None:
    (workdir / "loop.py").write_text("import socket\n"
                                     "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                                     "for _ in range(3000):\n"
                                     "    s.sendto(b'x', ('127.0.0.1', 9))\n")
    done = subprocess.run([sys.executable, "-m", "wirestack", "run", "--max-calls", "1000", "--no-pcap", "--json",
                           "c.json", "loop.py"], cwd=workdir, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = json.loads((workdir / "c.json").read_text())
    assert len(data["calls"]) == 1000
    assert any("--max-calls" in n and "2,00" in n for n in data["notes"])  # 2,001 or 2,002 more were counted


@pytest.mark.capture
def test_a_long_analysis_shows_its_progress_on_a_terminal_only(workdir: Path) -> None:
    import pty

    (workdir / "many.py").write_text(PROGRAM)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "wirestack", "run", "--no-pcap", "many.py"], cwd=workdir,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(30)
    os.close(master)
    text = seen.decode(errors="replace")
    assert "wirestack: pairing" in text or "wirestack: facts" in text  # the phase, shown while it lasted
    assert "Ctrl-C saves the recording" in text
    quiet = subprocess.run([sys.executable, "-m", "wirestack", "run", "--no-pcap", "many.py"], cwd=workdir,
                           capture_output=True, text=True)
    assert "wirestack: pairing" not in quiet.stderr and "Ctrl-C saves" not in quiet.stderr  # not a terminal


# A large run's pcapng is written by a forked copy of wirestack beside the facts and the JSON
# (commands.pipeline._Aside)


BESIDE = 3_000  # connects: 6,000 packets and 9,000 calls, above commands.pipeline.BESIDE_OVER
BESIDE_PROGRAM = PROGRAM.replace(f"range({CONNECTS})", f"range({BESIDE})")


def _children_of(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.capture
def test_the_pcapng_written_beside_the_facts_is_whole_and_annotated(workdir: Path) -> None:
    (workdir / "many.py").write_text(BESIDE_PROGRAM)
    done = subprocess.run([sys.executable, "-m", "wirestack", "run", "-w", "big.pcapng", "--json", "big.json",
                           "many.py"], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    port = int(done.stdout.split()[1])
    assert done.stderr.count("wirestack: wrote big.pcapng") == 1
    report = json.loads((workdir / "big.json").read_text())
    rows = _tshark_rows(workdir / "big.pcapng", ["frame.number", "tcp.srcport", "tcp.dstport", "frame.comment"])
    assert len(report["packets"]) == len(rows) == 2 * BESIDE
    assert all(str(port) in (r[1], r[2]) for r in rows)
    syns = [r for r in rows if r[2] == str(port)]
    assert len(syns) == BESIDE and all("op=connect_ex" in r[3] and "role=sent" in r[3] for r in syns)
    assert sum(1 for c in report["calls"] if c["op"] == "connect_ex") == BESIDE
    assert not [p for p in workdir.iterdir() if "wirestack-" in p.name]


@pytest.mark.capture
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_pcapng_is_written_beside_saves_the_recording(sig: int, code: int,
                                                                         workdir: Path) -> None:
    (workdir / "many.py").write_text(BESIDE_PROGRAM)
    proc = subprocess.Popen([sys.executable, "-m", "wirestack", "run", "-w", "big.pcapng", "--json", "big.json",
                             "many.py"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir,
                            env={**os.environ, "WIRESTACK_PAUSE_AT": "aside"})
    assert proc.stderr is not None and proc.stdout is not None
    port = int(proc.stdout.readline().split()[1])
    line = proc.stderr.readline()
    while line and "pausing at aside" not in line:
        line = proc.stderr.readline()
    assert line, "never reached the pcapng written beside"
    writers = _children_of(proc.pid)
    assert writers, "no process writes the pcapng"
    sent = time.monotonic()
    proc.send_signal(sig)  # the copy is paused for a second before it writes: its file is not complete
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 1.0, "the signal was not answered within a second"
    assert proc.returncode == code, err
    assert "Traceback" not in err and "saving the recording unanalysed" in err
    assert not (workdir / "big.json").exists()
    assert not [p for p in workdir.iterdir() if "wirestack-" in p.name]  # no temporary file left
    assert not [w for w in writers if Path(f"/proc/{w}").exists()]  # and the copy is gone
    rows = _tshark_rows(workdir / "big.pcapng", ["tcp.srcport", "tcp.dstport"])
    assert len(rows) == 2 * BESIDE and all(str(port) in r for r in rows)
    done = subprocess.run([sys.executable, "-m", "wirestack", "read", "big.pcapng", "--json", "-"], cwd=workdir,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len([f for f in json.loads(done.stdout)["facts"] if f["kind"] == "tcp.refused"]) == BESIDE


@pytest.mark.capture
def test_a_signal_at_any_point_of_the_writing_leaves_whole_files_only(workdir: Path) -> None:
    """While the JSON is written here and the pcapng beside it (finished or not, whichever the timing gives):
    the pcapng is whole (annotated, or the recording unanalysed), the JSON absent, no temporary file left."""
    (workdir / "many.py").write_text(PROGRAM)
    proc = subprocess.Popen([sys.executable, "-m", "wirestack", "run", "-w", "big.pcapng", "--json", "big.json",
                             "many.py"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=workdir,
                            env={**os.environ, "WIRESTACK_PAUSE_AT": "write"})
    assert proc.stderr is not None
    line = proc.stderr.readline()
    while line and "pausing at write" not in line:
        line = proc.stderr.readline()
    assert line
    time.sleep(1.2)  # past the pause: the JSON is being written
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert ("big.pcapng is complete" in err) != ("saving the recording unanalysed" in err), err
    assert not (workdir / "big.json").exists()
    assert not [p for p in workdir.iterdir() if "wirestack-" in p.name]
    assert len(_tshark_rows(workdir / "big.pcapng", ["frame.number"])) == 2 * CONNECTS


@pytest.mark.capture
def test_a_full_disk_under_the_pcapng_written_beside_is_one_line(workdir: Path) -> None:
    """A real file system that fills up (a 1 MiB tmpfs) under the pcapng; the JSON beside it is written."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    small = workdir / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        (workdir / "many.py").write_text(BESIDE_PROGRAM)
        done = subprocess.run([sys.executable, "-m", "wirestack", "run", "-w", str(small / "big.pcapng"),
                               "--json", "big.json", "many.py"], cwd=workdir, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        lines = [ln for ln in done.stderr.splitlines() if "big.pcapng" in ln]
        assert len(lines) == 1 and "No space left on device" in lines[0], done.stderr
        assert os.listdir(small) == []  # nothing half-written
        report = json.loads((workdir / "big.json").read_text())
        assert len(report["packets"]) == 2 * BESIDE
    finally:
        subprocess.run(["umount", str(small)], check=False)


@pytest.mark.capture
def test_a_system_that_cannot_fork_gets_the_pcapng_written_in_place(workdir: Path) -> None:
    """fork() failing (EAGAIN: a process limit) is no error: wirestack writes the pcapng itself."""
    (workdir / "many.py").write_text(BESIDE_PROGRAM)
    wrapper = ("import errno, os, sys\n"
               "def no_fork():\n"
               "    raise BlockingIOError(errno.EAGAIN, 'Resource temporarily unavailable')\n"
               "os.fork = no_fork\n"
               "sys.argv = ['wirestack', *sys.argv[1:]]\n"
               "from wirestack.cli import run\n"
               "run()\n")
    done = subprocess.run([sys.executable, "-c", wrapper, "run", "-w", "big.pcapng", "--json", "big.json",
                           "many.py"], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    rows = _tshark_rows(workdir / "big.pcapng", ["frame.number", "frame.comment"])
    assert len(rows) == 2 * BESIDE and all("wirestack call=" in r[1] for r in rows)
    assert len(json.loads((workdir / "big.json").read_text())["packets"]) == 2 * BESIDE
    assert not [p for p in workdir.iterdir() if "wirestack-" in p.name]
