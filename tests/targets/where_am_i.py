"""What Python tells a program about itself (wirestack must not change it), then a refused connect that escapes."""
import linecache
import socket
import sys

print("file:", __file__)
print("loader:", type(__loader__).__name__, "spec:", __spec__ is None, "name:", __name__)
print("argv:", sys.argv)
print("path0:", sys.path[0])
print("cached:", sorted(k for k in linecache.cache if k.startswith("<")))
print("module:", type(sys.modules["__main__"]).__name__)
socket.create_connection(("127.0.0.1", int(sys.argv[1])))
