"""`wirestack timeout`: the peer listens but its accept queue is full, so its kernel drops every SYN."""

from . import Scenario

SCENARIO = Scenario(
    name="timeout",
    lesson="smtplib to a listener whose accept queue is full: no answer, so the kernel retransmits the SYN "
           "(first after ~1 s) until the client's timeout; the report measures the spacing",
    default_host="127.0.0.1",
    default_port=None,
    peer="backlog",
    timeout=3.5,  # the SYN and its retransmissions at ~1, ~2, ~3 s (Linux >= 6.7) or ~1, ~3 s (older): no race
    template="import smtplib\nsmtplib.SMTP({host!r}, {port!r}, timeout={timeout!r})\n",
)
