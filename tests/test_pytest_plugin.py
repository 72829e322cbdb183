"""The pytest plugin (`pytest --wirestack`), run for real: pytester writes a small suite, a fresh pytest subprocess
runs it with the plugin, and these tests check its report, its files and the packets its `wire` fixture saw.

The plugin is loaded with `-p wirestack.testing.pytest_plugin`: the shared installation of wirestack does not
declare this worktree's entry point, and reinstalling it is not an option. The entry point's name is the module's
name, so `-p` is idempotent once it is installed. The declaration itself is tested below through a throwaway dist-info
directory that importlib.metadata (and so pytest) reads as the installed distribution.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # 3.10: pytest's own dependency, the library tomllib was made from
    import tomli as tomllib
from builders import CLIENT, SERVER, tcp
from conftest import ROOT

from wirestack.core.dissect import LINKTYPE_ETHERNET, LINKTYPE_RAW
from wirestack.record.capture import Frames
from wirestack.testing.pytest_plugin import candidates, file_stem, packet_matches, ports_of

pytest_plugins = ["pytester"]

TSHARK = shutil.which("tshark")
PLUGIN = ("-p", "wirestack.testing.pytest_plugin")

CLOSED_PORT = """
import socket


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose subprocesses import wirestack from this tree (checked, not assumed)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    monkeypatch.delenv("COLUMNS", raising=False)
    pytester.makepyfile(helpers=CLOSED_PORT)
    pytester.makeini("[pytest]\n")  # the rootdir, where captures/pytest goes
    return pytester


def run(suite: pytest.Pytester, *args: str) -> pytest.RunResult:
    return suite.runpytest_subprocess(*PLUGIN, "-p", "no:cacheprovider", *args, timeout=120)


def sections(result: pytest.RunResult) -> dict[str, str]:
    """The wirestack section of each failing test, by test name."""
    out = "\n".join(result.outlines)
    found = {}
    for m in re.finditer(r"-+ wirestack -+\n(wirestack pytest: \S+::(\w+)\n.*?)(?=\n_{3,} |\n=+ )", out, re.S):
        found[m.group(2)] = m.group(1)
    return found


def tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    assert TSHARK, "tshark is required (scripts/bootstrap installs it)"
    cmd = [TSHARK, "-r", str(path), "-T", "fields", "-E", "separator=|", *(x for f in fields for x in ("-e", f))]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return [line.split("|") for line in done.stdout.splitlines()]


def test_subprocesses_import_this_tree(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_where="""
        import wirestack, wirestack.testing.pytest_plugin

        def test_where():
            print("WIRESTACK", wirestack.__file__)
    """)
    result = run(suite, "-s")
    result.assert_outcomes(passed=1)
    assert f"WIRESTACK {ROOT / 'wirestack' / '__init__.py'}\n" in result.stdout.str()


@pytest.mark.capture
def test_failing_network_tests_get_the_section_and_a_pcapng(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_net="""
        import smtplib, socket
        import pytest
        from helpers import closed_port

        def test_refused():
            port = closed_port()
            print("PORT", port)
            smtplib.SMTP("127.0.0.1", port)

        @pytest.fixture
        def connection():
            return socket.create_connection(("127.0.0.1", closed_port()), timeout=5)

        def test_setup_refused(connection):
            pass

        def test_caught_then_unrelated(capsys):
            try:
                socket.create_connection(("127.0.0.1", closed_port()))
            except ConnectionRefusedError:
                pass
            assert 1 + 1 == 3

        def test_no_network():
            assert [1, 2] == [1, 3]

        def test_passes():
            try:
                socket.create_connection(("127.0.0.1", closed_port()))
            except ConnectionRefusedError:
                pass
    """)
    result = run(suite, "--wirestack")
    result.assert_outcomes(failed=3, passed=1, errors=1)
    found = sections(result)
    assert sorted(found) == ["test_caught_then_unrelated", "test_refused", "test_setup_refused"]

    text = found["test_refused"]
    port = next(line.split()[1] for line in result.outlines if line.startswith("PORT "))
    assert f"connect(127.0.0.1:{port}) → ECONNREFUSED (111)" in text
    syn = re.search(rf"#1 +\+\d+ µs → 127\.0\.0\.1:(\d+) → 127\.0\.0\.1:{port} +TCP +S ", text)
    rst = re.search(rf"#2 +\+\d+ µs ← 127\.0\.0\.1:{port} → 127\.0\.0\.1:(\d+) +TCP +RA ", text)
    assert syn and rst and syn.group(1) == rst.group(1), text
    frame = r'test_net\.py", line \d+, in test_refused\n +smtplib.SMTP\("127.0.0.1", port\) +program  #1 #2'
    assert re.search(frame, re.sub(r"\n(?=\S)", "", text)), text  # (rich folds a long path at 100 columns)
    assert "nothing accepted connections on 127.0.0.1:" + port in " ".join(text.split())
    assert "_pytest" not in text and "pluggy" not in text  # the runner's frames are left out
    assert "pcapng: captures/pytest/test_net.py--test_refused.pcapng" in text

    folder = suite.path / "captures" / "pytest"
    assert sorted(p.name for p in folder.iterdir()) == [
        "test_net.py--test_caught_then_unrelated.pcapng", "test_net.py--test_refused.pcapng",
        "test_net.py--test_setup_refused-setup.pcapng"]
    rows = tshark_fields(folder / "test_net.py--test_refused.pcapng", "tcp.srcport", "tcp.dstport", "tcp.flags.str",
                         "frame.comment")
    assert [(r[0], r[1]) for r in rows] == [(syn.group(1), port), (port, syn.group(1))]
    assert [r[2].replace("·", "") for r in rows] == ["S", "AR"]
    assert all("connect() → ECONNREFUSED (111)" in r[3] and "test_net.py:" in r[3] for r in rows)

    setup = found["test_setup_refused"]
    assert "in connection" in setup and re.search(r"TCP +S ", setup) and re.search(r"TCP +RA ", setup)
    assert "pcapng: captures/pytest/test_net.py--test_setup_refused-setup.pcapng" in setup
    caught = found["test_caught_then_unrelated"]
    assert "connect() failed" in caught and re.search(r"TCP +RA ", caught) and "AssertionError" in caught


