"""Both ends in one process: http.server in a thread whose handler crashes, and urllib.request as the client.

The handler raises before writing a response; socketserver prints the server-side traceback ("Exception
occurred during processing of request") and closes the connection: FIN from the server thread. The client
(main thread) then reads EOF: http.client.RemoteDisconnected. Both tracebacks are on stderr; the program's
exit comes from the client's.

Wire: handshake; GET; the server's FIN (first, from the server end of this same process); the client's FIN.
"""

import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PEER = None
PEER_OPTS: dict[str, object] = {}
WHERE = "in-process"
EXPECT_EXIT = 1
EXCEPTION = "http.client.RemoteDisconnected"
LIBRARY = "http.server"
CLASSES = ("close", "both-ends")
MIN_PYTHON = (3, 10)

PRICES = {"apple": 3}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        item = self.path.strip("/")
        price = PRICES[item]  # KeyError for an unknown item: the handler dies before answering
        body = f"{price}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/banana", timeout=5) as response:
            print(response.read().decode())
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
