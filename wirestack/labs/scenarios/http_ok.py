"""`wirestack http-ok`: an HTTP GET that works, against http.server on loopback."""

from . import Scenario

SCENARIO = Scenario(
    name="http-ok",
    lesson="an http.client GET that works: the request sent under request(), the response read under getresponse()",
    default_host="127.0.0.1",
    default_port=None,
    peer="http",
    template=("import http.client\n"
              "conn = http.client.HTTPConnection({host!r}, {port!r}, timeout={timeout!r})\n"
              "conn.request('GET', '/')\n"
              "body = conn.getresponse().read()\n"
              "conn.close()\n"),
)
