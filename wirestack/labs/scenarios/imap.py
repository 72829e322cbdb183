"""`wirestack imap`: imaplib connects to a port where nothing listens."""

from . import Scenario

SCENARIO = Scenario(
    name="imap",
    lesson="imaplib.IMAP4 to a closed port: the same refusal, under imaplib's own frames",
    default_host="127.0.0.1",
    default_port=None,
    peer="closed",
    template="import imaplib\nimaplib.IMAP4({host!r}, {port!r}, timeout={timeout!r})\n",
)
