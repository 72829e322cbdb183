"""`wirestack smtp`: the seed experiment. smtplib connects to port 66000, where nothing can listen."""

from . import Scenario

SCENARIO = Scenario(
    name="smtp",
    lesson="smtplib.SMTP to port 66000: the port wraps to 464 and the kernel refuses with RST/ACK",
    default_host="127.0.0.1",
    default_port=66000,
    template="import smtplib\nsmtplib.SMTP({host!r}, port={port!r})\n",
)
