"""The lab catalogue: every scenario is data (checked here without privileges), and every scenario's wire
signature is checked on a real capture (marked `capture`). No peer may outlive its run."""

from __future__ import annotations

import ast
import json
import os
import pty
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import errno, fact_texts
from leftovers import ROOT, no_peer_left_behind  # noqa: F401 (the fixture is used by name)

from wirestack.labs.peers import KINDS
from wirestack.labs.scenarios import Scenario, catalogue

NAMES = ["smtp", "http", "ftp", "pop3", "imap", "udp", "timeout", "reset", "eof", "tls", "ipv6", "smtp-ok", "http-ok"]
# on a network of their own (namespaces; tests/network/test_network_scenarios.py runs them)
NETWORK = ["no-route-host", "no-route-host6", "no-route-net", "firewall-drop", "firewall-reject", "ttl", "mtu",
           "mtu-black-hole", "nat", "dns-nxdomain", "dns-servfail", "dns-silent", "fragments"]
ENV = {**os.environ, "PYTHONPATH": ROOT}  # `python -m wirestack` must be this checkout's


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wirestack", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def run(name: str, *args: str) -> dict[str, Any]:
    done = cli(name, "--no-pcap", "--json", "-", *args)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


# -- the catalogue as data ----------------------------------------------------------------------------------------


def test_every_module_is_in_the_catalogue_once() -> None:
    modules = sorted(p.stem.replace("_", "-") for p in Path(ROOT, "wirestack", "labs", "scenarios").glob("*.py")
                     if p.stem != "__init__")
    assert sorted(catalogue()) == sorted(NAMES + NETWORK) == modules


@pytest.mark.parametrize("name", NAMES)
def test_scenario_data_is_well_formed(name: str) -> None:
    s = catalogue()[name]
    assert s.name == name and "\n" not in s.lesson and len(s.lesson) <= 110
    assert s.peer is None or s.peer in KINDS
    assert (s.default_port is None) == (s.peer is not None)  # a peer picks its port; without one, a fixed port
    for host in (s.default_host, "::1", "127.0.0.1"):
        client = s.client(host, 4321)
        tree = ast.parse(client.source)  # formats and parses, braces and quotes included
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert imported and imported <= sys.stdlib_module_names  # the client runs with python -I -S
        assert "print(" not in client.source  # the client's stdout is the user's stdout (--json -)
        assert client.filename == f"<wirestack {name}>"


def test_ipv6_hosts_are_bracketed_in_urls() -> None:
    assert "'http://[::1]:8080/'" in catalogue()["http"].client("::1", 8080).source
    assert "socket.AF_INET6" in catalogue()["udp"].client("::1", 53).source


def test_a_peer_that_only_reserves_a_port_is_skipped_for_a_given_port() -> None:
    http = catalogue()["http"]
    assert http.peer_for(port_given=False) == "closed" and http.peer_for(port_given=True) is None
    assert catalogue()["reset"].peer_for(port_given=True) == "reset"
    with pytest.raises(ValueError):
        Scenario("x", "x", "127.0.0.1", None, "").client()


def test_list_shows_every_scenario_with_its_lesson() -> None:
    done = cli("list")
    assert done.returncode == 0
    rows = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in done.stdout.splitlines()
            if line.startswith("  ")}
    assert rows == {n: catalogue()[n].lesson for n in NAMES + NETWORK}


def test_readme_has_a_teachers_section_with_questions_for_every_scenario() -> None:
    readme = Path(ROOT, "README.md").read_text()
    section = readme[readme.index("## For teachers"):]
    for name in NAMES + NETWORK:
        block = re.search(rf"^### `wirestack {re.escape(name)}`.*?(?=^### |\Z)", section, re.M | re.S)
        assert block, f"no teachers' entry for {name}"
        questions = re.findall(r"^\d\. (.+?)(?=^\d\. |^$|\Z)", block.group(0), re.M | re.S)
        assert len(questions) >= 2 and all("?" in q for q in questions), f"fewer than two questions for {name}"


