"""Every Python and every way a program runs: the interpreter this suite runs on (nox runs it on 3.10 to 3.13),
children however they start, gevent and uvloop, interpreters wirestack cannot serve.

Each traced run is compared with a plain run of the same program (what it prints, its traceback) and its packets
with tshark's reading of the pcapng wirestack wrote (never with wirestack's own packet list)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import IN_CI, wirestack

from tests.corpus.witness import Witness

TARGETS = Path(__file__).parent / "targets"
VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plain(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The program under python itself, with nothing of wirestack's in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIRESTACK")}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


def traced(workdir: Path, *program: str, options: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess[str],
                                                                                dict[str, Any], Path]:
    pcap, report = workdir / "run.pcapng", workdir / "run.json"
    done = wirestack("run", "--force", "-w", str(pcap), "--json", str(report), *options, *program, cwd=workdir)
    data = json.loads(report.read_text()) if report.exists() else {}
    return done, data, pcap


def program_part(stderr: str) -> str:
    """What the program itself wrote to stderr: wirestack's report starts with its title line."""
    m = re.search(r"^wirestack run \S+: ", stderr, re.MULTILINE)
    return stderr[: m.start()] if m else stderr


_CARETS = re.compile(r"^\s*[~^]+[~^ ]*$")
_ENTRY = re.compile(r'^  File "(.*)", line (\d+), in (.*)$')


def traceback_entries(text: str) -> list[tuple[str, int, str, str]]:
    """(file, line, function, source line or "") of each entry of the last traceback Python printed."""
    lines = text[text.rindex("Traceback (most recent call last):"):].splitlines()[1:]
    out: list[tuple[str, int, str, str]] = []
    for i, line in enumerate(lines):
        m = _ENTRY.match(line)
        if m is None:
            continue
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        code = nxt.strip() if nxt.startswith("    ") and not _CARETS.match(nxt) and not _ENTRY.match(nxt) else ""
        out.append((m[1], int(m[2]), m[3], code))
    return out


def reported_entries(exception: dict[str, Any]) -> list[tuple[str, int, str, str]]:
    return [(f["file"], f["line"], f["function"], f["code"]) for f in exception["frames"]]


def syns(pcap: Path) -> list[tuple[str, int, str, int]]:
    """(src, sport, dst, dport) of each SYN (without ACK) in the file, read by tshark."""
    return [(p.src, p.sport or 0, p.dst, p.dport or 0) for p in Witness.load(str(pcap)).packets
            if p.proto == "TCP" and p.flags == "S"]


def connects(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in data["calls"] if c["op"] in ("connect", "connect_ex") and c["remote"]
            and c["remote"][0].startswith("127.")]


# -- what the program sees of itself, and the source lines ---------------------------------------------------


@pytest.mark.capture
def test_a_script_sees_itself_and_its_traceback_as_under_python(workdir: Path) -> None:
    port = str(closed_port())
    shutil.copy(TARGETS / "where_am_i.py", workdir / "where_am_i.py")
    bare = plain("where_am_i.py", port, cwd=workdir)
    done, data, _ = traced(workdir, "where_am_i.py", port, options=("--no-kernel",))
    assert done.returncode == bare.returncode == 1
    assert done.stdout == bare.stdout  # __file__, __loader__, __spec__, argv, sys.path[0], linecache
    assert program_part(done.stderr) == bare.stderr  # the traceback, to the byte (3.13: with its carets)
    assert reported_entries(data["exception"]) == traceback_entries(bare.stderr)


@pytest.mark.capture
def test_command_code_has_its_own_source_lines_on_every_version(workdir: Path) -> None:
    """3.13 keeps `-c` code in linecache["<string>"] and prints its lines; 3.10-3.12 print none. The program and
    the report show exactly what this interpreter shows."""
    code = ("import linecache, socket, sys\n"
            "print(sorted(k for k in linecache.cache if k.startswith('<')), __name__, sys.argv)\n"
            f"socket.create_connection(('127.0.0.1', {closed_port()}))\n")
    bare = plain("-c", code, "x", cwd=workdir)
    done, data, _ = traced(workdir, "-c", code, "x", options=("--no-kernel", "--no-pcap"))
    assert done.returncode == bare.returncode == 1
    assert done.stdout == bare.stdout
    assert program_part(done.stderr) == bare.stderr
    entries = traceback_entries(bare.stderr)
    assert reported_entries(data["exception"]) == entries
    top = entries[0]
    assert top[:3] == ("<string>", 3, "<module>")
    assert top[3] == ("socket.create_connection(('127.0.0.1', " in top[3] and top[3]) if sys.version_info >= (3, 13) \
        else top[3] == ""


