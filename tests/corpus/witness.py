"""The independent witness: what a pcap(ng) shows, computed with tshark alone (never from wirestack's output).

    w = Witness.load("run.pcapng")          # tshark twice: once for payload prefixes, once with decode-as rules
    w.packets                               # [WirePacket, ...] in frame order
    connections(w.packets)                  # TCP connections: roles, handshake outcome, FIN/RST, bytes each way
    tls_alerts(w.packets), tls_packets(w.packets), icmp_errors(w.packets), dns_exchanges(w.packets),
    http_messages(w.packets), smtp_messages(w.packets), datagrams(w.packets)     (or the same as w.METHOD())
    strace_syscalls(argv)                   # the program's network syscalls, from strace (strace_run: + status)

Lab servers listen on ephemeral ports, so the protocol of each server port is guessed from what the first
payloads start with (an HTTP request line, a TLS ClientHello, an SMTP banner or command) and handed to tshark as
`-d tcp.port==N,PROTO`. TCP desegmentation is off: a promised-but-missing body must not hide the HTTP response
that carried its first part. Sequence numbers are absolute (tcp.seq_raw). Endpoints are strings: "127.0.0.1:80",
"[::1]:80".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

TSHARK_TIMEOUT = 120
PREFIX = 1024  # bytes of each payload kept in WirePacket.payload

FIELDS = (
    "frame.number", "frame.time_epoch", "frame.protocols",
    "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
    "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.len",
    "tcp.window_size_value", "tcp.window_size",
    "udp.srcport", "udp.dstport", "udp.length",
    "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code",
    "tls.record.content_type", "tls.record.opaque_type", "tls.record.version", "tls.handshake.type",
    "tls.handshake.version",
    "tls.alert_message.level", "tls.alert_message.desc",
    "http.request.method", "http.request.uri", "http.response.code", "http.content_length_header",
    "smtp.req.command", "smtp.response.code", "smtp.rsp.parameter",
    "dns.id", "dns.flags.response", "dns.qry.name", "dns.qry.type", "dns.flags.rcode",
)

TLS_ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
              40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
              44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
              47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error",
              51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
              86: "inappropriate_fallback", 90: "user_canceled", 109: "missing_extension",
              110: "unsupported_extension", 112: "unrecognized_name", 113: "bad_certificate_status_response",
              116: "certificate_required", 120: "no_application_protocol"}
TLS_RECORDS = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data", 24: "heartbeat"}
TLS_HANDSHAKES = {1: "client_hello", 2: "server_hello", 4: "new_session_ticket", 8: "encrypted_extensions",
                  11: "certificate", 12: "server_key_exchange", 13: "certificate_request", 14: "server_hello_done",
                  15: "certificate_verify", 16: "client_key_exchange", 20: "finished"}
DNS_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
FLAG_LETTERS = (("S", 0x002), ("F", 0x001), ("R", 0x004), ("P", 0x008), ("A", 0x010), ("U", 0x020),
                ("E", 0x040), ("C", 0x080))


class WitnessError(Exception):
    """tshark could not read the capture."""


def endpoint(ip: str, port: int | None) -> str:
    """"127.0.0.1:80", "[::1]:80" (the bare address when there is no port). Pure."""
    if port is None:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


@dataclass(frozen=True)
class Quoted:
    """The datagram (or segment) an ICMP error quotes."""

    proto: str  # "UDP" or "TCP"
    src: str  # endpoints
    dst: str


@dataclass(frozen=True)
class WirePacket:
    frame: int
    time: float  # epoch seconds
    src: str  # IP addresses (the outer header's, for ICMP)
    dst: str
    sport: int | None
    dport: int | None
    proto: str  # "TCP", "UDP", "ICMP", "ICMPv6", "ARP", "other"
    flags: str = ""  # TCP flags as letters in the order S F R P A U E C: "S", "SA", "RA", "FA", "PA", "A"
    seq: int | None = None  # absolute
    ack: int | None = None
    tcp_len: int = 0  # TCP payload bytes
    window: int | None = None  # the raw window field
    window_scaled: int | None = None  # tshark's calculated window (scaled when it saw the handshake)
    udp_len: int | None = None  # UDP payload bytes
    icmp_type: int | None = None
    icmp_code: int | None = None
    quoted: Quoted | None = None  # for ICMP errors
    tls_records: tuple[int, ...] = ()  # content types of the records tshark could read (not TLS 1.3's encrypted)
    tls_encrypted: int = 0  # TLS 1.3 encrypted records (opaque type 23: what is inside is not visible)
    tls_versions: tuple[int, ...] = ()  # record-layer versions (0x0301...)
    tls_handshakes: tuple[int, ...] = ()
    tls_alerts: tuple[tuple[int, int], ...] = ()  # (level, description)
    http_method: str | None = None
    http_uri: str | None = None
    http_code: int | None = None
    http_content_length: int | None = None
    smtp_commands: tuple[str, ...] = ()
    smtp_codes: tuple[int, ...] = ()
    smtp_reply_lines: tuple[str, ...] = ()  # the text of each reply line ("STARTTLS", "SIZE 33554432"...)
    dns_id: int | None = None
    dns_response: bool | None = None
    dns_qnames: tuple[str, ...] = ()
    dns_qtypes: tuple[int, ...] = ()
    dns_rcode: int | None = None
    payload: bytes = b""  # the first PREFIX bytes of the TCP or UDP payload

    @property
    def a(self) -> str:
        """The source endpoint."""
        return endpoint(self.src, self.sport)

    @property
    def b(self) -> str:
        """The destination endpoint."""
        return endpoint(self.dst, self.dport)

    def has(self, letter: str) -> bool:
        return letter in self.flags


# -- parsing tshark's output (pure) ---------------------------------------------------------------------------


def _split(value: str) -> list[str]:
    return [v for v in value.split(",") if v != ""] if value else []


def _int(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None


def _ints(value: str) -> tuple[int, ...]:
    return tuple(i for i in (_int(v) for v in _split(value)) if i is not None)


def _first_int(value: str) -> int | None:
    got = _ints(value)
    return got[0] if got else None


def flag_letters(bits: int) -> str:
    """0x012 -> "SA". Pure."""
    return "".join(letter for letter, bit in FLAG_LETTERS if bits & bit)


def parse_fields(output: str, payloads: dict[int, bytes] | None = None) -> list[WirePacket]:
    """tshark `-T fields` output over FIELDS (tab-separated, repeated values joined by ',') -> packets. Pure."""
    out: list[WirePacket] = []
    payloads = payloads or {}
    for line in output.splitlines():
        cols = line.split("\t")
        if len(cols) != len(FIELDS) or not cols[0].isdigit():
            continue
        f = dict(zip(FIELDS, cols, strict=True))
        out.append(_packet(f, payloads.get(int(f["frame.number"]), b"")))
    return out


def _packet(f: dict[str, str], payload: bytes) -> WirePacket:
    protos = f["frame.protocols"].split(":")
    srcs, dsts = _split(f["ip.src"]) or _split(f["ipv6.src"]), _split(f["ip.dst"]) or _split(f["ipv6.dst"])
    src, dst = (srcs[0] if srcs else ""), (dsts[0] if dsts else "")
    common: dict[str, Any] = {"frame": int(f["frame.number"]), "time": float(f["frame.time_epoch"] or 0),
                              "src": src, "dst": dst, "payload": payload}
    if "icmp" in protos or "icmpv6" in protos:
        v6 = "icmpv6" in protos
        kind = "icmpv6" if v6 else "icmp"
        quoted = None
        tcp_quoted = bool(_split(f["tcp.srcport"]))
        sports = _ints(f["tcp.srcport"] if tcp_quoted else f["udp.srcport"])
        dports = _ints(f["tcp.dstport"] if tcp_quoted else f["udp.dstport"])
        if len(srcs) >= 2 and len(dsts) >= 2 and sports and dports:
            quoted = Quoted("TCP" if tcp_quoted else "UDP", endpoint(srcs[1], sports[0]), endpoint(dsts[1], dports[0]))
        return WirePacket(**common, sport=None, dport=None, proto="ICMPv6" if v6 else "ICMP",
                          icmp_type=_first_int(f[f"{kind}.type"]), icmp_code=_first_int(f[f"{kind}.code"]),
                          quoted=quoted)
    app: dict[str, Any] = {
        "tls_records": _ints(f["tls.record.content_type"]), "tls_versions": _ints(f["tls.record.version"]),
        "tls_encrypted": len(_ints(f["tls.record.opaque_type"])),
        "tls_handshakes": _ints(f["tls.handshake.type"]),
        "tls_alerts": tuple(zip(_ints(f["tls.alert_message.level"]), _ints(f["tls.alert_message.desc"]),
                                strict=False)),
        "http_method": next(iter(_split(f["http.request.method"])), None),
        "http_uri": f["http.request.uri"] or None,
        "http_code": _first_int(f["http.response.code"]),
        "http_content_length": _first_int(f["http.content_length_header"]),
        "smtp_commands": tuple(c.upper() for c in _split(f["smtp.req.command"])),
        "smtp_codes": _ints(f["smtp.response.code"]),
        "smtp_reply_lines": tuple(_split(f["smtp.rsp.parameter"])),
        "dns_id": _first_int(f["dns.id"]),
        "dns_response": (f["dns.flags.response"].split(",")[0] in ("1", "True", "true")) if f["dns.flags.response"]
        else None,
        "dns_qnames": tuple(_split(f["dns.qry.name"])), "dns_qtypes": _ints(f["dns.qry.type"]),
        "dns_rcode": _first_int(f["dns.flags.rcode"]) if f["dns.flags.response"] else None,
    }
    if "tcp" in protos:
        return WirePacket(**common, sport=_first_int(f["tcp.srcport"]), dport=_first_int(f["tcp.dstport"]),
                          proto="TCP", flags=flag_letters(_first_int(f["tcp.flags"]) or 0),
                          seq=_first_int(f["tcp.seq_raw"]), ack=_first_int(f["tcp.ack_raw"]),
                          tcp_len=_first_int(f["tcp.len"]) or 0, window=_first_int(f["tcp.window_size_value"]),
                          window_scaled=_first_int(f["tcp.window_size"]), **app)
    if "udp" in protos:
        length = _first_int(f["udp.length"])
        return WirePacket(**common, sport=_first_int(f["udp.srcport"]), dport=_first_int(f["udp.dstport"]),
                          proto="UDP", udp_len=None if length is None else length - 8, **app)
    return WirePacket(**common, sport=None, dport=None, proto="ARP" if "arp" in protos else "other")


_HTTP_REQUEST = re.compile(rb"^(GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH) \S+ HTTP/\d")
_HTTP_RESPONSE = re.compile(rb"^HTTP/\d(\.\d)? \d{3}")
_SMTP_REPLY = re.compile(rb"^[2-5]\d\d[ -]")
_SMTP_COMMAND = re.compile(rb"^(EHLO|HELO|MAIL FROM|RCPT TO|DATA|QUIT|RSET|NOOP|STARTTLS|AUTH)\b", re.I)


def guess_ports(firsts: Iterable[tuple[int, int, bytes]]) -> dict[int, str]:
    """{server port: tshark protocol} from (sport, dport, payload prefix) in frame order: the first hint for a
    port wins (a TLS client talking to a plain-text server makes the port TLS). Pure."""
    out: dict[int, str] = {}
    for sport, dport, data in firsts:
        tls = len(data) >= 6 and data[0] == 22 and data[1] == 3
        if _HTTP_REQUEST.match(data):
            out.setdefault(dport, "http")
        elif _HTTP_RESPONSE.match(data):
            out.setdefault(sport, "http")
        elif tls and data[5] == 1:
            out.setdefault(dport, "tls")
        elif tls and data[5] == 2:
            out.setdefault(sport, "tls")
        elif _SMTP_COMMAND.match(data):
            out.setdefault(dport, "smtp")
        elif _SMTP_REPLY.match(data) and b"SMTP" in data.upper():
            out.setdefault(sport, "smtp")
    return out


# -- running tshark ------------------------------------------------------------------------------------------


def _tshark(args: Sequence[str]) -> str:
    exe = shutil.which("tshark")
    if exe is None:
        raise WitnessError("tshark is not installed")
    cmd = [exe, "-n", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TSHARK_TIMEOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        err = [ln for ln in done.stderr.splitlines() if ln and not ln.startswith("Running as")]
        raise WitnessError(f"tshark failed ({done.returncode}): {' '.join(err)[:300]}")
    return done.stdout


_OPTS = ("-o", "tcp.relative_sequence_numbers:FALSE", "-o", "tcp.desegment_tcp_streams:FALSE",
         "-o", "tcp.analyze_sequence_numbers:TRUE")
_FIELD_OPTS = ("-T", "fields", "-E", "header=n", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,",
               "-E", "quote=n")


def read_payloads(pcap: str) -> dict[int, tuple[int, int, bytes]]:
    """{frame: (sport, dport, first PREFIX payload bytes)} for TCP and UDP packets that carry a payload."""
    out = _tshark(["-r", pcap, *_OPTS, "-Y", "(tcp.len > 0 || udp) && !icmp && !icmpv6", *_FIELD_OPTS,
                   "-e", "frame.number", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.payload",
                   "-e", "udp.srcport", "-e", "udp.dstport", "-e", "udp.payload"])
    got: dict[int, tuple[int, int, bytes]] = {}
    for line in out.splitlines():
        cols = line.split("\t")
        if len(cols) != 7 or not cols[0].isdigit():
            continue
        tcp = bool(cols[1])
        sport, dport = _first_int(cols[1] if tcp else cols[4]), _first_int(cols[2] if tcp else cols[5])
        hexdata = (cols[3] if tcp else cols[6]).split(",")[0].replace(":", "")
        try:
            data = bytes.fromhex(hexdata[: 2 * PREFIX])
        except ValueError:
            data = b""
        if sport is not None and dport is not None:
            got[int(cols[0])] = (sport, dport, data)
    return got


def read_packets(pcap: str) -> list[WirePacket]:
    """Every packet of the capture, dissected by tshark with decode-as rules for the guessed server ports."""
    if not os.path.exists(pcap):
        raise WitnessError(f"no such capture: {pcap}")
    payloads = read_payloads(pcap)
    decode: list[str] = []
    for port, proto in sorted(guess_ports(payloads[n] for n in sorted(payloads)).items()):
        if (port, proto) not in ((53, "dns"), (25, "smtp"), (80, "http"), (443, "tls")):
            decode += ["-d", f"tcp.port=={port},{proto}"]
    args = ["-r", pcap, *_OPTS, *decode, *_FIELD_OPTS]
    for name in FIELDS:
        args += ["-e", name]
    return parse_fields(_tshark(args), {n: p for n, (_s, _d, p) in payloads.items()})


# -- derived views (pure) ---------------------------------------------------------------------------------


@dataclass
class Connection:
    """One TCP connection: the 4-tuple and the SYN's ISN. The client is the SYN's sender (for a connection
    seen mid-stream: the first packet's sender)."""

    client: str
    server: str
    isn: int | None = None
    server_isn: int | None = None
    packets: list[WirePacket] = field(default_factory=list)
    syn_times: list[float] = field(default_factory=list)  # every SYN transmission (retransmits included)

    def side(self, p: WirePacket) -> str:
        return "client" if p.a == self.client else "server"

    def side_of(self, ep: str) -> str | None:
        """"client", "server" or None for an endpoint."""
        return "client" if ep == self.client else "server" if ep == self.server else None

    def other(self, side: str) -> str:
        return "server" if side == "client" else "client"

    def endpoint_of(self, side: str) -> str:
        return self.client if side == "client" else self.server

    @property
    def outcome(self) -> str:
        """"established" (the server's SYN-ACK came), "refused" (RST answered the SYN), "unanswered" (SYNs,
        nothing back), "midstream" (no SYN captured)."""
        if self.isn is None:
            return "midstream"
        if any(p.has("S") and p.has("A") and self.side(p) == "server" for p in self.packets):
            return "established"
        if any(p.has("R") and self.side(p) == "server" for p in self.packets):
            return "refused"
        return "unanswered"

    @property
    def syn_count(self) -> int:
        return len(self.syn_times)

    def _first(self, letter: str) -> str | None:
        for p in self.packets:
            if p.has(letter) and not p.has("S"):
                return self.side(p)
        return None

    @property
    def first_fin(self) -> str | None:
        """Who sent the first FIN: "client", "server" or None."""
        return self._first("F")

    @property
    def first_rst(self) -> str | None:
        return self._first("R")

    def rsts(self, side: str | None = None) -> list[WirePacket]:
        return [p for p in self.packets if p.has("R") and (side is None or self.side(p) == side)]

    def fins(self, side: str | None = None) -> list[WirePacket]:
        return [p for p in self.packets if p.has("F") and (side is None or self.side(p) == side)]

    def data(self, side: str) -> list[WirePacket]:
        """The packets of `side` that carry payload."""
        return [p for p in self.packets if p.tcp_len and self.side(p) == side]

    def bytes_from(self, side: str) -> int:
        """Distinct payload bytes `side` put on the wire (sequence space, retransmissions counted once)."""
        base = self.isn if side == "client" else self.server_isn
        sent = self.data(side)
        if not sent:
            return 0
        if base is None:
            base = min(p.seq or 0 for p in sent) - 1
        return max(((p.seq or 0) - base - 1) % 2**32 + p.tcp_len for p in sent)

    @property
    def bytes_c2s(self) -> int:
        return self.bytes_from("client")

    @property
    def bytes_s2c(self) -> int:
        return self.bytes_from("server")

    def zero_windows(self, side: str) -> list[WirePacket]:
        """The packets in which `side` advertised a zero window (RSTs aside)."""
        return [p for p in self.packets if self.side(p) == side and p.window == 0 and not p.has("R")]

    @property
    def start(self) -> float:
        return self.packets[0].time

    @property
    def end(self) -> float:
        return self.packets[-1].time

    @property
    def client_port(self) -> int:
        return int(self.client.rsplit(":", 1)[1])

    @property
    def server_port(self) -> int:
        return int(self.server.rsplit(":", 1)[1])

    def summary(self) -> dict[str, Any]:
        return {"client": self.client, "server": self.server, "outcome": self.outcome, "syns": self.syn_count,
                "first_fin": self.first_fin, "first_rst": self.first_rst, "bytes_c2s": self.bytes_c2s,
                "bytes_s2c": self.bytes_s2c, "packets": len(self.packets)}


def connections(pkts: Sequence[WirePacket]) -> list[Connection]:
    """TCP packets grouped into connections, in the order they started. A SYN with a new ISN on a 4-tuple
    starts a new connection; SYN retransmissions (same ISN) belong to the one they retransmit."""
    out: list[Connection] = []
    current: dict[frozenset[str], Connection] = {}
    for p in pkts:
        if p.proto != "TCP":
            continue
        key = frozenset((p.a, p.b))
        conn = current.get(key)
        if p.has("S") and not p.has("A"):
            if conn is None or conn.isn != p.seq or p.a != conn.client:
                conn = Connection(client=p.a, server=p.b, isn=p.seq)
                current[key] = conn
                out.append(conn)
            conn.syn_times.append(p.time)
        elif conn is None:
            conn = Connection(client=p.a, server=p.b)
            current[key] = conn
            out.append(conn)
        if p.has("S") and p.has("A") and p.a == conn.server and conn.server_isn is None:
            conn.server_isn = p.seq
        conn.packets.append(p)
    return out


@dataclass(frozen=True)
class TlsAlert:
    frame: int
    time: float
    src: str  # endpoints
    dst: str
    level: int  # 1 warning, 2 fatal
    description: int

    @property
    def name(self) -> str:
        return TLS_ALERTS.get(self.description, str(self.description))

    @property
    def fatal(self) -> bool:
        return self.level == 2


def tls_alerts(pkts: Sequence[WirePacket]) -> list[TlsAlert]:
    """Alerts tshark could read (TLS 1.3 encrypts those sent after the ServerHello: they are application data
    on the wire, and absent here)."""
    return [TlsAlert(p.frame, p.time, p.a, p.b, level, desc) for p in pkts if p.proto == "TCP"
            for level, desc in p.tls_alerts]


@dataclass(frozen=True)
class TlsPacket:
    """A TCP packet that carries TLS records: what tshark could read of them."""

    frame: int
    time: float
    src: str
    dst: str
    records: tuple[int, ...]  # readable content types (22 handshake, 21 alert, 20 change_cipher_spec, 23 data)
    handshakes: tuple[int, ...]  # handshake message types (1 ClientHello, 2 ServerHello, 11 Certificate...)
    alerts: tuple[tuple[int, int], ...]  # (level, description) of readable alerts
    encrypted: int  # TLS 1.3 encrypted records: their real type (handshake, alert, data) is hidden


def tls_packets(pkts: Sequence[WirePacket]) -> list[TlsPacket]:
    return [TlsPacket(p.frame, p.time, p.a, p.b, p.tls_records, p.tls_handshakes, p.tls_alerts, p.tls_encrypted)
            for p in pkts if p.proto == "TCP" and (p.tls_records or p.tls_encrypted)]


@dataclass(frozen=True)
class IcmpError:
    frame: int
    time: float
    src: str  # IP addresses of the ICMP packet
    dst: str
    type: int
    code: int
    quoted: Quoted | None
    quoted_frame: int | None  # the latest earlier datagram with the quoted 4-tuple

    @property
    def port_unreachable(self) -> bool:
        return (self.type, self.code) in ((3, 3), (1, 4))


def icmp_errors(pkts: Sequence[WirePacket]) -> list[IcmpError]:
    out: list[IcmpError] = []
    last: dict[tuple[str, str, str], int] = {}
    for p in pkts:
        if p.proto in ("UDP", "TCP"):
            last[(p.proto, p.a, p.b)] = p.frame
        elif p.proto in ("ICMP", "ICMPv6") and p.icmp_type is not None:
            error = p.icmp_type in (3, 4, 5, 11, 12) if p.proto == "ICMP" else p.icmp_type < 128
            if error:
                q = p.quoted
                frame = last.get((q.proto, q.src, q.dst)) if q else None
                out.append(IcmpError(p.frame, p.time, p.src, p.dst, p.icmp_type, p.icmp_code or 0, q, frame))
    return out


@dataclass
class DnsExchange:
    client: str
    server: str
    id: int
    qname: str
    qtype: int
    queries: list[WirePacket] = field(default_factory=list)  # the query and its retransmissions
    response: WirePacket | None = None
    icmp: IcmpError | None = None  # an ICMP error quoting one of the queries

    @property
    def rcode(self) -> str | None:
        if self.response is None or self.response.dns_rcode is None:
            return None
        return DNS_RCODES.get(self.response.dns_rcode, str(self.response.dns_rcode))

    @property
    def outcome(self) -> str:
        """"NXDOMAIN", "SERVFAIL", "NOERROR"... or "icmp-unreachable" or "unanswered"."""
        if self.rcode is not None:
            return self.rcode
        return "icmp-unreachable" if self.icmp is not None else "unanswered"


def dns_exchanges(pkts: Sequence[WirePacket]) -> list[DnsExchange]:
    """DNS over UDP: each query (client, server, id, name, type) with its retransmissions, its response, or the
    ICMP error that quoted it."""
    out: list[DnsExchange] = []
    by_key: dict[tuple[str, str, int], DnsExchange] = {}
    by_frame: dict[int, DnsExchange] = {}
    for p in pkts:
        if p.proto != "UDP" or p.dns_id is None:
            continue
        if not p.dns_response:
            key = (p.a, p.b, p.dns_id)
            ex = by_key.get(key)
            if ex is None or ex.response is not None:
                ex = DnsExchange(p.a, p.b, p.dns_id, (p.dns_qnames or ("",))[0], (p.dns_qtypes or (0,))[0])
                by_key[key] = ex
                out.append(ex)
            ex.queries.append(p)
            by_frame[p.frame] = ex
        else:
            ex = by_key.get((p.b, p.a, p.dns_id))
            if ex is not None and ex.response is None:
                ex.response = p
    for err in icmp_errors(pkts):
        if err.quoted_frame in by_frame and by_frame[err.quoted_frame].icmp is None:
            by_frame[err.quoted_frame].icmp = err
    return out


@dataclass(frozen=True)
class HttpMessage:
    frame: int
    time: float
    src: str
    dst: str
    kind: str  # "request" or "response"
    method: str | None
    uri: str | None
    code: int | None
    content_length: int | None
    body_bytes: int  # payload bytes of this packet past the head (desegmentation off: this packet only)


def http_messages(pkts: Sequence[WirePacket]) -> list[HttpMessage]:
    out: list[HttpMessage] = []
    for p in pkts:
        if p.proto != "TCP" or not (p.http_method or p.http_code is not None):
            continue
        kind = "request" if p.http_method else "response"
        out.append(HttpMessage(p.frame, p.time, p.a, p.b, kind, p.http_method, p.http_uri, p.http_code,
                               p.http_content_length, _body_bytes(p)))
    return out


def _body_bytes(p: WirePacket) -> int:
    head_end = p.payload.find(b"\r\n\r\n")
    return 0 if head_end < 0 else p.tcp_len - head_end - 4


@dataclass(frozen=True)
class SmtpMessage:
    frame: int
    time: float
    src: str
    dst: str
    commands: tuple[str, ...]
    codes: tuple[int, ...]
    reply_lines: tuple[str, ...]


def smtp_messages(pkts: Sequence[WirePacket]) -> list[SmtpMessage]:
    return [SmtpMessage(p.frame, p.time, p.a, p.b, p.smtp_commands, p.smtp_codes, p.smtp_reply_lines)
            for p in pkts if p.proto == "TCP" and (p.smtp_commands or p.smtp_codes)]


def datagrams(pkts: Sequence[WirePacket], port: int | None = None) -> list[WirePacket]:
    """UDP packets (to or from `port` when given)."""
    return [p for p in pkts if p.proto == "UDP" and (port is None or port in (p.sport, p.dport))]


# -- the witness ------------------------------------------------------------------------------------------


class Witness:
    """The packets of one capture and their derived views. `port` is the peer's port when the run knew it."""

    def __init__(self, packets: list[WirePacket], port: int | None = None, pcap: str | None = None) -> None:
        self.packets = packets
        self.port = port
        self.pcap = pcap
        self._conns: list[Connection] | None = None

    @classmethod
    def load(cls, pcap: str, port: int | None = None) -> Witness:
        return cls(read_packets(pcap), port, pcap)

    def connections(self, port: int | None = None) -> list[Connection]:
        """Connections (to the server port `port` when given)."""
        if self._conns is None:
            self._conns = connections(self.packets)
        return [c for c in self._conns if port is None or c.server_port == port]

    def to_peer(self) -> list[Connection]:
        """Connections to the peer's port. When the port is unknown (the program is its own server), the server
        port of the busiest connection stands for it: on a shared loopback, stray connections of other programs
        (a SYN and an RST) do not outweigh the case's own."""
        if self.port is not None:
            return self.connections(self.port)
        conns = self.connections()
        if not conns:
            return []
        busiest = max(conns, key=lambda c: (len(c.packets), -c.start))
        return [c for c in conns if c.server_port == busiest.server_port]

    def tls_alerts(self) -> list[TlsAlert]:
        return tls_alerts(self.packets)

    def tls_packets(self) -> list[TlsPacket]:
        return tls_packets(self.packets)

    def icmp_errors(self) -> list[IcmpError]:
        return icmp_errors(self.packets)

    def dns_exchanges(self) -> list[DnsExchange]:
        return dns_exchanges(self.packets)

    def http_messages(self) -> list[HttpMessage]:
        return http_messages(self.packets)

    def smtp_messages(self) -> list[SmtpMessage]:
        return smtp_messages(self.packets)

    def datagrams(self, port: int | None = None) -> list[WirePacket]:
        return datagrams(self.packets, port)

    def role(self, ep: str) -> str | None:
        """"client" or "server" for an endpoint of one of the connections (the first that has it)."""
        for c in self.connections():
            if ep == c.client:
                return "client"
            if ep == c.server:
                return "server"
        return None


# -- strace ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Syscall:
    pid: int
    name: str
    args: str
    result: str  # "0", "-1", "? " ...
    errno: str | None  # "ECONNREFUSED"
    detail: str  # what follows the errno or the result: "(Connection refused)", "(Timeout)"

    @property
    def timed_out(self) -> bool:
        return self.result == "0" and "Timeout" in self.detail


_STRACE_LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<name>\w+)\((?P<args>.*)\)\s+=\s+(?P<result>-?\d+|\?|0x[0-9a-f]+)"
                          r"(?:\s+(?P<errno>E[A-Z0-9]+))?\s*(?P<detail>.*)$")
