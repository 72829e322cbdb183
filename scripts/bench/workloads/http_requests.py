"""Workload: N sequential GET requests with http.client (a new HTTPConnection each, as a typical client does) to
an http.server (HTTP/1.0, body "ok\n", logging silenced) in a subprocess, not traced.
python http_requests.py N [CAP_SECONDS]"""

import http.client
import time

from _support import LOCAL, arguments, finish, start_server

SERVER = f'''
import http.server


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


server = http.server.ThreadingHTTPServer(("{LOCAL}", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
'''

n, deadline = arguments()
server, port = start_server(SERVER, deadline - time.monotonic())
done = ok = 0
start = time.perf_counter()
while done < n and time.monotonic() < deadline:
    conn = http.client.HTTPConnection(LOCAL, port, timeout=30)
    conn.request("GET", "/")
    response = conn.getresponse()
    ok += response.status == 200 and response.read() == b"ok\n"
    conn.close()
    done += 1
finish("http_requests", n, done, ok, time.perf_counter() - start)