# -- bad input: one line, exit 2, nothing left running -------------------------------------------------------------


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wirestack: ") and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.mark.capture
def test_a_peer_port_over_65535_is_refused() -> None:
    assert "port 70000 is out of range for the peer of reset: use 1-65535" in _one_line_error(
        cli("reset", "--port", "70000", "--no-pcap"))


@pytest.mark.capture
def test_a_peer_never_listens_beyond_loopback() -> None:
    assert "peers listen on loopback only, and 192.0.2.1 is not a loopback address" in _one_line_error(
        cli("smtp-ok", "--host", "192.0.2.1", "--no-pcap"))


@pytest.mark.capture
def test_a_busy_port_is_a_one_line_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert f"cannot bind 127.0.0.1 port {port}: Address already in use" in _one_line_error(
            cli("http-ok", "--port", str(port), "--no-pcap"))


# -- real captures: each scenario's wire signature -----------------------------------------------------------------


def _tcp(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in data["packets"] if p["proto"] == "TCP"]


def wirestack_text(data: dict[str, Any]) -> str:
    """Every string of the JSON report, as one text (to look for a word anywhere in it)."""
    return json.dumps(data)


def _texts(data: dict[str, Any]) -> str:
    return fact_texts(data)


def _chain(exc: dict[str, Any] | None) -> list[dict[str, Any]]:
    out = []
    while exc is not None:
        out.append(exc)
        exc = exc["cause"] or exc["context"]
    return out


