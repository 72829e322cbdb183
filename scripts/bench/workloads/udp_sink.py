"""Workload: N UDP datagrams (32 bytes, `sendto` from one unconnected socket) to a sink that reads them (in a
subprocess, not traced). One packet each.  python udp_sink.py N [CAP_SECONDS]"""

import socket
import time

from _support import LOCAL, arguments, finish, start_server

SINK = f'''
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
sink.bind(("{LOCAL}", 0))
print(sink.getsockname()[1], flush=True)
while True:
    sink.recv(2048)
'''

n, deadline = arguments()
server, port = start_server(SINK, deadline - time.monotonic())
payload = b"x" * 32
done = sent = 0
start = time.perf_counter()
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    while done < n and time.monotonic() < deadline:
        sent += s.sendto(payload, (LOCAL, port)) == len(payload)
        done += 1
finish("udp_sink", n, done, sent, time.perf_counter() - start)