@pytest.mark.capture
def test_passing_tests_keep_no_file(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_ok="""
        import socket
        import pytest
        from helpers import closed_port

        def test_refused_as_expected():
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", closed_port()))

        def test_echo():
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            with srv, socket.create_connection(srv.getsockname(), timeout=5) as c:
                conn, _ = srv.accept()
                with conn:
                    c.sendall(b"ping")
                    assert conn.recv(4) == b"ping"
    """)
    result = run(suite, "--wirestack")
    result.assert_outcomes(passed=2)
    assert not (suite.path / "captures").exists()
    assert "- wirestack -" not in result.stdout.str()  # no section (the header may name the plugin)


@pytest.mark.capture
def test_keep_all_keeps_a_file_per_test_that_made_socket_calls(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_keep="""
        import socket
        import pytest
        from helpers import closed_port

        def test_refused_as_expected():
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", closed_port()))

        def test_no_socket():
            assert True
    """)
    result = run(suite, "--wirestack", "--wirestack-keep=all", "--wirestack-dir", "out")
    result.assert_outcomes(passed=2)
    files = sorted((suite.path / "out").iterdir())
    assert [p.name for p in files] == ["test_keep.py--test_refused_as_expected.pcapng"]
    rows = tshark_fields(files[0], "tcp.flags.str")
    assert [r[0].replace("·", "") for r in rows] == ["S", "AR"]
    assert (files[0].stat().st_mode & 0o777) == 0o600


@pytest.mark.capture
def test_wire_fixture_assertions_hold_on_real_packets(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_wire="""
        import socket
        import pytest
        from helpers import closed_port

        def test_echo_and_refused(wire):
            srv = socket.socket()
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            port = srv.getsockname()[1]
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            conn, _ = srv.accept()
            c.sendall(b"hello wire")
            assert conn.recv(100) == b"hello wire"

            (syn,) = wire.find(flags="S", dport=port)
            assert wire.saw(flags="SA", sport=port, dport=syn.sport)
            (data,) = wire.find(contains=b"hello wire")
            assert (data.proto, data.src, data.dst, data.dport) == ("TCP", "127.0.0.1", "127.0.0.1", port)
            assert data.payload == b"hello wire" and data.flags == "PA"
            connect = next(x for x in wire.calls if x.op == "connect")
            assert connect.remote == ("127.0.0.1", port)
            assert connect.start_ns <= syn.time_ns <= connect.end_ns
            sendall = next(x for x in wire.calls if x.op == "sendall")
            assert sendall.start_ns <= data.time_ns <= sendall.end_ns
            before = len(wire.packets)
            assert not wire.saw(flags="FA", sport=syn.sport)

            c.close()  # the FIN leaves now; the next access drains up to here
            assert wire.saw(flags="FA", sport=syn.sport, dport=port)
            assert len(wire.packets) > before
            conn.close()
            srv.close()

            closed = closed_port()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", closed))
            (syn2,) = wire.find(flags="S", dport=closed)
            (rst,) = wire.find(flags="AR", sport=closed)  # flags: the same letters in any order
            assert rst.ack == (syn2.seq + 1) % 2**32 and rst.dport == syn2.sport
            assert syn2.time_ns < rst.time_ns
            assert [p.id for p in wire.packets] == list(range(1, len(wire.packets) + 1))
            assert wire.find(port=closed) == [syn2, rst]
            assert "#1 TCP 127.0.0.1:" in repr(wire)
            with pytest.raises(TypeError, match="colour"):
                wire.find(colour="red")
    """)
    result = run(suite, "--wirestack")
    result.assert_outcomes(passed=1)


