"""Workload: N threads, each making one refused connect (`socket.create_connection`), started in batches of
BATCH (at most BATCH threads alive at once, so that 2 CPUs are not swamped).
python threads_connects.py N [CAP_SECONDS]"""

import socket
import threading
import time

from _support import LOCAL, arguments, closed_port, finish

BATCH = 200

n, deadline = arguments()
target = (LOCAL, closed_port())
refused: list[bool] = []  # list.append is atomic


def one() -> None:
    try:
        socket.create_connection(target, timeout=30).close()
    except ConnectionRefusedError:
        refused.append(True)


done = 0
start = time.perf_counter()
while done < n and time.monotonic() < deadline:
    batch = [threading.Thread(target=one) for _ in range(min(BATCH, n - done))]
    for t in batch:
        t.start()
    for t in batch:
        t.join()
    done += len(batch)
finish("threads_connects", n, done, len(refused), time.perf_counter() - start)