@pytest.mark.capture
def test_a_scenario_shows_its_client_code_not_the_bootstrap(workdir: Path) -> None:
    """Scenarios run as `python -c BOOT`: on 3.13 BOOT is linecache["<string>"]; the client's code is compiled
    under its own name and its lines are its own."""
    done = wirestack("smtp", "--no-pcap", "--no-kernel", "--json", "-", cwd=workdir)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    frames = data["exception"]["frames"]
    assert (frames[0]["file"], frames[0]["line"], frames[0]["code"]) == ("<wirestack smtp>", 2,
                                                                          "smtplib.SMTP('127.0.0.1', port=66000)")
    assert not any(f["file"] == "<string>" or "bootstrap" in f["code"] for f in frames)
    import smtplib

    lines = Path(smtplib.__file__).read_text().splitlines()
    for f in frames[1:]:  # the library frames: this interpreter's own files and lines
        assert Path(f["file"]).read_text().splitlines()[f["line"] - 1].strip() == f["code"]
    assert any(f["file"] == smtplib.__file__ and lines[f["line"] - 1].strip() == f["code"] for f in frames)


# -- interpreters the probe cannot serve ---------------------------------------------------------------------


def fake_python(folder: Path, answer: str) -> Path:
    """An executable that answers wirestack's version question (`-I -S -c CODE`) with `answer`."""
    path = folder / "python-fake"
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' '{answer}'\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("answer", ['[[3, 8, 18], ".cpython-38-x86_64-linux-gnu.so", false]',
                                    '[[2, 7, 18], "", false]', "Python 3.8.1", ""])
def test_an_interpreter_the_probe_cannot_serve_is_one_line_and_exit_2(workdir: Path, answer: str) -> None:
    fake = fake_python(workdir, answer)
    done = wirestack("run", "--no-pcap", "--python", str(fake), "-c", "print(1)", cwd=workdir)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
    line = done.stderr.strip()
    assert line.startswith(f"wirestack: {fake} ") and "3.10 to 3.13" in line and "Traceback" not in line
    if answer.startswith("[[3, 8"):
        assert "is Python 3.8.18" in line
    assert "no socket call" not in line and "no exception" not in line


def test_a_real_old_python_is_refused_the_same_way(workdir: Path) -> None:
    old = sorted(Path(os.path.expanduser("~/.pyenv/versions")).glob("3.[6-9].*/bin/python3"))
    if not old:
        pytest.skip("no Python older than 3.10 on this machine")
    done = wirestack("run", "--no-pcap", "--python", str(old[-1]), "-c", "print(1)", cwd=workdir)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "3.10 to 3.13" in done.stderr and "choose another with --python" in done.stderr


# -- children, however they start ----------------------------------------------------------------------------


def other_python() -> str | None:
    """A Python 3.10+ other than this one (another pyenv version, or Debian's)."""
    mine = os.path.realpath(sys.executable)
    candidates = sorted(Path(os.path.expanduser("~/.pyenv/versions")).glob("3.1[0-9].*/bin/python3"))
    for c in [*candidates, Path("/usr/bin/python3")]:
        if c.exists() and os.path.realpath(c) != mine and not str(c).startswith(sys.prefix):
            probe = subprocess.run([str(c), "-c", "import sys; print(sys.version_info >= (3, 10))"],
                                   capture_output=True, text=True)
            if probe.stdout.strip() == "True":
                return str(c)
    return None


@pytest.mark.capture
@pytest.mark.parametrize("how", ["spawn", "forkserver", "subprocess", "python", "fork"])
def test_a_child_is_traced_however_it_starts(workdir: Path, how: str) -> None:
    port = str(closed_port())
    extra = []
    if how == "python":
        other = other_python()
        if other is None:
            if IN_CI:
                pytest.fail("CI has several Pythons: none found for the other-interpreter child")
            pytest.skip("no other Python 3.10+ here")
        extra = [other]
    shutil.copy(TARGETS / "child_starts.py", workdir / "child_starts.py")
    bare = plain("child_starts.py", how, port, *extra, cwd=workdir)
    done, data, pcap = traced(workdir, "child_starts.py", how, port, *extra)
    assert done.returncode == bare.returncode == 0, done.stderr
    assert done.stdout == bare.stdout
    assert ("exit: 1" if how == "fork" else "child: 111") in done.stdout
    assert program_part(done.stderr) == bare.stderr  # the fork child's own traceback, as python prints it
    main = data["processes"][0]
    assert main["how"] == "main"
    children = {p["pid"]: p for p in data["processes"][1:]}
    refused = [c for c in connects(data) if c["remote"][1] == int(port)]
    assert len(refused) == 1
    [call] = refused
    assert call["pid"] in children and children[call["pid"]]["traced"]  # the child's call, under its pid
    # forkserver's children are forked from the forkserver, itself started (as spawn's) by _posixsubprocess, not
    # Popen: traced all the same
    assert children[call["pid"]]["how"] == ("fork" if how in ("fork", "forkserver") else "start")
    if how in ("spawn", "forkserver"):
        assert any("multiprocessing" in " ".join(p["argv"]) and p["how"] == "start" for p in children.values())
    # the wire, read by tshark: one SYN to the closed port, from the port the child's connect() had
    wire = [s for s in syns(pcap) if s[3] == int(port)]
    assert wire == [("127.0.0.1", call["local"][1], "127.0.0.1", int(port))]
    packets = {p["id"]: p for p in data["packets"]}
    assert [packets[i]["flags"] for i in call["packets"]] == ["S", "RA"]
    if how == "fork":  # the child's exception is its own: the program exited 0 with none
        assert data["exception"] is None and data["exit_code"] == 0
        assert any(f"process {call['pid']} ended with an exception of its own: ConnectionRefusedError" in n
                   for n in data["notes"])
        assert "\nno exception escaped\n" in done.stderr


