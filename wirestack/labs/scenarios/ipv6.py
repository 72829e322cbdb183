"""`wirestack ipv6`: the seed refusal over IPv6 (::1)."""

from . import Scenario

SCENARIO = Scenario(
    name="ipv6",
    lesson="smtplib to a closed port on ::1: the same refusal as over IPv4, in IPv6 packets",
    default_host="::1",
    default_port=None,
    peer="closed",
    template="import smtplib\nsmtplib.SMTP({host!r}, {port!r}, timeout={timeout!r})\n",
)
