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

from ..core.protocols import ALERTS, HANDSHAKES, RCODES, TLS_TYPES, command_text, reply_code, tls_records
from ..model import Packet, Trace

NO_TSHARK = "tshark is not installed: application-layer meanings (SMTP, HTTP, TLS) are not shown"
FIELDS = ("frame.number", "smtp.req.command", "smtp.req.parameter", "smtp.response.code", "smtp.rsp.parameter",
          "http.request.method", "http.request.uri", "http.request.version", "http.response.code",
          "http.response.phrase", "tls.record.content_type", "tls.handshake.type", "tls.alert_message.level",
          "tls.alert_message.desc", "dns.flags.response", "dns.qry.name", "dns.flags.rcode")
TIMEOUT_S = 30  # plus a millisecond a packet (a large run's pass must not hit a fixed limit)

_SMTP_COMMAND = re.compile(rb"^(EHLO|HELO|MAIL FROM|RCPT TO|DATA|QUIT|RSET|NOOP|STARTTLS|AUTH|VRFY)\b", re.I)


def _tls(payload: bytes) -> int | None:
    """The handshake type of a TLS record that starts the payload (or 0 for another record type)."""
    records = tls_records(payload[:64], limit=1)
    if not records:
        return None
    return records[0].handshake if records[0].type == 22 and records[0].handshake is not None else 0


def guess_ports(packets: Sequence[Packet]) -> dict[tuple[str, int], str]:
    """(transport, server port) -> tshark protocol, guessed from what the payloads start with. Pure."""
    out: dict[tuple[str, int], str] = {}
    for p in packets:
        if p.proto != "TCP" or not p.payload:
            continue
        data = p.payload[:64]
        tls = _tls(data)
        first = command_text(data)
        if " " in first and data.split(b" ", 1)[0].isalpha() and b" HTTP/" in data.split(b"\n", 1)[0]:
            out.setdefault(("tcp", p.dport), "http")
        elif data.startswith(b"HTTP/") and reply_code(data):
            out.setdefault(("tcp", p.sport), "http")
        elif tls is not None:
            port = p.dport if tls == 1 else p.sport if tls == 2 else None
            if port is not None:
                out.setdefault(("tcp", port), "tls")
        elif _SMTP_COMMAND.match(data):
            out.setdefault(("tcp", p.dport), "smtp")
        elif reply_code(data) and b"SMTP" in data.upper():  # the banner: "220 host ESMTP ..."
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
        shakes = [HANDSHAKES.get(h, f"handshake {h}") for h in _ints(f.get("tls.handshake.type", ""))]
        for ct in _ints(f["tls.record.content_type"]):
            if ct == 22:
                new = shakes or ["Handshake"]
                shakes = []
            elif ct == 21:
                descs = _ints(f.get("tls.alert_message.desc", ""))
                levels = _ints(f.get("tls.alert_message.level", ""))
                level = {1: "warning", 2: "fatal"}.get(levels[0], "") if levels else ""
                new = [f"Alert ({level + ': ' if level else ''}{ALERTS.get(descs[0], str(descs[0]))})" if descs
                       else "Alert (encrypted)"]
            else:
                new = [TLS_TYPES.get(ct, f"record {ct}")]
            names += [n for n in new if n not in names]
        return "TLS " + ", ".join(names)
    if f.get("dns.qry.name"):
        if f.get("dns.flags.response") in ("1", "True", "true"):
            rcodes = _ints(f.get("dns.flags.rcode", "0"))
            return _short(f"DNS response {RCODES.get(rcodes[0] if rcodes else 0, 'rcode')} {f['dns.qry.name']}")
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
        blocks.append(enhanced_packet(p.time_ns, p.raw, p.length, interface=index[link]))
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
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S + len(packets) / 1000,
                              stdin=subprocess.DEVNULL, errors="replace")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {}, f"tshark could not decode the application layer ({exc})"
    finally:
        os.unlink(path)
    if done.returncode != 0:
        first = next((ln for ln in done.stderr.splitlines() if ln and not ln.startswith("Running as")), "")
        return {}, f"tshark could not decode the application layer (exit {done.returncode}: {first})"
    return parse_fields(done.stdout, [p.id for p in packets]), None


PER_FLOW_HEAD, PER_FLOW_TAIL, MAX_LABELLED = 32, 16, 5000  # payload packets labelled: each flow's first and last


def chosen(packets: Sequence[Packet]) -> tuple[list[Packet], int]:
    """The payload packets worth a tshark pass: each flow's first 32 and last 16 (a loop of 100,000 datagrams
    tells its lesson in the first), at most 5,000 in all; and how many payload packets were left out. Pure."""
    flows: dict[frozenset[tuple[str, int]], list[Packet]] = {}
    carrying = 0
    for p in packets:
        if p.payload and p.proto in ("TCP", "UDP"):
            carrying += 1
            flows.setdefault(frozenset({(p.src, p.sport), (p.dst, p.dport)}), []).append(p)
    picked: list[Packet] = []
    for ps in flows.values():
        picked += ps if len(ps) <= PER_FLOW_HEAD + PER_FLOW_TAIL else ps[:PER_FLOW_HEAD] + ps[-PER_FLOW_TAIL:]
    picked.sort(key=lambda p: p.id)
    picked = picked[:MAX_LABELLED]
    return picked, carrying - len(picked)


def label_trace(packets: Sequence[Packet], link: int | None = None) -> tuple[tuple[Packet, ...], str | None]:
    """`packets` with the application-layer labels of the chosen ones (`chosen`), and a note (tshark missing or
    failing, or packets left unlabelled)."""
    from dataclasses import replace

    picked, left = chosen(packets)
    if not picked:
        return tuple(packets), None
    labels, note = decode(picked, link if link is not None else [p.link for p in picked])
    out = tuple(replace(p, app=labels[p.id]) if p.id in labels else p for p in packets) if labels else tuple(packets)
    if left and note is None:
        note = (f"the application layer is shown for {len(picked):,} of the {len(picked) + left:,} packets that "
                f"carry data (each flow's first {PER_FLOW_HEAD} and last {PER_FLOW_TAIL})")
    return out, note


def with_app_layer(trace: Trace) -> Trace:
    """`trace` with its packets' application-layer labels (a sample of each flow, see `label_trace`), and a note
    when tshark could not label them all: what every command adds before the report is built."""
    from dataclasses import replace

    packets, note = label_trace(trace.packets, trace.capture.linktype)
    trace = replace(trace, packets=packets)
    if note:
        trace = replace(trace, notes=(*trace.notes, note))
    return trace
