"""Workload: N UDP datagrams (32 bytes, `sendto` from one unconnected socket) to a port nothing is bound to; the
kernel answers each with ICMP port unreachable, which an unconnected socket is never told of. Two packets each
(unless the kernel rate-limits ICMP).  python udp_closed_port.py N [CAP_SECONDS]"""

import socket
import time

from _support import LOCAL, arguments, closed_port, finish

n, deadline = arguments()
target = (LOCAL, closed_port(socket.SOCK_DGRAM))
payload = b"x" * 32
done = sent = 0
start = time.perf_counter()
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    while done < n and time.monotonic() < deadline:
        sent += s.sendto(payload, target) == len(payload)
        done += 1
finish("udp_closed_port", n, done, sent, time.perf_counter() - start)
