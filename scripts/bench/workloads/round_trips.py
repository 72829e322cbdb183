"""Workload: N round trips (`sendall` of 64 bytes, `recv` until echoed) on one TCP connection (TCP_NODELAY) to
an echo server in a subprocess, not traced. Only the loop is timed.  python round_trips.py N [CAP_SECONDS]"""

import socket
import sys
import time

from _support import LOCAL, arguments, finish, start_server

ECHO = f'''
listener = socket.create_server(("{LOCAL}", 0))
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
'''

n, deadline = arguments()
server, port = start_server(ECHO, deadline - time.monotonic())
message = bytes(range(64))
sock = socket.create_connection((LOCAL, port), timeout=30)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
done = ok = 0
start = time.perf_counter()
while done < n and time.monotonic() < deadline:
    sock.sendall(message)
    data = sock.recv(len(message))
    while len(data) < len(message):
        more = sock.recv(len(message) - len(data))
        if not more:
            sys.exit("round_trips: the echo server closed the connection")
        data += more
    ok += data == message
    done += 1
seconds = time.perf_counter() - start
sock.close()
finish("round_trips", n, done, ok, seconds)