def test_a_socket_described_in_one_test_is_known_in_the_next(suite: pytest.Pytester) -> None:
    # The probe describes a socket (family, type, local address) once, in the test that first meets it; a
    # later test's data calls on it must still carry what the description says.
    suite.makepyfile(test_shared="""
        import socket
        SINK = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        SINK.bind(("127.0.0.1", 0))
        OUT = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def test_first(wire):
            OUT.sendto(b"one", SINK.getsockname())

        def test_second(wire):
            OUT.sendto(b"two", SINK.getsockname())
            (call,) = [c for c in wire.calls if c.op == "sendto"]
            (packet,) = wire.find(contains=b"two")
            assert (call.family, call.kind) == ("AF_INET", "SOCK_DGRAM")
            assert call.local == ("0.0.0.0", packet.sport) and call.remote == SINK.getsockname()
            assert call.args == {"bytes": 3, "address": list(SINK.getsockname())}
    """)
    result = run(suite, "--wirestack")
    result.assert_outcomes(passed=2)


README_EXAMPLE = """
import socket
import threading

import pytest
from helpers import closed_port

CLOSED = closed_port()


@pytest.fixture(scope="session")
def echo_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.sendall(conn.recv(100))

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()
    srv.close()


"""


@pytest.mark.capture
def test_the_readme_example_of_the_wire_fixture_passes(suite: pytest.Pytester) -> None:
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"### The `wire` fixture\n\n```python\n(.*?)```", readme, re.S)
    assert example
    suite.makepyfile(test_readme=README_EXAMPLE + example.group(1))
    result = run(suite, "--wirestack")
    result.assert_outcomes(passed=1)


