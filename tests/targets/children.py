"""A subprocess (not traced) and a forked child (traced) each make a refused connect."""
import os
import socket
import subprocess
import sys

port = int(sys.argv[1])
code = f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}))\nexcept OSError:\n    pass"
subprocess.run([sys.executable, "-c", code], check=True)
pid = os.fork()
if pid == 0:
    try:
        socket.create_connection(("127.0.0.1", port))
    except OSError:
        pass
    os._exit(0)
os.waitpid(pid, 0)
