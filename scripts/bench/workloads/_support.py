"""What the scaling workloads share: arguments, a closed port, a server in a subprocess, the result line.

A workload is `python NAME.py SIZE [CAP_SECONDS]`: it does SIZE units of work (fewer if CAP_SECONDS, default 300,
runs out), then prints one JSON line {"workload", "n", "done", "ok", "seconds"} (seconds: its own loop) and exits
0 if every unit came out as expected, 1 otherwise. Traffic goes to 127.0.0.1 only.

Servers run in a subprocess, not a thread, so that the traced program is the client alone: the server's
interpreter runs isolated (`-I`: no PYTHONPATH, so wirestack's start-up hook, which follows Python children,
does not load in it), and it renames itself (comm "bench-server") before it opens a socket, so the kernel
tracepoints (which select the interpreter's comm) skip it too. A server exits when its stdin closes (the client
is gone) or when its alarm (the cap plus a minute) rings.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

LOCAL = "127.0.0.1"
MAX_SIZE = 10_000_000

SERVER_PRELUDE = '''\
import ctypes, os, signal, socket, sys, threading
ctypes.CDLL(None).prctl(15, b"bench-server", 0, 0, 0)  # PR_SET_NAME (threads inherit it)
signal.alarm(int(sys.argv[1]))
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
'''


def arguments() -> tuple[int, float]:
    """(size, deadline on time.monotonic()) from argv."""
    if not 2 <= len(sys.argv) <= 3 or not sys.argv[1].isdigit() or not 1 <= int(sys.argv[1]) <= MAX_SIZE:
        sys.exit(f"usage: {sys.argv[0]} SIZE [CAP_SECONDS] (SIZE 1..{MAX_SIZE:,})")
    cap = float(sys.argv[2]) if len(sys.argv) == 3 else 300.0
    return int(sys.argv[1]), time.monotonic() + cap


def closed_port(kind: int = socket.SOCK_STREAM) -> int:
    """A loopback port nothing listens on: bound by us a moment ago, then closed."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOCAL, 0))
        port: int = s.getsockname()[1]
    return port


def start_server(body: str, cap_s: float) -> tuple[subprocess.Popen[str], int]:
    """Run `body` (after SERVER_PRELUDE) in a child interpreter; it must print its port first. Returns (child,
    port); the caller closes child.stdin when done (or simply exits)."""
    child = subprocess.Popen([sys.executable, "-I", "-c", SERVER_PRELUDE + body, str(int(cap_s) + 60)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.strip().isdigit():
        child.kill()
        sys.exit(f"{sys.argv[0]}: the server did not start (it said {line!r})")
    return child, int(line)


def finish(name: str, n: int, done: int, ok: int, seconds: float) -> None:
    print(json.dumps({"workload": name, "n": n, "done": done, "ok": ok, "seconds": round(seconds, 4)}), flush=True)
    if done < n:
        print(f"{name}: stopped by the wall-clock cap after {done:,} of {n:,}", file=sys.stderr)
    sys.exit(0 if ok == n else 1)