def test_wire_fixture_skips_without_wirestack(suite: pytest.Pytester) -> None:
    suite.makepyfile(test_skip="""
        def test_needs_capture(wire):
            pass
    """)
    result = run(suite, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*the wire fixture needs `pytest --wirestack`*"])


def test_inert_without_the_option(suite: pytest.Pytester) -> None:
    """Loaded but not enabled: no socket method wrapped, no capture process, no section, no file."""
    suite.makepyfile(test_inert="""
        import os, socket, _socket
        from helpers import closed_port

        def test_untouched():
            assert "connect" not in socket.socket.__dict__
            assert socket.socket.connect is _socket.socket.connect
            assert socket.getaddrinfo.__module__ == "socket" and not hasattr(socket.getaddrinfo, "__wrapped__")
            children = open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()
            assert children == []

        def test_refused():
            socket.create_connection(("127.0.0.1", closed_port()))
    """)
    result = run(suite)
    result.assert_outcomes(passed=1, failed=1)
    assert "- wirestack -" not in result.stdout.str()
    assert not (suite.path / "captures").exists()


def test_importing_the_plugin_loads_nothing_else_of_wirestack() -> None:
    code = ("import sys, wirestack.testing.pytest_plugin; "
            "print(sorted(m for m in sys.modules if m.startswith('wirestack')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.strip() == ("['wirestack', 'wirestack._version', 'wirestack.testing', "
                                   "'wirestack.testing.pytest_plugin']"), done.stderr


@pytest.mark.capture
def test_without_cap_net_raw_one_line_and_no_traceback(suite: pytest.Pytester) -> None:
    """As an unprivileged user would meet it: root's pytest with CAP_NET_RAW dropped from every set."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is required"
    suite.makepyfile(test_any="def test_any():\n    pass\n")
    done = subprocess.run([setpriv, "--bounding-set=-net_raw", "--inh-caps=-net_raw", sys.executable, "-m",
                           "pytest", *PLUGIN, "--wirestack", "-p", "no:cacheprovider"],
                          cwd=suite.path, capture_output=True, text=True, timeout=60)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == ["ERROR: wirestack: capturing on lo needs root or CAP_NET_RAW: run pytest as root (sudo), or "
                     "without root through the namespace mode, `wirestack run -m pytest --wirestack ...`"], \
        done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_entry_point_is_declared_in_pyproject() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    plugin = "wirestack.testing.pytest_plugin"
    assert data["project"]["entry-points"]["pytest11"] == {plugin: plugin}


def test_entry_point_loads_the_plugin_as_an_installed_distribution_would(suite: pytest.Pytester,
                                                                          tmp_path_factory: pytest.TempPathFactory
                                                                          ) -> None:
    """Without `-p`: a dist-info directory made from pyproject.toml's declaration, first on the path, is what
    importlib.metadata finds after `pip install`; pytest must load the plugin from it."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    site = tmp_path_factory.mktemp("site")
    info = site / f"wirestack-{data['project']['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: wirestack\nVersion: {data['project']['version']}\n")
    eps = data["project"]["entry-points"]["pytest11"]
    (info / "entry_points.txt").write_text("[pytest11]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(site), str(ROOT)))}
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=suite.path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--wirestack " in done.stdout and "--wirestack-keep" in done.stdout
    done = subprocess.run([sys.executable, "-m", "pytest", "--version", "--version"], cwd=suite.path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert re.search(r"wirestack-\S+ at .*wirestack/testing/pytest_plugin\.py", done.stdout + done.stderr), done.stderr
    done = subprocess.run([sys.executable, "-m", "pytest", *PLUGIN, "--help"], cwd=suite.path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr  # -p with the entry point installed: loaded once, no clash


@pytest.mark.parametrize(("nodeid", "stem"), [
    ("test_net.py::test_refused", "test_net.py--test_refused"),
    ("tests/sub/test_x.py::TestA::test_b[a b-1]", "tests_sub_test_x.py--TestA--test_b-a_b-1-"),
])
def test_file_stem(nodeid: str, stem: str) -> None:
    assert file_stem(nodeid) == stem


def test_file_stem_of_long_ids_stays_short_and_distinct() -> None:
    a, b = file_stem("t.py::test_" + "x" * 300 + "[1]"), file_stem("t.py::test_" + "x" * 300 + "[2]")
    assert a != b and len(a) <= 150 and len(b) <= 150


def test_packet_matching_on_hand_built_packets() -> None:
    syn = tcp(1, 10, CLIENT, SERVER, "S", seq=7)
    rst = tcp(2, 20, SERVER, CLIENT, "RA", ack=8)
    data = tcp(3, 30, CLIENT, SERVER, "PA", payload=b"EHLO there\r\n")
    assert packet_matches(syn, {"flags": "S", "dport": 464, "proto": "tcp", "port": 40000, "seq": 7})
    assert packet_matches(rst, {"flags": "AR"}) and packet_matches(rst, {"flags": "RA", "ack": 8})
    assert not packet_matches(syn, {"flags": "SA"}) and not packet_matches(syn, {"flags": ""})
    assert not packet_matches(syn, {"dport": 25}) and not packet_matches(syn, {"port": 25})
    assert packet_matches(data, {"contains": b"EHLO"}) and not packet_matches(syn, {"contains": b"EHLO"})
    assert packet_matches(data, {"payload": b"EHLO there\r\n"}) and not packet_matches(data, {"payload": b"EHLO"})


def _frame(proto: int, sport: int, dport: int, v6: bool = False) -> bytes:
    """A loopback Ethernet frame with an IPv4/IPv6 header and the first 4 bytes of a transport header."""
    ports = struct.pack("!HH", sport, dport) + b"\0" * 16
    if v6:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(ports), proto, 64, b"\0" * 15 + b"\1", b"\0" * 15 + b"\1")
        return b"\0" * 12 + b"\x86\xdd" + ip + ports
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(ports), 0, 0, 64, proto, 0, b"\x7f\0\0\1", b"\x7f\0\0\1")
    return b"\0" * 12 + b"\x08\x00" + ip + ports


def test_frames_of_other_flows_are_left_out_before_decoding() -> None:
    ours = [_frame(6, 41000, 2525), _frame(6, 2525, 41000), _frame(17, 5353, 41000, v6=True),
            _frame(1, 0, 0), b"\0" * 12 + b"\x08\x06" + b"\0" * 28]  # TCP both ways, UDP over IPv6, ICMP, ARP
    theirs = [_frame(6, 50000, 60000), _frame(17, 53, 50001, v6=True)]
    frames = Frames(list(range(7)), [64] * 7, ours[:2] + theirs[:1] + ours[2:] + theirs[1:])
    records: list[dict[str, Any]] = [{"kind": "call", "local": ["0.0.0.0", 41000], "remote": ["127.0.0.1", 2525]}]
    kept = candidates(frames, ports_of(records), LINKTYPE_ETHERNET)
    assert kept.data == ours and kept.times == [0, 1, 3, 4, 5]
    assert candidates(frames, frozenset(), LINKTYPE_RAW) is frames  # other framing: not guessed at
