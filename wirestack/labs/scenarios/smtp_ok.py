"""`wirestack smtp-ok`: a whole SMTP session that works, against a real SMTP server (aiosmtpd) on loopback."""

from . import Scenario

SCENARIO = Scenario(
    name="smtp-ok",
    lesson="a whole smtplib session that works: each segment with the call that sent or read it, and the reply codes",
    default_host="127.0.0.1",
    default_port=None,
    peer="smtp",
    template=("import smtplib\n"
              "smtp = smtplib.SMTP({host!r}, {port!r}, local_hostname='client.wirestack', timeout={timeout!r})\n"
              "smtp.ehlo()\n"
              "smtp.mail('teacher@example.org')\n"
              "smtp.rcpt('class@example.org')\n"
              "smtp.data(b'Subject: hello\\r\\n\\r\\nSent through wirestack.\\r\\n')\n"
              "smtp.quit()\n"),
)
