"""Peers on their own: each kind gets ready (a real barrier), does its one thing, and goes away when asked or
when the process that started it disappears."""

from __future__ import annotations

import http.client
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import time

import pytest
from leftovers import ROOT, no_peer_left_behind, peer_pids  # noqa: F401 (the fixture is used by name)

from wirestack.labs.peers import BANNER, KINDS, PAGE, PeerError, accept_queue, running


def test_closed_refuses_and_reserves_the_port() -> None:
    with running("closed", "127.0.0.1", 0) as port:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) == 111
        with socket.socket() as s:  # the port is held: nothing else can bind it meanwhile
            with pytest.raises(OSError):
                s.bind(("127.0.0.1", port))


def test_closed_udp_port_answers_with_icmp() -> None:
    with running("closed-udp", "127.0.0.1", 0) as port, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.connect(("127.0.0.1", port))
        s.send(b"x")
        with pytest.raises(ConnectionRefusedError):
            s.recv(10)


def test_backlog_queue_is_full_and_drops_syns() -> None:
    with running("backlog", "127.0.0.1", 0) as port, socket.socket() as s:
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):
            s.connect(("127.0.0.1", port))


def test_accept_queue_reads_tcp_info() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(3)
        assert accept_queue(listener) == (0, 3)


def test_reset_greets_reads_and_aborts() -> None:
    with running("reset", "127.0.0.1", 0) as port, socket.create_connection(("127.0.0.1", port), 2) as s:
        assert s.recv(100) == BANNER
        s.sendall(b"ehlo x\r\n")
        with pytest.raises(ConnectionResetError):
            for _ in range(20):
                if not s.recv(100):
                    break


def test_eof_closes_at_once() -> None:
    with running("eof", "127.0.0.1", 0) as port, socket.create_connection(("127.0.0.1", port), 2) as s:
        assert s.recv(100) == b""


def test_banner_then_reads_until_the_client_closes() -> None:
    with running("banner", "127.0.0.1", 0) as port, socket.create_connection(("127.0.0.1", port), 2) as s:
        assert s.recv(100) == BANNER
        s.sendall(b"\x16\x03\x01 not really TLS")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0))


def test_smtp_is_a_real_smtp_server() -> None:
    with running("smtp", "127.0.0.1", 0) as port:
        smtp = smtplib.SMTP("127.0.0.1", port, local_hostname="test.client", timeout=5)
        assert smtp.ehlo()[0] == 250
        assert smtp.sendmail("a@example.org", ["b@example.org"], "Subject: t\r\n\r\nhi\r\n") == {}
        assert smtp.quit()[0] == 221


def test_http_serves_a_page_on_ipv6_too() -> None:
    for host in ("127.0.0.1", "::1"):
        with running("http", host, 0) as port:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", "/")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, PAGE)
            conn.close()


def test_a_given_port_is_used() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with running("eof", "127.0.0.1", free) as port:
        assert port == free


@pytest.mark.parametrize("kind, host, port, words", [
    ("closed", "192.0.2.1", 0, "peers listen on loopback only, and 192.0.2.1 is not a loopback address"),
    ("http", "no-such-host.invalid", 0, "cannot resolve .no-such-host.invalid.: \\w"),
    ("nonsense", "127.0.0.1", 0, "unknown peer kind"),
])
def test_bad_peers_are_one_line_errors(kind: str, host: str, port: int, words: str) -> None:
    with pytest.raises(PeerError, match=words):
        with running(kind, host, port):
            pass


@pytest.mark.parametrize("kind", ["reset", "smtp", "http"])
def test_a_port_in_use_is_an_error_not_a_hang(kind: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PeerError, match=f"cannot bind 127.0.0.1 port {port}: Address already in use"):
            with running(kind, "127.0.0.1", port):
                pass


def test_every_kind_starts_and_stops_quickly() -> None:
    for kind in KINDS:
        t = time.monotonic()
        with running(kind, "127.0.0.1", 0) as port:
            assert 0 < port < 65536
        assert time.monotonic() - t < 3.0, kind


def test_the_peer_goes_when_its_parent_does() -> None:
    # the CLI died without stopping it (SIGKILL): the peer's stdin closes and it leaves on its own
    parent = subprocess.Popen([sys.executable, "-c", f"import sys, time; sys.path.insert(0, {ROOT!r}); "
                               "from wirestack.labs.peers import running\n"
                               "with running('http', '127.0.0.1', 0) as p:\n"
                               "    print(p, flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip().isdigit()
        assert peer_pids()
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
    finally:
        parent.kill()
        if parent.stdout is not None:
            parent.stdout.close()
    # the no_peer_left_behind fixture checks that it is gone within 2 s


def test_sigterm_exits_cleanly_with_status_0() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "wirestack.labs.peers", "smtp", "127.0.0.1", "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith(b"ready ")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=5)
    finally:
        proc.kill()
    assert proc.returncode == 0 and err == b""


def test_usage_errors() -> None:
    done = subprocess.run([sys.executable, "-m", "wirestack.labs.peers", "http", "127.0.0.1", "70000"],
                          capture_output=True, text=True, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=10)
    assert done.returncode == 2 and done.stdout.startswith("error usage: python -m wirestack.labs.peers")