def _refusal(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    packets = _tcp(data)
    assert [p["flags"] for p in packets] == ["S", "RA"]
    syn, rst = packets
    assert rst["ack"] == (syn["seq"] + 1) % 2**32 and rst["sport"] == syn["dport"]
    return syn, rst


def _frames_in(exc: dict[str, Any], module: str) -> list[dict[str, Any]]:
    return [f for f in exc["frames"] if f["file"].replace("\\", "/").endswith("/" + module)]


@pytest.mark.capture
def test_http_refusal_under_urllib_http_client_and_socket_wrapped_in_urlerror() -> None:
    data = run("http")
    syn, rst = _refusal(data)
    outer = data["exception"]
    assert outer["type"] == "urllib.error.URLError" and errno(outer) is None
    inner = outer["context"]  # urllib raises URLError while handling the refusal
    assert inner["type"] == "ConnectionRefusedError" and errno(inner) == 111
    ids = [syn["id"], rst["id"]]
    for exc, module in ((outer, "urllib/request.py"), (inner, "urllib/request.py"), (inner, "http/client.py"),
                        (inner, "socket.py")):
        frames = _frames_in(exc, module)
        assert frames and all(f["packets"] == ids for f in frames), module
    connect = next(c for c in data["calls"] if c["id"] == inner["call"])
    assert connect["op"] == "connect" and errno(connect) == 111 and connect["packets"] == ids
    texts = _texts(data)
    assert "request.py turned it into urllib.error.URLError (raised while handling it)" in texts
    assert re.search(r"lie under \d+ traceback frames: <wirestack http> \(1\) → urllib/request.py \(\d+\) → "
                     r"http/client.py \(\d+\) → socket.py \(1\) → connect\(\) in the kernel", texts)


@pytest.mark.capture
@pytest.mark.parametrize("name, module", [("ftp", "ftplib.py"), ("pop3", "poplib.py"), ("imap", "imaplib.py"),
                                          ("ipv6", "smtplib.py")])
def test_the_same_refusal_under_each_modules_own_frames(name: str, module: str) -> None:
    data = run(name)
    syn, rst = _refusal(data)
    exc = data["exception"]
    assert exc["type"] == "ConnectionRefusedError" and errno(exc) == 111
    frames = _frames_in(exc, module)
    assert frames and all(f["packets"] == [syn["id"], rst["id"]] for f in exc["frames"])
    assert f"{module} let it through" in _texts(data)
    if name == "ipv6":
        assert {syn["src"], syn["dst"], rst["src"], rst["dst"]} == {"::1"}
        assert "this flow ran over IPv6" in _texts(data)


@pytest.mark.capture
def test_udp_datagram_then_icmp_port_unreachable_paired_with_the_failing_frame() -> None:
    data = run("udp")
    datagram, icmp = data["packets"]
    assert datagram["proto"] == "UDP" and datagram["payload"] > 0
    assert icmp["proto"] == "ICMP" and icmp["icmp"] == {"type": 3, "code": 3}
    q = icmp["quoted"]
    assert (q["proto"], q["sport"], q["dport"]) == ("UDP", datagram["sport"], datagram["dport"])
    exc = data["exception"]
    assert exc["type"] == "ConnectionRefusedError" and errno(exc) == 111
    failing = next(c for c in data["calls"] if c["id"] == exc["call"])
    assert failing["op"] == "recv" and icmp["id"] in failing["packets"] and icmp["calls"] == [failing["id"]]
    assert icmp["id"] in exc["frames"][-1]["packets"]
    send = next(c for c in data["calls"] if c["op"] == "send")
    assert errno(send) is None and send["packets"] == [datagram["id"]]
    texts = _texts(data)
    assert "ICMP port unreachable (type 3 code 3" in texts and "recv() failed with ECONNREFUSED (111)" in texts


@pytest.mark.capture
def test_timeout_retransmits_the_syn_with_measured_spacing_and_shows_it_live() -> None:
    # stdout carries only the JSON; stderr is a terminal, so the live status line shows there
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "wirestack", "timeout", "--no-pcap", "--json", "-"],
                            stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=ENV)
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        err += chunk
    out, _ = proc.communicate(timeout=30)
    os.close(master)
    assert proc.returncode == 0, err
    data = json.loads(out)

    syns = [p for p in _tcp(data) if p["flags"] == "S"]
    assert len(syns) >= 2 and len({(p["sport"], p["dport"], p["seq"]) for p in syns}) == 1  # one 4-tuple, one ISN
    first_wait = (syns[1]["time_ns"] - syns[0]["time_ns"]) / 1e9
    assert 0.8 <= first_wait <= 1.6
    assert not [p for p in _tcp(data) if p["flags"] != "S"]  # nothing came back
    exc = data["exception"]
    assert exc["type"] == "TimeoutError" and errno(exc) is None
    connect = next(c for c in data["calls"] if c["id"] == exc["call"])
    assert 3.4 <= (connect["end_ns"] - connect["start_ns"]) / 1e9 <= 4.0
    assert connect["packets"] == [p["id"] for p in syns]
    texts = _texts(data)
    waits = next(f for f in data["facts"] if f["kind"] == "tcp.syn_retransmits")
    assert len(waits["waits_ns"]) == len(syns) - 1 and waits["packets"] == [p["id"] for p in syns]
    silent = next(f for f in data["facts"] if f["kind"] == "tcp.unanswered")
    assert silent["ended_by"] == "timeout" and silent["copies"] == len(syns)
    assert "the client's own timeout ended the wait" in texts and "the kernel had not given up" in texts

    live = err.decode(errors="replace")
    assert "wirestack timeout: SYN #2 at +" in live and "next expected in ~" in live
    assert "\r\x1b[Kwirestack timeout: " in live and "unanswered, next expected in ~" in live  # the status line


@pytest.mark.capture
def test_reset_rst_after_the_data_and_connection_reset_inside_smtplibs_read() -> None:
    data = run("reset")
    packets = _tcp(data)
    assert [p["flags"] for p in packets[:3]] == ["S", "SA", "A"]
    peer_port = packets[0]["dport"]
    rst = next(p for p in packets if "R" in p["flags"])
    assert rst["sport"] == peer_port  # the peer's side reset it
    sent = [p for p in packets if p["dport"] == peer_port and p["payload"]]
    assert sent and sent[-1]["time_ns"] < rst["time_ns"] and bytes.fromhex(sent[-1]["data"]).startswith(b"ehlo")
    outer = data["exception"]
    assert outer["type"] == "smtplib.SMTPServerDisconnected"
    inner = outer["context"]
    assert inner["type"] == "ConnectionResetError" and errno(inner) == 104
    failing = next(c for c in data["calls"] if c["id"] == inner["call"])
    assert failing["op"].startswith("recv") and errno(failing) == 104 and rst["id"] in failing["packets"]
    assert any(f["function"] == "getreply" for f in inner["frames"])
    texts = _texts(data)
    reset = next(f for f in data["facts"] if f["kind"] == "tcp.reset")
    assert reset["sender_role"] == "server" and reset["rst"] == rst["id"] and reset["met_by"] == failing["id"]
    assert reset["reason"] == "TCP_STATE"  # the peer closes with SO_LINGER 0: an abortive close, the kernel says
    assert "SO_LINGER 0" in texts
    assert "smtplib.py turned it into smtplib.SMTPServerDisconnected (raised while handling it)" in texts


