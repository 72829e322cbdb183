"""Both ends in one process: aiosmtpd's Controller (a thread) without STARTTLS, and smtplib asking for it.

The Controller first opens a connection of its own to make sure the server runs (it reads the banner and
closes: the first connection on the wire is the server thread's self-check, not the client's). Then the client
says EHLO; the reply lists no STARTTLS; smtplib.starttls() raises SMTPNotSupportedError without sending
anything. The `with` block then sends QUIT.

Wire: two connections to the same port; on the client's: banner, EHLO, the 250 reply (no STARTTLS), QUIT, 221.
"""

import smtplib
import socket

from aiosmtpd.controller import Controller

PEER = None
PEER_OPTS: dict[str, object] = {}
WHERE = "in-process"
EXPECT_EXIT = 1
EXCEPTION = "smtplib.SMTPNotSupportedError"
LIBRARY = "aiosmtpd"
CLASSES = ("starttls", "both-ends")
MIN_PYTHON = (3, 10)


class Sink:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    controller = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=5) as smtp:
            smtp.ehlo("app.example.test")
            smtp.starttls()
            smtp.sendmail("app@example.test", ["user@example.test"], "Subject: hi\r\n\r\nsecret\r\n")
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
