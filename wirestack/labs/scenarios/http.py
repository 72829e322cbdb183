"""`wirestack http`: urlopen to a port where nothing listens. One refusal, four layers, and a wrapper."""

from . import Scenario

SCENARIO = Scenario(
    name="http",
    lesson="urlopen to a closed port: one RST/ACK under urllib, http.client and socket, wrapped in URLError",
    default_host="127.0.0.1",
    default_port=None,
    peer="closed",
    template="import urllib.request\nurllib.request.urlopen({url!r}, timeout={timeout!r})\n",
)
