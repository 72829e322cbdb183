"""`wirestack reset`: the peer greets, reads the client's first command, then aborts (SO_LINGER 0)."""

from . import Scenario

SCENARIO = Scenario(
    name="reset",
    lesson="a peer that aborts after reading: RST, ConnectionResetError (104) in smtplib's read, "
           "SMTPServerDisconnected",
    default_host="127.0.0.1",
    default_port=None,
    peer="reset",
    template=("import smtplib\n"
              "smtp = smtplib.SMTP({host!r}, {port!r}, local_hostname='client.wirestack', timeout={timeout!r})\n"
              "smtp.ehlo()\n"),
)