@pytest.mark.capture
def test_eof_fin_and_smtpserverdisconnected() -> None:
    data = run("eof")
    packets = _tcp(data)
    peer_port = packets[0]["dport"]
    fin = next(p for p in packets if "F" in p["flags"])
    assert fin["sport"] == peer_port and not any(p["payload"] for p in packets)  # the peer's FIN came first
    assert data["exception"]["type"] == "smtplib.SMTPServerDisconnected"
    assert data["exception"]["message"] == "Connection unexpectedly closed"
    eof = next(c for c in data["calls"] if c["op"].startswith("recv") and c["result"] == 0)
    assert eof["end_ns"] >= fin["time_ns"]  # the read that returned end-of-file came after the FIN
    # (which call the FIN is *paired* with depends on pairing.py: on a busy machine the FIN can arrive while
    # connect() is still returning, and pairing gives it to connect(); the lesson credits the read that saw it)
    closed = next(f for f in data["facts"] if f["kind"] == "tcp.closed")
    assert closed["first_role"] == "server" and closed["fin"] == fin["id"] and closed["sent_first"] == 0
    assert closed["eof_call"] == eof["id"] and closed["raised"] == "smtplib.SMTPServerDisconnected"
    assert "recv_into() at the client returned 0 bytes for it: end of file, and smtplib.py:" in _texts(data)


@pytest.mark.capture
def test_tls_client_hello_out_cleartext_220_back_and_wrong_version_number() -> None:
    data = run("tls")
    packets = _tcp(data)
    peer_port = packets[0]["dport"]
    hello = next(p for p in packets if p["dport"] == peer_port and p["payload"])
    raw = bytes.fromhex(hello["data"])
    assert raw[0] == 0x16 and raw[1] == 3 and raw[5] == 1  # a TLS handshake record carrying a ClientHello
    back = next(p for p in packets if p["sport"] == peer_port and p["payload"])
    assert bytes.fromhex(back["data"]).startswith(b"220 ")
    exc = data["exception"]
    assert exc["type"] == "ssl.SSLError" and "WRONG_VERSION_NUMBER" in exc["message"]
    texts = _texts(data)
    assert "sent a TLS ClientHello" in texts and "clear text: '220 " in texts
    assert "content type 0x32, version 0x3230" in texts
    hello_fact = next(f for f in data["facts"] if f["kind"] == "tls.hello")
    assert hello_fact["client"]["sockets"] and not hello_fact["server"]["sockets"] and hello_fact["reply"] == "not-tls"
    handshake = next(c for c in data["calls"] if c["op"] == "do_handshake")
    assert handshake["fault"]["namespace"] == "openssl" and handshake["fault"]["reason"] == "WRONG_VERSION_NUMBER"
    assert "EPERM" not in wirestack_text(data)


