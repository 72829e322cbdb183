"""gevent (monkey-patched): a refused connect that is caught, then a short exchange with a local server, then a
refused connect that escapes. argv[1]: a closed port; argv[2]: a port where a server answers "PONG"."""
from gevent import monkey

monkey.patch_all()

import socket  # noqa: E402
import sys  # noqa: E402

closed, open_port = int(sys.argv[1]), int(sys.argv[2])
try:
    socket.create_connection(("127.0.0.1", closed))
except OSError as exc:
    print("caught:", exc.errno)
with socket.create_connection(("127.0.0.1", open_port)) as sock:
    sock.sendall(b"PING\r\n")
    print("got:", sock.recv(100))
socket.create_connection(("127.0.0.1", closed))
