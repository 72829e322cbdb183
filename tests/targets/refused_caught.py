"""Catches the refusal, logs it, exits 0: the failed call must still be reported."""
import socket
import sys

port = int(sys.argv[1])
try:
    socket.create_connection(("127.0.0.1", port))
except ConnectionRefusedError as exc:
    print(f"logged: {exc}", file=sys.stderr)
print("argv:", sys.argv[1:], "name:", __name__)
