"""`wirestack timeout`: the peer listens but its accept queue is full, so its kernel drops every SYN."""

from . import Scenario

SCENARIO = Scenario(
    name="timeout",
    lesson="a listener with a full accept queue: the SYN goes unanswered and is retransmitted until the timeout",
    default_host="127.0.0.1",
    default_port=None,
    peer="backlog",
    timeout=3.5,  # the SYN and its retransmissions at ~1, ~2, ~3 s (Linux >= 6.7) or ~1, ~3 s (older): no race
    template="import smtplib\nsmtplib.SMTP({host!r}, {port!r}, timeout={timeout!r})\n",
)
