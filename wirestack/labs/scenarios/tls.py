"""`wirestack tls`: SMTP_SSL talks TLS to a peer that greets in plain text."""

from . import Scenario

SCENARIO = Scenario(
    name="tls",
    lesson="SMTP_SSL to a plain-text peer: ClientHello out, \"220\" back in clear text, SSL WRONG_VERSION_NUMBER",
    default_host="127.0.0.1",
    default_port=None,
    peer="banner",
    template=("import smtplib\n"
              "smtplib.SMTP_SSL({host!r}, {port!r}, local_hostname='client.wirestack', timeout={timeout!r})\n"),
)
