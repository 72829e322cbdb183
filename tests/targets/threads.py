"""The refusal happens in a worker thread and is re-raised in the main thread by Future.result()."""
import socket
import sys
from concurrent.futures import ThreadPoolExecutor


def fetch(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port))


with ThreadPoolExecutor(thread_name_prefix="fetcher") as pool:
    future = pool.submit(fetch, int(sys.argv[1]))
    future.result()
