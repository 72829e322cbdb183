import os
import signal
import socket
import sys

try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])))
except OSError:
    pass
os.kill(os.getpid(), signal.SIGKILL)
