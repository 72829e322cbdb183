"""Talks SMTP, HTTP and TLS to the test's servers (ports in argv), so the capture has all three."""

import smtplib
import socket
import ssl
import sys
import urllib.request

smtp_port, http_port, tls_port = (int(a) for a in sys.argv[1:4])
with smtplib.SMTP("127.0.0.1", smtp_port) as s:
    s.ehlo("lab")
try:
    urllib.request.urlopen(f"http://127.0.0.1:{http_port}/missing")
except urllib.error.HTTPError as exc:
    print("http", exc.code)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(("127.0.0.1", tls_port)) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as t:
    t.sendall(b"hello")
    print(t.recv(100))
