"""urllib.request.urlopen to a refusing port; the program catches URLError and exits 0.

A health check that degrades gracefully: the refusal is handled, so there is no traceback, but the failed
connect() is still there on the wire.

Wire: one SYN, one RST/ACK.
"""

import sys
import urllib.error
import urllib.request

PEER = "closed"
PEER_OPTS: dict[str, object] = {}
WHERE = "external"
EXPECT_EXIT = 0
EXCEPTION = None
LIBRARY = "urllib"
CLASSES = ("refusal", "caught")
MIN_PYTHON = (3, 10)


def main(port: int) -> None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as response:
            print("up:", response.status)
    except urllib.error.URLError as exc:
        print(f"service down, using the cached copy ({exc.reason})")


if __name__ == "__main__":
    main(int(sys.argv[1]))
