"""Recognising application protocols in payloads: TLS records, DNS messages, text protocols (SMTP, HTTP, POP3,
IMAP, FTP, RESP). Pure, and tolerant: a payload that is not what it looks like gives None, never an error.

One place for every recogniser, so that the traced report, `wirestack read` of a plain capture and the
application layer say the same of the same bytes.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

TLS_TYPES = {20: "ChangeCipherSpec", 21: "Alert", 22: "Handshake", 23: "Application Data", 24: "Heartbeat"}
HANDSHAKES = {0: "HelloRequest", 1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket", 5: "EndOfEarlyData",
              8: "EncryptedExtensions", 11: "Certificate", 12: "ServerKeyExchange", 13: "CertificateRequest",
              14: "ServerHelloDone", 15: "CertificateVerify", 16: "ClientKeyExchange", 20: "Finished",
              24: "KeyUpdate"}
ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
          40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
          45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
          49: "access_denied", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
          71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
          109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name",
          113: "bad_certificate_status_response", 116: "certificate_required", 120: "no_application_protocol"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


@dataclass(frozen=True, slots=True)
class Record:
    """One TLS record header (and, for handshake and clear-text alert records, what it holds)."""

    type: int
    version: int
    length: int
    handshake: int | None = None  # the first handshake message's type
    alert: tuple[int, int] | None = None  # (level, description) of a 2-byte (clear-text) alert

    @property
    def name(self) -> str:
        if self.type == 22 and self.handshake is not None:
            return HANDSHAKES.get(self.handshake, f"handshake {self.handshake}")
        if self.type == 21:
            if self.alert is None:
                return "Alert (encrypted)"
            level = {1: "warning", 2: "fatal"}.get(self.alert[0], str(self.alert[0]))
            return f"Alert ({level}: {ALERTS.get(self.alert[1], str(self.alert[1]))})"
        return TLS_TYPES.get(self.type, f"record {self.type}")


def is_tls_record(data: bytes) -> bool:
    return len(data) >= 5 and data[0] in TLS_TYPES and data[1] == 3 and data[2] <= 4


def tls_records(data: bytes, limit: int = 32) -> list[Record]:
    """The TLS records a payload starts with (as far as they are whole, or their headers are there)."""
    out: list[Record] = []
    pos = 0
    while len(out) < limit and pos + 5 <= len(data) and is_tls_record(data[pos:pos + 5]):
        ctype, version, length = data[pos], (data[pos + 1] << 8) | data[pos + 2], struct.unpack_from("!H", data,
                                                                                                     pos + 3)[0]
        body = data[pos + 5 : pos + 5 + length]
        handshake = body[0] if ctype == 22 and body else None
        alert = (body[0], body[1]) if ctype == 21 and length == 2 and len(body) == 2 else None
        out.append(Record(ctype, version, length, handshake, alert))
        pos += 5 + length
    return out


def is_client_hello(data: bytes) -> bool:
    return is_tls_record(data) and data[0] == 0x16 and len(data) > 5 and data[5] == 0x01


@dataclass(frozen=True, slots=True)
class Dns:
    id: int
    response: bool
    rcode: int
    name: str
    qtype: int
    answers: int

    @property
    def rcode_name(self) -> str:
        return RCODES.get(self.rcode, f"rcode {self.rcode}")


def dns_message(payload: bytes, tcp: bool = False) -> Dns | None:
    """A DNS message's header and first question (over TCP: after its 2-byte length)."""
    data = payload[2:] if tcp else payload
    if len(data) < 12:
        return None
    ident, flags, qd, an = struct.unpack_from("!HHHH", data)
    if qd > 64 or flags & 0x7800 not in (0, 0x0800, 0x1000, 0x2000):  # opcode QUERY, IQUERY, STATUS, NOTIFY
        return None
    pos, labels, total = 12, [], 0
    while pos < len(data) and qd:
        n = data[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0 or pos + 1 + n > len(data) or total > 255:
            return None
        labels.append(data[pos + 1 : pos + 1 + n].decode("ascii", "replace"))
        total += n + 1
        pos += 1 + n
    qtype = struct.unpack_from("!H", data, pos)[0] if qd and pos + 2 <= len(data) else 0
    return Dns(ident, bool(flags & 0x8000), flags & 0xF, ".".join(labels), qtype, an)


QTYPES = {1: "A", 28: "AAAA", 5: "CNAME", 15: "MX", 16: "TXT", 12: "PTR", 33: "SRV", 6: "SOA", 2: "NS", 65: "HTTPS"}


def preview(payload: bytes, width: int = 40) -> str | None:
    """The first line of a text payload, shortened; None when it is not text."""
    line = payload.split(b"\n", 1)[0].rstrip(b"\r")
    if not line or any(b < 0x20 or b > 0x7E for b in line[:200]):
        return None
    text = line[:200].decode("ascii")
    return text if len(text) <= width else text[: width - 1] + "…"


_REPLY = re.compile(rb"^(\d{3})([ -])")  # SMTP, FTP
_STATUS = re.compile(rb"^(\+OK|-ERR|\* OK|\* NO|\* BAD|\* BYE|\* PREAUTH)\b")  # POP3, IMAP greetings
_HTTP_STATUS = re.compile(rb"^HTTP/(\d)(?:\.(\d))? (\d{3})")
_HTTP_REQUEST = re.compile(rb"^(GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH|CONNECT|TRACE) (\S+) HTTP/\d")
_RESP = re.compile(rb"^[+\-:$*]")  # Redis (RESP)


def reply_code(data: bytes) -> str | None:
    """The reply a server segment starts with: an SMTP/FTP code, a POP3/IMAP status, an HTTP status."""
    if m := _HTTP_STATUS.match(data):
        return m.group(3).decode()
    m = _REPLY.match(data) or _STATUS.match(data)
    return m.group(1).decode() if m else None


def command_text(data: bytes) -> str:
    """A client segment as a command: 'EHLO', 'GET /path', '(data)'."""
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if m := _HTTP_REQUEST.match(line):
        return f"{m.group(1).decode()} {m.group(2)[:60].decode('ascii', 'replace')}"
    if line.startswith(b"*") and b"\r\n" in data:  # RESP array: the command is the first bulk string
        parts = data.split(b"\r\n")
        if len(parts) > 2 and parts[2].isalpha():
            return parts[2][:16].decode("ascii").upper()
    word = line.split(b" ", 1)[0].split(b":", 1)[0]
    return word.decode("ascii", "replace").upper() if word.isalpha() and len(word) <= 10 else "(data)"


def protocol_of(client_first: bytes, server_first: bytes) -> str:
    """The text protocol of a conversation, from the first bytes each side sent."""
    if _HTTP_REQUEST.match(client_first) or _HTTP_STATUS.match(server_first):
        return "HTTP"
    if server_first.startswith((b"+OK", b"-ERR")):
        return "POP3"
    if server_first.startswith(b"* "):
        return "IMAP"
    m = _REPLY.match(server_first)
    if m:
        return "SMTP" if b"SMTP" in server_first.upper() or client_first[:4].upper() in (b"EHLO", b"HELO") \
            else "FTP" if server_first.startswith(b"220") and b"FTP" in server_first.upper() else "SMTP/FTP"
    if client_first.startswith(b"*") and _RESP.match(server_first or b"+"):
        return "RESP"
    return "text"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: str
    reason: str
    header_bytes: int  # the status line and headers, with the blank line
    content_length: int | None
    chunked: bool


def http_response(data: bytes) -> HttpResponse | None:
    """An HTTP/1 response head at the start of `data` (which must hold the whole head)."""
    m = _HTTP_STATUS.match(data)
    if m is None:
        return None
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[:end].decode("latin-1")
    lines = head.split("\r\n")
    reason = lines[0].split(" ", 2)[2] if lines[0].count(" ") >= 2 else ""
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length" and value.isdigit():
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    return HttpResponse(m.group(3).decode(), reason[:60], end + 4, length, chunked)


def ehlo_extensions(data: bytes) -> tuple[str, ...] | None:
    """The extensions an EHLO reply lists ('250-STARTTLS' ...); None if `data` is no multi-line 250 reply."""
    lines = data.split(b"\r\n")
    if not lines or not lines[0].startswith(b"250"):
        return None
    out = []
    for line in lines[1:]:
        if line[:4] in (b"250-", b"250 ") and len(line) > 4:
            out.append(line[4:].split(b" ", 1)[0].decode("ascii", "replace").upper()[:32])
    return tuple(out)
