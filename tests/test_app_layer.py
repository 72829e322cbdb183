"""Application layer: tshark's fields to short labels (pure), a real run with SMTP, HTTP and TLS, and no tshark."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wirestack
from pcaps import A, pcap, tcp

from wirestack.core.dissect import dissect
from wirestack.record.tshark import FIELDS, NO_TSHARK, guess_ports, label, parse_fields

TARGETS = Path(__file__).parent / "targets"


@pytest.mark.parametrize("fields, text", [
    ({"smtp.response.code": "250", "smtp.rsp.parameter": "lab.example,SIZE 1000,HELP"},
     "SMTP 250 lab.example (+2 lines)"),
    ({"smtp.req.command": "EHLO", "smtp.req.parameter": "lab"}, "SMTP EHLO lab"),
    ({"http.request.method": "GET", "http.request.uri": "/x", "http.request.version": "HTTP/1.1"},
     "HTTP GET /x HTTP/1.1"),
    ({"http.response.code": "404", "http.response.phrase": "Not Found"}, "HTTP 404 Not Found"),
    ({"tls.record.content_type": "22", "tls.handshake.type": "1"}, "TLS ClientHello"),
    ({"tls.record.content_type": "22,20,23", "tls.handshake.type": "2"},
     "TLS ServerHello, ChangeCipherSpec, Application Data"),
    ({"tls.record.content_type": "21", "tls.alert_message.level": "2", "tls.alert_message.desc": "40"},
     "TLS Alert (fatal: handshake_failure)"),
    ({"dns.qry.name": "example.com", "dns.flags.response": "1", "dns.flags.rcode": "3"},
     "DNS response NXDOMAIN example.com"),
    ({}, ""),
])
def test_labels(fields: dict[str, str], text: str) -> None:
    assert label(fields) == text


def test_parse_fields_maps_frames_back_to_packet_ids() -> None:
    line = "\t".join(["2", "", "", "220", "ready"] + [""] * (len(FIELDS) - 5))
    assert parse_fields(line + "\nnot a row\n", [7, 9]) == {9: "SMTP 220 ready"}


def test_server_ports_are_guessed_from_payloads() -> None:
    server = ("127.0.0.1", 2525)
    banner = dissect(1, *tcp(0, server, A, "PA", seq=1, ack=1, payload=b"220 lab ESMTP ready\r\n"))
    hello = dissect(2, *tcp(0, A, ("127.0.0.1", 8443), "PA", payload=b"\x16\x03\x01\x00\x10\x01" + b"\0" * 10))
    get = dissect(3, *tcp(0, A, ("127.0.0.1", 8000), "PA", payload=b"GET / HTTP/1.1\r\n\r\n"))
    assert guess_ports([banner, hello, get]) == {("tcp", 2525): "smtp", ("tcp", 8443): "tls", ("tcp", 8000): "http"}


def _smtp_server() -> tuple[socket.socket, threading.Thread]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        conn, _ = srv.accept()
        with conn, conn.makefile("rb") as f:
            conn.sendall(b"220 lab.example ESMTP ready\r\n")
            for line in f:
                if line.upper().startswith(b"EHLO"):
                    conn.sendall(b"250-lab.example\r\n250 HELP\r\n")
                elif line.upper().startswith(b"QUIT"):
                    conn.sendall(b"221 bye\r\n")
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return srv, thread


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[int, int, int]]:
    smtp, smtp_thread = _smtp_server()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=httpd.handle_request, daemon=True).start()
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    tls = socket.socket()
    tls.bind(("127.0.0.1", 0))
    tls.listen()

    def serve_tls() -> None:
        conn, _ = tls.accept()
        with ctx.wrap_socket(conn, server_side=True) as t:
            t.sendall(t.recv(100).upper())

    threading.Thread(target=serve_tls, daemon=True).start()
    try:
        yield smtp.getsockname()[1], httpd.server_address[1], tls.getsockname()[1]
    finally:
        smtp.close()
        httpd.server_close()
        tls.close()


@pytest.mark.capture
def test_a_run_labels_smtp_http_and_tls(workdir: Path, servers: tuple[int, int, int]) -> None:
    done = wirestack("run", "--json", "r.json", "-w", "r.pcapng", "--no-color", "--width", "160",
                     str(TARGETS / "app_client.py"), *map(str, servers))
    assert done.returncode == 0, done.stderr
    data = json.loads(Path("r.json").read_text())
    apps = [p["app"] for p in data["packets"] if p["app"]]
    assert "SMTP 220 lab.example ESMTP ready" in apps and "SMTP ehlo lab" in apps  # as smtplib spells it
    assert "SMTP 250 lab.example (+1 lines)" in apps
    assert "HTTP GET /missing HTTP/1.1" in apps and "HTTP 404 File not found" in apps
    assert any(a.startswith("TLS ClientHello") for a in apps) and any(a.startswith("TLS ServerHello") for a in apps)
    assert all(p["app"] is None for p in data["packets"] if not p["payload"])
    assert "SMTP 220 lab.example ESMTP ready" in done.stderr  # shown in the report (stderr under `run`)
    assert NO_TSHARK not in data["notes"]
    again = json.loads(wirestack("read", "r.pcapng", "--json", "-").stdout)
    assert again == data  # the labels travel inside the file


def test_without_tshark_one_note_and_no_crash(workdir: Path, tmp_path: Path) -> None:
    payload = tcp(0, A, ("127.0.0.1", 8000), "PA", payload=b"GET / HTTP/1.1\r\n\r\n")
    (workdir / "web.pcap").write_bytes(pcap([payload]))
    bare = tmp_path / "bin"
    bare.mkdir()
    os.symlink(sys.executable, bare / "python3")
    assert shutil.which("tshark", path=str(bare)) is None
    done = wirestack("read", "web.pcap", "--no-color", env={"PATH": str(bare)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("tshark is not installed") == 1 and "Traceback" not in done.stderr
    data = json.loads(wirestack("read", "web.pcap", "--json", "-", env={"PATH": str(bare)}).stdout)
    assert data["notes"] == [NO_TSHARK] and data["packets"][0]["app"] is None
    with_tshark = json.loads(wirestack("read", "web.pcap", "--json", "-").stdout)
    assert with_tshark["packets"][0]["app"] == "HTTP GET / HTTP/1.1" and with_tshark["notes"] == []