# -- runtimes with sockets of their own ----------------------------------------------------------------------


@pytest.fixture
def pong_server() -> Iterator[int]:
    """A local server that answers one line with PONG, for as many connections as come."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                conn.recv(100)
                conn.sendall(b"PONG\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(5)
    server.close()


@pytest.mark.capture
def test_gevent_sockets_are_traced(workdir: Path, pong_server: int) -> None:
    pytest.importorskip("gevent")
    closed = closed_port()
    shutil.copy(TARGETS / "gevent_refused.py", workdir / "gevent_refused.py")
    bare = plain("gevent_refused.py", str(closed), str(pong_server), cwd=workdir)
    done, data, pcap = traced(workdir, "gevent_refused.py", str(closed), str(pong_server))
    assert done.returncode == bare.returncode == 1
    assert done.stdout == bare.stdout == "caught: 111\ngot: b'PONG\\r\\n'\n"
    assert program_part(done.stderr) == bare.stderr  # no frame of wirestack's in gevent's traceback
    assert reported_entries(data["exception"]) == traceback_entries(bare.stderr)
    wire = syns(pcap)
    assert len(wire) == 3  # tshark: two SYNs to the closed port, one to the server
    calls = connects(data)
    # each SYN has its connect (gevent's non-blocking connect_ex, from the same local port; once connected,
    # gevent calls connect_ex again, which returns EISCONN or 0)
    assert {(c["local"][1], c["remote"][1]) for c in calls if c["op"] == "connect_ex"} == {(s[1], s[3]) for s in wire}
    first = [c for c in calls if c["op"] == "connect_ex" and c["result"] == 115]
    assert sorted((c["local"][1], c["remote"][1]) for c in first) == sorted((s[1], s[3]) for s in wire)
    ops = {c["op"] for c in data["calls"]}
    assert {"connect_ex", "getsockopt", "send", "recv"} <= ops
    sent = [c for c in data["calls"] if c["op"] in ("send", "sendall")]
    assert sum(c["result"] for c in sent) == 6  # b"PING\r\n"
    text = done.stderr
    assert "the probe saw no socket call" not in text and "no packet of the traced program" not in text
    assert "not by a socket call" not in text.replace("\n    ", " ")  # it names the getsockopt that read it
    assert "getsockopt(SO_ERROR)" in text


@pytest.mark.capture
def test_uvloop_is_named_and_its_packets_are_still_the_programs(workdir: Path) -> None:
    pytest.importorskip("uvloop")
    port = closed_port()
    shutil.copy(TARGETS / "uvloop_refused.py", workdir / "uvloop_refused.py")
    bare = plain("uvloop_refused.py", str(port), cwd=workdir)
    for options in ((), ("--no-kernel",)):
        done, data, pcap = traced(workdir, "uvloop_refused.py", str(port), options=options)
        assert done.returncode == bare.returncode == 1
        assert done.stdout == bare.stdout and program_part(done.stderr) == bare.stderr
        text = done.stderr.replace("\n    ", " ")
        [unseen] = [n for n in data["notes"] if n.startswith("not seen by the probe: uvloop")]
        assert unseen.splitlines()[0] == unseen and unseen in done.stderr.replace("\n", " ")
        assert "no socket call" not in text and "no packet of the" not in text and "not by a socket call" \
            not in text
        wire = [s for s in syns(pcap) if s[3] == port]
        if options:  # without the kernel layer the packets cannot be told: said so, not denied (none written)
            assert data["packets"] == [] and wire == []
            assert "packets attributed to the program" in done.stderr
            assert "without the kernel layer" in text
        else:  # the kernel layer names the flow the program's thread opened: its packets are the report's
            assert len(wire) == 1  # tshark, on the pcapng: the program's SYN
            assert [(p["sport"], p["dport"], p["flags"]) for p in data["packets"]] == \
                [(wire[0][1], port, "S"), (port, wire[0][1], "RA")]
            assert any(f["kind"].startswith("tcp.") for f in data["facts"])


# -- ExceptionGroups -----------------------------------------------------------------------------------------

GROUPS = ["trio"] + (["taskgroup", "all_errors"] if sys.version_info >= (3, 11) else [])  # 3.10: no stdlib groups


def group_block(text: str) -> list[str]:
    """The lines of the (first) exception-group traceback in `text` that Python and wirestack both draw: the
    margins, `File` lines, exception lines and separators (not source lines: Python adds carets and, on 3.13,
    the statement's other lines; the report adds layers and packet ids)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  + Exception Group Traceback"))
    end = next((i for i in range(start, len(lines)) if not lines[i]), len(lines))  # groups draw no bare blank line
    out = []
    for line in lines[start:end]:
        content = re.sub(r"^ *\| ?", "", line, count=1)  # one margin per line: nesting indents it further
        if not content.strip() or content.startswith("    ") or _CARETS.match(content):
            continue  # a blank margin line, a source line (or its continuation), carets
        if line.strip().startswith(("kernel ", "#", "/usr/include/")):
            continue  # the report's kernel layer under the call that raised (Python has none)
        out.append(line.rstrip())
    return out


@pytest.mark.capture
@pytest.mark.parametrize("how", GROUPS)
def test_exception_groups_render_as_python_and_pair_each_member(workdir: Path, how: str) -> None:
    """TaskGroup, create_connection(all_errors=True) and a trio nursery, each with two refused connects (to
    127.0.0.1 and 127.0.0.2): the group drawn as Python draws it, and each member paired with its own socket,
    whose SYN tshark finds in the pcapng going to that member's address."""
    if how == "trio":
        pytest.importorskip("trio")
    port = closed_port()
    bare = plain(str(TARGETS / "groups.py"), how, str(port), cwd=workdir)
    done, data, pcap = traced(workdir, str(TARGETS / "groups.py"), how, str(port), options=("--width", "400"))
    assert done.returncode == bare.returncode == 1
    own = program_part(done.stderr)  # the program's own traceback (trio: its members in either order)
    assert own == bare.stderr if how != "trio" else sorted(own.splitlines()) == sorted(bare.stderr.splitlines())
    report = done.stderr[len(own):]
    ours, python = group_block(report), group_block(bare.stderr)
    if how == "trio":  # trio runs its tasks in a random order: the members may come in another order
        ours, python = sorted(ours), sorted(python)
    assert ours == python
    wire = {(s[2], s[1]) for s in syns(pcap) if s[3] == port}  # tshark: (destination, source port) of each SYN
    assert {host for host, _ in wire} == {"127.0.0.1", "127.0.0.2"}
    calls = {c["id"]: c for c in data["calls"]}
    socket_of = {c["socket"]: c for c in connects(data)}
    paired = set()
    for fact in data["facts"]:  # each member's own call: the one that raised it, or the SO_ERROR read it was built from
        if fact["kind"] == "exception.origin":
            call = calls[fact["calls"][0]]
            paired.add((call["remote"][0], call["local"][1]))
        elif fact["kind"] == "exception.built":
            connect = socket_of[fact["socket"]]
            assert connect["remote"][0] == fact["address"][0]  # the socket the member's message names
            paired.add((connect["remote"][0], connect["local"][1]))
    assert paired == wire


# -- the C short path on every build -------------------------------------------------------------------------


def test_without_the_gil_the_probe_is_pure_python_also_under_w_error() -> None:
    """A free-threaded build running without the GIL (simulated: no 3.13t here) never imports the C twin, whose
    Py_mod_gil slot says it needs the GIL: importing it would turn the GIL back on with a RuntimeWarning, an
    error under -W error. The probe chooses pure Python instead, silently."""
    code = ("import sys; sys._is_gil_enabled = lambda: False\n"
            "import wirestack.record.probe as p\n"
            "print(p._fastpath is None, p.Probe(lambda batch: None).frameless)")
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.split() == ["True", "False"]
    source = (Path(__file__).parent.parent / "wirestack" / "record" / "_fastpath.c").read_text()
    assert "Py_mod_gil" in source and "PyErr_GetRaisedException" in source and "PY_VERSION_HEX >= 0x030C0000" in source
