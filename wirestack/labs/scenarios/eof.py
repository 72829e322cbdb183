"""`wirestack eof`: the peer accepts and closes at once; smtplib waits for a greeting and reads end-of-file."""

from . import Scenario

SCENARIO = Scenario(
    name="eof",
    lesson="a peer that accepts and closes at once: its FIN is end-of-file to smtplib, SMTPServerDisconnected",
    default_host="127.0.0.1",
    default_port=None,
    peer="eof",
    template=("import smtplib\n"
              "smtplib.SMTP({host!r}, {port!r}, local_hostname='client.wirestack', timeout={timeout!r})\n"),
)
