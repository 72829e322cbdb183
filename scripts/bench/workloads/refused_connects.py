"""Workload: N refused TCP connects, one after the other (a new socket each, to a port nothing listens on).
Two packets each: SYN, RST/ACK.  python refused_connects.py N [CAP_SECONDS]"""

import socket
import time

from _support import LOCAL, arguments, closed_port, finish

n, deadline = arguments()
target = (LOCAL, closed_port())
done = refused = 0
start = time.perf_counter()
while done < n and time.monotonic() < deadline:
    with socket.socket() as s:
        try:
            s.connect(target)
        except ConnectionRefusedError:
            refused += 1
    done += 1
finish("refused_connects", n, done, refused, time.perf_counter() - start)
