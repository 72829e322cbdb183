"""smtplib: the server greets (220) and closes at once.

smtplib.SMTP() reads the banner happily; sendmail() sends EHLO into a connection the server already closed
(its kernel answers with RST) and the reply read gets EOF: SMTPServerDisconnected("Connection unexpectedly
closed"). The server closed first.

Wire: handshake; the 220 banner; the server's FIN; EHLO from the client; the server's RST.
"""

import smtplib
import sys

PEER = "smtp_drop"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "smtplib.SMTPServerDisconnected"
LIBRARY = "smtplib"
CLASSES = ("close", "peer-closes-first")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    message = "Subject: nightly report\r\n\r\nAll jobs finished.\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.sendmail("reports@example.test", ["ops@example.test"], message)


if __name__ == "__main__":
    main(int(sys.argv[1]))
