import os
import socket
import sys

print(f"uid={os.getuid()} gid={os.getgid()} home={os.environ.get('HOME')}")
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])))
except OSError:
    pass