_UNFINISHED = re.compile(r"^(?P<pid>\d+)\s+(?P<head>\w+\(.*) <unfinished \.\.\.>$")
_RESUMED = re.compile(r"^(?P<pid>\d+)\s+<\.\.\. (?P<name>\w+) resumed>(?P<tail>.*)$")


def parse_strace(text: str) -> list[Syscall]:
    """strace -f output (with pids) -> syscalls; "<unfinished ...>" and "<... resumed>" are joined. Pure."""
    pending: dict[int, str] = {}
    out: list[Syscall] = []
    for line in text.splitlines():
        line = line.rstrip()
        m = _UNFINISHED.match(line)
        if m:
            pending[int(m["pid"])] = m["head"]
            continue
        m = _RESUMED.match(line)
        if m:
            pid = int(m["pid"])
            line = f"{pid} {pending.pop(pid, m['name'] + '(')}{m['tail']}"
        m = _STRACE_LINE.match(line)
        if m:
            out.append(Syscall(int(m["pid"]), m["name"], m["args"], m["result"], m["errno"], m["detail"].strip()))
    return out


def strace_syscalls(argv: Sequence[str], timeout: float = 30, cwd: str | None = None,
                    env: dict[str, str] | None = None) -> list[Syscall]:
    """The network, poll and select syscalls of argv (and its children), run under strace."""
    return strace_run(argv, timeout, cwd, env)[0]


def strace_run(argv: Sequence[str], timeout: float = 30, cwd: str | None = None,
               env: dict[str, str] | None = None) -> tuple[list[Syscall], subprocess.CompletedProcess[str]]:
    """Run argv under `strace -f -e trace=network,poll,ppoll,select`; (its syscalls, the completed process)."""
    exe = shutil.which("strace")
    if exe is None:
        raise WitnessError("strace is not installed")
    with tempfile.TemporaryDirectory(prefix="corpus-strace-") as tmp:
        out = os.path.join(tmp, "trace")
        done = subprocess.run([exe, "-f", "-qq", "-e", "trace=network,poll,ppoll,select,pselect6", "-o", out,
                               *argv], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env,
                              stdin=subprocess.DEVNULL)
        with open(out, encoding="utf-8", errors="replace") as f:
            text = f.read()
    return parse_strace(text), done
