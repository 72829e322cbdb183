"""Error names and the header `#define` lines that define them, for every namespace a `Fault` may be in. Pure.

    namespace  header(s)                                         names
    errno      /usr/include/asm-generic/errno-base.h, errno.h    E*
    eai        /usr/include/netdb.h                              EAI_*
    h_errno    /usr/include/netdb.h                              HOST_NOT_FOUND, TRY_AGAIN, NO_RECOVERY, NO_DATA
    openssl    /usr/include/openssl/ssl.h                        SSL_ERROR_*
"""

from __future__ import annotations

import errno as _errno
import re

HEADERS = {
    "errno": ("/usr/include/asm-generic/errno-base.h", "/usr/include/asm-generic/errno.h"),
    "eai": ("/usr/include/netdb.h",),
    "h_errno": ("/usr/include/netdb.h",),
    "openssl": ("/usr/include/openssl/ssl.h",),
}
_PREFIX = {"errno": re.compile(r"E[A-Z0-9]+$"), "eai": re.compile(r"EAI_[A-Z_]+$"),
           "h_errno": re.compile(r"(HOST_NOT_FOUND|TRY_AGAIN|NO_RECOVERY|NO_DATA)$"),
           "openssl": re.compile(r"SSL_ERROR_[A-Z_]+$")}
_DEFINE = re.compile(r"^#\s*define\s+(\w+)\s+(-?\d+)\b")


def name(number: int) -> str:
    """ECONNREFUSED for 111; 'errno 999' for numbers this system does not name (kernel errnos only)."""
    return _errno.errorcode.get(number, f"errno {number}")


def key(namespace: str, code: int) -> str:
    """How a trace files a define: 'errno:111', 'eai:-2'."""
    return f"{namespace}:{code}"


def parse_defines(text: str, namespace: str = "errno") -> dict[int, str]:
    """number -> its `#define` line, for the names of `namespace`, from the text of a header. Pure."""
    wanted = _PREFIX[namespace]
    out: dict[int, str] = {}
    for line in text.splitlines():
        m = _DEFINE.match(line)
        if m and wanted.match(m.group(1)):
            out.setdefault(int(m.group(2)), " ".join(line.split()))
    return out
