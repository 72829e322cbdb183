"""`wirestack run`: real programs from tests/targets, run by the real CLI with real capture."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import errno, fact_texts, wirestack

pytestmark = pytest.mark.capture
TARGETS = Path(__file__).parent / "targets"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(workdir: Path, *program: str, options: tuple[str, ...] = (), env: dict[str, str] | None = None,
        cwd: Path | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report = workdir / "report.json"
    report.unlink(missing_ok=True)
    done = wirestack("run", "--json", str(report), "--no-pcap", *options, *program, env=env, cwd=cwd)
    data = json.loads(report.read_text()) if report.exists() else {}
    return done, data


def failed(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in data["calls"] if errno(c) not in (None, 0, 11, 115)]


def test_caught_refusal_is_still_reported_and_program_runs_as_under_python(workdir: Path) -> None:
    port = closed_port()
    done, data = run(workdir, str(TARGETS / "refused_caught.py"), str(port))
    assert done.returncode == 0, done.stderr
    assert f"argv: ['{port}'] name: __main__" in done.stdout  # argv and __main__ as under python
    assert "logged: [Errno 111] Connection refused" in done.stderr
    assert data["exception"] is None and data["exit_code"] == 0
    [connect] = failed(data)
    assert connect["op"] == "connect" and errno(connect) == 111
    assert [Path(f["file"]).name for f in connect["frames"]] == ["refused_caught.py", "socket.py"]
    flags = [data["packets"][i - 1]["flags"] for i in connect["packets"]]
    assert flags == ["S", "RA"]
    assert "connect(127.0.0.1:" in done.stderr and "ECONNREFUSED (111)" in done.stderr  # the report, on stderr


def test_exit_status_passes_through_and_capture_is_saved(workdir: Path) -> None:
    done = wirestack("run", "-w", "x.pcapng", str(TARGETS / "exit3.py"), str(closed_port()))
    assert done.returncode == 3, done.stderr
    assert (workdir / "x.pcapng").stat().st_size > 0
    assert "connect_ex(127.0.0.1:" in done.stderr


def test_module_and_command_modes(workdir: Path) -> None:
    port = closed_port()
    done, data = run(workdir, "-m", "mod_main", str(port), cwd=TARGETS, options=())
    assert done.returncode == 1
    assert f"module argv: ['{port}']" in done.stdout
    assert data["exception"]["type"] == "ConnectionRefusedError"
    # Python itself runs the module: its traceback is python's own, runpy's frames and all, and no wirestack frame
    plain = subprocess.run([sys.executable, "-m", "mod_main", str(port)], cwd=TARGETS, capture_output=True,
                           text=True, timeout=30)
    assert done.stderr.startswith(plain.stderr) and "wirestack" not in plain.stderr
    # the files python's own traceback names: "<frozen runpy>" from 3.11, runpy.py on 3.10
    own = [Path(file).name for file in re.findall(r'^  File "([^"]+)"', plain.stderr, re.MULTILINE)[:3]]
    assert own[2] == "mod_main.py" and all(name in ("<frozen runpy>", "runpy.py") for name in own[:2]), plain.stderr
    assert [Path(f["file"]).name for f in data["exception"]["frames"][:3]] == own
    code = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}')"
    done, data = run(workdir, "-c", code)
    assert done.returncode == 1
    exc = data["exception"]
    assert exc["type"] == "urllib.error.URLError"
    assert exc["frames"][0]["file"] == "<string>"
    inner = exc["context"] or exc["cause"]
    assert inner["type"] == "ConnectionRefusedError" and inner["call"] is not None
    assert exc["frames"][0]["packets"] == [1, 2]  # the wrapper's frames line up with the refusal's packets
    assert any("turned it into urllib.error.URLError" in f["text"] for f in data["facts"])


def test_threads_carry_their_names_and_a_reraised_traceback_pairs(workdir: Path) -> None:
    done, data = run(workdir, str(TARGETS / "threads.py"), str(closed_port()))
    assert done.returncode == 1
    [connect] = failed(data)
    assert connect["thread"].startswith("fetcher")
    exc = data["exception"]
    assert exc["call"] == connect["id"]
    fetch = next(f for f in exc["frames"] if f["function"] == "fetch")
    assert fetch["packets"] == connect["packets"] and len(connect["packets"]) == 2


def test_asyncio_nonblocking_connect_shows_both_steps(workdir: Path) -> None:
    done, data = run(workdir, str(TARGETS / "asyncio_refused.py"), str(closed_port()))
    assert done.returncode == 1
    connect = next(c for c in data["calls"] if c["op"] == "connect")
    assert errno(connect) == 115  # EINPROGRESS: the SYN left, the answer comes later
    so_error = next(c for c in data["calls"] if c["op"] == "getsockopt")
    assert errno(so_error) == 111 and so_error["socket"] == connect["socket"]
    syn, rst = data["packets"][:2]
    assert syn["flags"] == "S" and syn["calls"] == [connect["id"]]
    assert rst["flags"] == "RA" and rst["calls"] == [so_error["id"]]
    texts = fact_texts(data)
    assert "getsockopt(SO_ERROR)" in texts and "EINPROGRESS" in texts


def test_connected_udp_gets_icmp_and_a_later_recv_fails(workdir: Path) -> None:
    done, data = run(workdir, str(TARGETS / "udp_refused.py"), str(closed_port()))
    assert done.returncode == 1
    kinds = [(p["proto"], p["icmp"]) for p in data["packets"]]
    assert kinds == [("UDP", None), ("ICMP", {"type": 3, "code": 3})]
    icmp = data["packets"][1]
    assert icmp["quoted"]["proto"] == "UDP" and icmp["quoted"]["sport"] == data["packets"][0]["sport"]
    recv = next(c for c in data["calls"] if c["op"] == "recv")
    send = next(c for c in data["calls"] if c["op"] == "send")
    assert errno(recv) == 111 and recv["packets"] == [2] and send["packets"] == [1]
    assert data["exception"]["call"] == recv["id"]
    assert data["exception"]["frames"][-1]["packets"] == [1, 2]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[int]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(tls.recv(100).upper())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield int(server.getsockname()[1])
    t.join(5)
    server.close()


def test_tls_records_pair_with_handshake_write_and_read(workdir: Path, tls_server: int) -> None:
    done, data = run(workdir, str(TARGETS / "tls_client.py"), str(tls_server))
    assert done.returncode == 0, done.stderr
    assert "HELLO OVER TLS" in done.stdout
    ops = {c["op"]: c for c in data["calls"]}
    assert {"do_handshake", "send", "read"} <= set(ops)  # SSLSocket.sendall sends through send()
    packets = {p["id"]: p for p in data["packets"]}
    handshake = [packets[i] for i in ops["do_handshake"]["packets"]]
    assert handshake and handshake[0]["data"].startswith("16")  # a TLS handshake record (ClientHello) first
    written = [packets[i] for i in ops["send"]["packets"] if packets[i]["payload"]]
    assert written and all(p["data"].startswith("17") for p in written)  # application data records
    read = [packets[i] for i in ops["read"]["packets"] if packets[i]["payload"]]
    assert read and any(p["data"].startswith("17") for p in read)


def test_children_forked_traced_spawned_reported(workdir: Path) -> None:
    done, data = run(workdir, str(TARGETS / "children.py"), str(closed_port()))
    assert done.returncode == 0, done.stderr
    spawn = next(c for c in data["calls"] if c["op"] == "spawn")
    notes = " | ".join(data["notes"])
    assert "2 child processes traced as well" in notes and "was not traced" not in notes
    # a Python started with subprocess is traced (the start-up hook it inherits), and so is a forked child
    hows = {p["pid"]: p["how"] for p in data["processes"]}
    assert hows[spawn["result"]] == "start" and sorted(hows.values()) == ["fork", "main", "start"]
    connects = [c for c in data["calls"] if c["op"] == "connect"]
    assert len(connects) == 2 and all(c["packets"] for c in connects)
    assert {c["pid"] for c in connects} == {p for p, how in hows.items() if how != "main"}
    assert len(data["packets"]) == 4


def test_program_without_network_gets_an_empty_report_that_says_so(workdir: Path) -> None:
    done, data = run(workdir, str(TARGETS / "quiet.py"))
    assert done.returncode == 0 and "no network here" in done.stdout
    assert data["packets"] == [] and data["calls"] == []
    assert [f["kind"] for f in data["facts"]] == ["run.no_calls"]


def test_bad_programs(workdir: Path) -> None:
    done = wirestack("run", "missing.py")
    assert done.returncode == 2 and done.stderr.strip() == "wirestack: can't open file 'missing.py': no such file"
    done = wirestack("run", "-m", "no_such_module_here", "--no-pcap")  # python's own message and status
    plain = subprocess.run([sys.executable, "-m", "no_such_module_here"], capture_output=True, text=True)
    assert done.returncode == plain.returncode == 1 and done.stderr.startswith(plain.stderr)
    assert "Traceback" not in done.stderr
    done = wirestack("run")
    assert done.returncode == 2 and "run needs a program" in done.stderr
    done, data = run(workdir, str(TARGETS / "syntax_error.py"))
    assert done.returncode == 1 and "SyntaxError" in done.stderr
    assert data["exception"]["type"] == "SyntaxError" and "wirestack/" not in done.stderr


def test_program_killed_by_a_signal(workdir: Path) -> None:
    done, data = run(workdir, str(TARGETS / "killed.py"), str(closed_port()))
    assert done.returncode == 128 + 9
    assert data["exit_code"] == -9
    assert [p["flags"] for p in data["packets"]] == ["S", "RA"]  # flushed before the kill? at least recorded
    assert "killed by signal 9" in done.stderr


def test_python_api(workdir: Path) -> None:
    port = closed_port()
    code = (
        "import wirestack, socket\n"
        "with wirestack.trace() as t:\n"
        "    try:\n"
        f"        socket.create_connection(('127.0.0.1', {port}))\n"
        "    except ConnectionRefusedError:\n"
        "        pass\n"
        "print([p.flags for p in t.report.trace.packets])\n"
        "t.save('api.pcapng')\n"
    )
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "['S', 'RA']" in done.stdout
    assert (workdir / "api.pcapng").read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"


def test_under_sudo_the_program_runs_as_the_invoking_user(workdir: Path) -> None:
    python = "/usr/bin/python3"
    assert os.access(python, os.X_OK), "a system python that the unprivileged user can run"
    shared = Path(tempfile.mkdtemp(prefix="wirestack-user-"))
    try:
        shared.chmod(0o755)
        script = shared / "whoami.py"
        shutil.copy(TARGETS / "whoami.py", script)
        script.chmod(0o644)
        env = {"SUDO_UID": "65534", "SUDO_GID": "65534"}
        done = wirestack("run", "--python", python, "--json", str(shared / "r.json"), "-w", str(shared / "r.pcapng"),
                         str(script), str(closed_port()), env=env, cwd=shared)
        assert done.returncode == 0, done.stderr
        assert "uid=65534 gid=65534" in done.stdout
        for name in ("r.json", "r.pcapng"):
            st = (shared / name).stat()
            assert (st.st_uid, st.st_mode & 0o777) == (65534, 0o600)
        data = json.loads((shared / "r.json").read_text())
        assert [p["flags"] for p in data["packets"]] == ["S", "RA"]
        done = wirestack("run", "--as-root", "--python", python, "--no-pcap", str(script), str(closed_port()),
                         env=env, cwd=shared)
        assert "uid=0 gid=0" in done.stdout
    finally:
        shutil.rmtree(shared)


def test_burst_is_captured_completely_and_limits_are_reported(workdir: Path) -> None:
    burst = Path(__file__).parent.parent / "scripts" / "bench" / "burst.py"
    done, data = run(workdir, str(burst), "--datagrams", "5000", "--connects", "100", options=("--no-kernel",))
    assert done.returncode == 0, done.stderr
    offered = json.loads(done.stdout)["offered"]
    assert data["capture"]["dropped"] == 0
    assert len(data["packets"]) == offered == 5200  # every datagram, every SYN and RST/ACK
    refused = [c for c in data["calls"] if c["op"] == "connect_ex" and errno(c) == 111]
    assert len(refused) == 100 and all(len(c["packets"]) == 2 for c in refused)
    sends = [c for c in data["calls"] if c["op"] == "sendto"]
    assert len(sends) == 5000 and all(len(c["packets"]) == 1 for c in sends)
    # sent by the probe's short path: the local address comes from the socket's one description
    first = data["packets"][sends[0]["packets"][0] - 1]
    assert {(tuple(c["local"]), c["args"]["bytes"]) for c in sends} == {(("0.0.0.0", first["sport"]), 32)}
    assert "--all shows each" in done.stderr  # a large run is summarised
    done, data = run(workdir, str(burst), "--datagrams", "300", "--connects", "0",
                     options=("--netns", "--max-packets", "100", "--snaplen", "64"))
    # in a private namespace nothing else is on lo: the first 100 frames kept are ours
    assert len(data["packets"]) == 100 and max(p["length"] for p in data["packets"]) > 64
    assert any("kept the first 100 frames" in n for n in data["notes"])
