"""`wirestack pop3`: poplib connects to a port where nothing listens."""

from . import Scenario

SCENARIO = Scenario(
    name="pop3",
    lesson="poplib.POP3 to a closed port: the same refusal, under poplib's own frames",
    default_host="127.0.0.1",
    default_port=None,
    peer="closed",
    template="import poplib\npoplib.POP3({host!r}, {port!r}, timeout={timeout!r})\n",
)