@pytest.mark.capture
def test_smtp_ok_every_segment_paired_and_the_reply_codes_on_the_wire() -> None:
    data = run("smtp-ok")
    assert data["exception"] is None and data["exit_code"] == 0
    segments = [p for p in _tcp(data) if p["payload"]]
    assert segments and all(p["calls"] for p in segments), [p["id"] for p in segments if not p["calls"]]
    calls = {c["id"]: c for c in data["calls"]}
    peer_port = _tcp(data)[0]["dport"]
    commands = {}
    for p in segments:
        if p["dport"] == peer_port:  # the program's commands: each sent by a sendall under its smtplib method
            call = calls[p["calls"][0]]
            assert call["op"] == "sendall"
            word = bytes.fromhex(p["data"]).split()[0].decode().lower()
            commands[word] = [f["function"] for f in call["frames"] if f["file"].endswith("smtplib.py")]
    assert commands["ehlo"][0] == "ehlo" and commands["mail"][0] == "mail" and commands["rcpt"][0] == "rcpt"
    assert commands["quit"][0] == "quit" and commands["data"][0] == "data"
    codes = [bytes.fromhex(p["data"])[:3].decode() for p in segments if p["sport"] == peer_port]
    assert {"220", "250", "354", "221"} <= set(codes)
    texts = _texts(data)
    assert re.search(r"commands and replies on the wire: \(on connecting\) → 220 #\d+, EHLO #\d+ → 250 #\d+, "
                     r"MAIL #\d+ → 250 #\d+, RCPT #\d+ → 250 #\d+, DATA #\d+ → 354 #\d+, \(message\) #\d+ → "
                     r"250 #\d+, QUIT #\d+ → 221 #\d+", texts)
    exchange = next(f for f in data["facts"] if f["kind"] == "app.exchange")
    replies = [line for line in exchange["segments"] if line[1][:1] in ("2", "3")]
    assert replies and all(line[4].startswith("read by recv_into() under smtplib.py ") for line in replies)
    assert all(line[4].startswith("sent by sendall() under smtplib.py ") for line in exchange["segments"]
               if line[1][:1] not in ("2", "3"))
    assert any("ehlo()" in line[4] for line in exchange["segments"])  # which smtplib method sent or read it


@pytest.mark.capture
def test_http_ok_request_and_response_with_request_and_getresponse() -> None:
    data = run("http-ok")
    assert data["exception"] is None and data["exit_code"] == 0
    calls = {c["id"]: c for c in data["calls"]}
    segments = [p for p in _tcp(data) if p["payload"]]
    request = next(p for p in segments if bytes.fromhex(p["data"]).startswith(b"GET / HTTP/1.1"))
    response = next(p for p in segments if bytes.fromhex(p["data"]).startswith(b"HTTP/1.0 200"))
    sender = calls[request["calls"][0]]
    assert sender["op"] == "sendall" and any(f["function"] == "request" for f in sender["frames"])
    assert all(p["calls"] for p in segments)
    texts = _texts(data)
    assert re.search(rf"#{response['id']} 'HTTP/1.0 200 OK' \(\d+ bytes\): read by recv_into\(\) under "
                     r"http/client.py getresponse\(\)", texts)
    assert f"GET / #{request['id']} → 200 #{response['id']}" in texts
    # HTTP/1.0: both sides close after the response; whose FIN comes first varies, and the report says which
    first_fin = next(p for p in _tcp(data) if "F" in p["flags"])
    peer_first = first_fin["sport"] == request["dport"]
    closed = next(f for f in data["facts"] if f["kind"] == "tcp.closed")
    assert closed["first_role"] == ("server" if peer_first else "client") and closed["fin"] == first_fin["id"]


@pytest.mark.capture
def test_a_given_port_for_a_closed_scenario_starts_no_peer_and_follows_the_data() -> None:
    # a POP3 server listens on the port the user chose: no refusal, and the report says what happened instead
    import threading

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(10)
        port = server.getsockname()[1]

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"+OK POP3 ready\r\n")

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        data = run("pop3", "--port", str(port))
        t.join(5)
    flags = [p["flags"] for p in _tcp(data)]
    assert flags[:3] == ["S", "SA", "A"] and "RA" not in flags[:3]
    assert data["exception"] is None and data["exit_code"] == 0
    texts = _texts(data)
    assert f"the server 127.0.0.1:{port}: SYN/ACK" in texts and "the handshake completed" in texts
    assert not any(f["kind"] == "tcp.refused" for f in data["facts"])
    assert "'+OK POP3 ready'" in texts and "(on connecting) → +OK" in texts


@pytest.mark.capture
def test_interrupting_a_scenario_stops_its_peer_and_keeps_the_capture(workdir: Path) -> None:
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "wirestack", "timeout", "--no-pcap", "--json", "cut.json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 10
        from leftovers import peer_pids

        while not peer_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # the client is waiting for its SYNs to be answered
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    data = json.loads((workdir / "cut.json").read_text())
    assert [p["flags"] for p in data["packets"]][:1] == ["S"]
