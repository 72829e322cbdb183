"""Both ends in one process: an IMAPS server thread (TLS 1.3) that requires a client certificate, and
imaplib.IMAP4_SSL with a context that trusts the server's certificate but has no certificate of its own.

In TLS 1.3 the client finishes its side of the handshake before the server has judged it, so the handshake
"succeeds" for the client and it waits for the IMAP greeting. The server thread's handshake fails instead (no
client certificate): it sends a certificate_required alert, encrypted, and closes (RST: part of the client's
last flight is still unread). The client's read of the greeting decrypts the alert: ssl.SSLError
(TLSV13_ALERT_CERTIFICATE_REQUIRED). The server thread's own failure stays inside the thread.

Why a server-speaks-first protocol: had the client written first (HTTP), its write would race the server's
RST, and the error would sometimes be SSLEOFError from the write instead (measured: about half the runs).

Wire: ClientHello; ServerHello and encrypted records; the client's ChangeCipherSpec and encrypted
Certificate/Finished; the server's encrypted alert (24 bytes); the server's RST. Both endpoints are this process.
"""

import imaplib
import ssl
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository, for tests.corpus.peers

from tests.corpus.peers import certificate, in_thread  # noqa: E402

PEER = None
PEER_OPTS: dict[str, object] = {}
WHERE = "in-process"
EXPECT_EXIT = 1
EXCEPTION = "ssl.SSLError"
LIBRARY = "imaplib"
CLASSES = ("tls", "server-alert", "both-ends")
MIN_PYTHON = (3, 10)


def main() -> None:
    port, stop = in_thread("tls", client_cert="required", greeting="* OK [CAPABILITY IMAP4rev1] ready\r\n")
    try:
        context = ssl.create_default_context(cafile=certificate()[0])
        with imaplib.IMAP4_SSL("localhost", port, ssl_context=context, timeout=5) as mail:
            mail.login("app", "s3cret")
            print(mail.select("INBOX"))
    finally:
        stop()


if __name__ == "__main__":
    main()
