"""Connected UDP: the send succeeds, the ICMP port unreachable makes the later recv fail."""
import socket
import sys
import time

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.send(b"ping")
time.sleep(0.05)
s.recv(100)
