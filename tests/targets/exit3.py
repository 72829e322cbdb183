import socket
import sys

s = socket.socket()
if s.connect_ex(("127.0.0.1", int(sys.argv[1]))):
    sys.exit(3)
