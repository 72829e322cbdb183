import socket
import sys

print("module argv:", sys.argv[1:])
socket.create_connection(("127.0.0.1", int(sys.argv[1])))
