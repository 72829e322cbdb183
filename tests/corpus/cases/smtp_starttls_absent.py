"""smtplib.starttls() against a server whose EHLO reply does not offer STARTTLS.

The EHLO exchange happens on the wire; the reply's extension lines have no STARTTLS, so starttls() raises
SMTPNotSupportedError without sending a STARTTLS command. Leaving the `with` block sends QUIT.

Wire: banner 220; EHLO; the multi-line 250 (no STARTTLS); QUIT; 221; FINs.
"""

import smtplib
import sys

PEER = "smtp"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 1
EXCEPTION = "smtplib.SMTPNotSupportedError"
LIBRARY = "smtplib"
CLASSES = ("starttls",)
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.starttls()
        smtp.login("app", "s3cret")
        smtp.sendmail("app@example.test", ["user@example.test"], "Subject: invoice\r\n\r\nattached\r\n")


if __name__ == "__main__":
    main(int(sys.argv[1]))
