"""Application layer: what each packet meant to SMTP, HTTP, TLS (and DNS), as tshark dissects it.

    decode(packets) -> ({packet id: "SMTP 250 OK", ...}, note or None)     the IO edge: runs tshark once

Only packets with a transport payload can carry an application message, so a run or a file without any costs
nothing (no tshark at all). Otherwise the packets are written to a temporary comment-free pcapng and read with
`tshark -T fields`: pyshark 0.6 misreads packets that carry comments, and parsing its XML for a few fields costs
more than the fields themselves (see README). Lab servers listen on any port, so the protocol of each server
port is first guessed from the payloads (`guess_ports`, pure) and handed to tshark as "decode as" rules; then
`label` (pure) turns tshark's fields into one short phrase a packet. Without tshark: no labels, one note.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence

from ..model import Packet

NO_TSHARK = "tshark is not installed: application-layer meanings (SMTP, HTTP, TLS) are not shown"
FIELDS = ("frame.number", "smtp.req.command", "smtp.req.parameter", "smtp.response.code", "smtp.rsp.parameter",
          "http.request.method", "http.request.uri", "http.request.version", "http.response.code",
          "http.response.phrase", "tls.record.content_type", "tls.handshake.type", "tls.alert_message.level",
          "tls.alert_message.desc", "dns.flags.response", "dns.qry.name", "dns.flags.rcode")
TIMEOUT_S = 60

_HTTP_REQUEST = re.compile(rb"^(GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH|CONNECT|TRACE) \S+ HTTP/\d")
_HTTP_RESPONSE = re.compile(rb"^HTTP/\d(\.\d)? \d{3}")
_SMTP_REPLY = re.compile(rb"^[2-5]\d\d[ -]")
_SMTP_COMMAND = re.compile(rb"^(EHLO|HELO|MAIL FROM|RCPT TO|DATA|QUIT|RSET|NOOP|STARTTLS|AUTH|VRFY)\b", re.I)

_HANDSHAKE = {0: "HelloRequest", 1: "ClientHello", 2: "ServerHello", 4: "NewSessionTicket", 5: "EndOfEarlyData",
              8: "EncryptedExtensions", 11: "Certificate", 12: "ServerKeyExchange", 13: "CertificateRequest",
              14: "ServerHelloDone", 15: "CertificateVerify", 16: "ClientKeyExchange", 20: "Finished",
              24: "KeyUpdate"}
_RECORD = {20: "ChangeCipherSpec", 21: "Alert", 23: "Application Data", 24: "Heartbeat"}
_ALERT = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
          40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
          45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
          49: "access_denied", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
          71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
          109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name",
          113: "bad_certificate_status_response", 116: "certificate_required", 120: "no_application_protocol"}
_RCODE = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def _tls(payload: bytes) -> int | None:
    """The handshake type of a TLS record that starts the payload (or 0 for another record type)."""
    if len(payload) >= 6 and payload[0] in (20, 21, 22, 23) and payload[1] == 3 and payload[2] <= 4:
        return payload[5] if payload[0] == 22 else 0
    return None


def guess_ports(packets: Sequence[Packet]) -> dict[tuple[str, int], str]:
    """(transport, server port) -> tshark protocol, guessed from what the payloads start with. Pure."""
    out: dict[tuple[str, int], str] = {}
    for p in packets:
        if p.proto != "TCP" or not p.payload:
            continue
        data = p.payload[:64]
        tls = _tls(data)
        if _HTTP_REQUEST.match(data):
            out.setdefault(("tcp", p.dport), "http")
        elif _HTTP_RESPONSE.match(data):
            out.setdefault(("tcp", p.sport), "http")
        elif tls is not None:
            port = p.dport if tls == 1 else p.sport if tls == 2 else None
            if port is not None:
                out.setdefault(("tcp", port), "tls")
        elif _SMTP_COMMAND.match(data):
            out.setdefault(("tcp", p.dport), "smtp")
        elif _SMTP_REPLY.match(data) and b"SMTP" in data.upper():  # the banner: "220 host ESMTP ..."
            out.setdefault(("tcp", p.sport), "smtp")
    return out


def _ints(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if part.isdigit():
            out.append(int(part))
        elif part.startswith("0x"):
            try:
                out.append(int(part, 16))
            except ValueError:
                pass
    return out


def _short(text: str, limit: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def label(f: dict[str, str]) -> str:
    """One packet's tshark fields (name -> value, repeated values joined by ',') as a short phrase. Pure."""
    if f.get("smtp.req.command"):
        param = f.get("smtp.req.parameter", "")
        return _short(f"SMTP {f['smtp.req.command']} {param}".strip())
    if f.get("smtp.response.code"):
        code = f["smtp.response.code"].split(",")[0]
        params = f.get("smtp.rsp.parameter", "").split(",")  # one a line of a multi-line reply
        text = f"SMTP {code} {params[0]}".strip()
        return _short(text) + (f" (+{len(params) - 1} lines)" if len(params) > 1 else "")
    if f.get("http.request.method"):
        return _short(f"HTTP {f['http.request.method']} {f.get('http.request.uri', '')} "
                      f"{f.get('http.request.version', '')}".strip(), 60)
    if f.get("http.response.code"):
        return _short(f"HTTP {f['http.response.code']} {f.get('http.response.phrase', '')}".strip())
    if f.get("tls.record.content_type"):
        names: list[str] = []
        new: list[str]
        shakes = [_HANDSHAKE.get(h, f"handshake {h}") for h in _ints(f.get("tls.handshake.type", ""))]
        for ct in _ints(f["tls.record.content_type"]):
            if ct == 22:
                new = shakes or ["Handshake"]
                shakes = []
            elif ct == 21:
                descs = _ints(f.get("tls.alert_message.desc", ""))
                levels = _ints(f.get("tls.alert_message.level", ""))
                level = {1: "warning", 2: "fatal"}.get(levels[0], "") if levels else ""
                new = [f"Alert ({level + ': ' if level else ''}{_ALERT.get(descs[0], str(descs[0]))})" if descs
                       else "Alert (encrypted)"]
            else:
                new = [_RECORD.get(ct, f"record {ct}")]
            names += [n for n in new if n not in names]
        return "TLS " + ", ".join(names)
    if f.get("dns.qry.name"):
        if f.get("dns.flags.response") in ("1", "True", "true"):
            rcodes = _ints(f.get("dns.flags.rcode", "0"))
            return _short(f"DNS response {_RCODE.get(rcodes[0] if rcodes else 0, 'rcode')} {f['dns.qry.name']}")
        return _short(f"DNS query {f['dns.qry.name']}")
    return ""


def parse_fields(output: str, ids: Sequence[int]) -> dict[int, str]:
    """tshark `-T fields` output (one line a frame, tab-separated FIELDS) -> {packet id: label}. Frame n of the
    temporary file is `ids[n - 1]`. Pure."""
    out: dict[int, str] = {}
    for line in output.splitlines():
        cols = line.split("\t")
        if len(cols) != len(FIELDS) or not cols[0].isdigit():
            continue
        n = int(cols[0])
        if not 1 <= n <= len(ids):
            continue
        text = label(dict(zip(FIELDS[1:], cols[1:], strict=True)))
        if text:
            out[ids[n - 1]] = text
    return out


def _pcapng(packets: Sequence[Packet], links: Sequence[int]) -> bytes:
    from ..formats.pcapng import enhanced_packet, interface_description, section_header

    kinds = sorted(set(links))
    blocks = [section_header("wirestack app_layer")] + [interface_description(k, 262144, "x") for k in kinds]
    index = {k: i for i, k in enumerate(kinds)}
    for p, link in zip(packets, links, strict=True):
        block = bytearray(enhanced_packet(p.time_ns, p.raw, p.length))
        block[8:12] = index[link].to_bytes(4, "little")
        blocks.append(bytes(block))
    return b"".join(blocks)


def decode(packets: Sequence[Packet], links: Sequence[int] | int = 1,
           tshark: str | None = None) -> tuple[dict[int, str], str | None]:
    """Labels for `packets` (raw frames of link type `links`, one a packet or one for all), and a note when the
    application layer could not be decoded. Runs tshark only when some packet carries a payload."""
    if not any(p.payload and p.proto in ("TCP", "UDP") for p in packets):
        return {}, None
    tshark = tshark or shutil.which("tshark")
    if not tshark:
        return {}, NO_TSHARK
    link_list = [links] * len(packets) if isinstance(links, int) else list(links)
    decode_as = [a for (transport, port), proto in sorted(guess_ports(packets).items())
                 for a in ("-d", f"{transport}.port=={port},{proto}")]
    cmd = [tshark, "-n", "-r", "", "-o", "tcp.desegment_tcp_streams:FALSE", *decode_as, "-T", "fields",
           "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,", "-E", "quote=n"]
    for name in FIELDS:
        cmd += ["-e", name]
    fd, path = tempfile.mkstemp(prefix="wirestack-app-", suffix=".pcapng")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(_pcapng(packets, link_list))
        cmd[3] = path
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {}, f"tshark could not decode the application layer ({exc})"
    finally:
        os.unlink(path)
    if done.returncode != 0:
        first = next((ln for ln in done.stderr.splitlines() if ln and not ln.startswith("Running as")), "")
        return {}, f"tshark could not decode the application layer (exit {done.returncode}: {first})"
    return parse_fields(done.stdout, [p.id for p in packets]), None
