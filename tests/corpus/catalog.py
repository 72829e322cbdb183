"""The catalog: every case of the corpus, how to run it, and what the wire must show (its truth).

    from tests.corpus.catalog import CASES, BY_NAME, run_case
    run = run_case(BY_NAME["requests_refused"], tmpdir, capture=True)      # plain, under tcpdump
    run.returncode, run.stderr, run.final_exception, run.witness().connections()
    BY_NAME["requests_refused"].truth(run.witness())   # {"refused_attempts": 1, ...}

    # under wirestack (the program is `case.path PORT`; wirestack brings its own interpreter):
    run = run_case(case, tmpdir, under=[py, "-m", "wirestack", "run", "--json", J, "-w", P], python=None)

A case's settings are the module-level constants of its file (PEER, PEER_OPTS, WHERE, EXPECT_EXIT, EXCEPTION,
EXCEPTION_ON, LIBRARY, CLASSES, MIN_PYTHON, NETNS, SETTLE), read with `ast` so that listing the corpus imports no
client library. EXCEPTION is the type the traceback names from 3.11 on; EXCEPTION_ON maps an older (major, minor)
to the name that interpreter prints instead (3.10's `asyncio.exceptions.TimeoutError`), and `Case.exception` is
the running interpreter's. A case's truth is a function of the witness (tshark's view of a capture) returning the
case's key wire facts: computed from the packets, never written down; only the keys and the roles ("client",
"server") are per case. `run_case` starts the peer (its own untraced process) for "external" cases and passes its
port as argv[1]; a case with NETNS runs in a private network namespace (its own lo, resolv.conf, hosts) together
with its peer and, with capture=True, its tcpdump.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import netns
from .capture import Tcpdump
from .peers import process
from .witness import Connection, Witness

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CASES_DIR = HERE / "cases"
RUN_TIMEOUT = 30.0  # seconds: no case runs longer (they take < 10 s)
DEFAULT_SETTLE = 0.2  # seconds the capture goes on after the program exits (the last FIN/RST/ACK)

Truth = Callable[[Witness], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    peer: str | None
    peer_opts: dict[str, Any]
    where: str  # "external", "in-process", "none"
    expect_exit: int
    exception: str | None  # the traceback's exception type (its last line) on this Python, None when it catches
    library: str
    classes: tuple[str, ...]
    min_python: tuple[int, int]
    netns: dict[str, Any] | None  # None: the machine's namespace; a dict: a private one ({"hosts": "dual"})
    settle: float
    truth: Truth = field(compare=False, repr=False)
    doc: str = field(default="", compare=False, repr=False)

    @property
    def needs_netns(self) -> bool:
        return self.netns is not None

    @property
    def peer_host(self) -> str:
        if self.netns and "peer_host" in self.netns:
            return str(self.netns["peer_host"])
        return netns.NAMESERVER if self.peer == "dns" else "127.0.0.1"

    @property
    def peer_port(self) -> int:
        if self.netns and "peer_port" in self.netns:
            return int(self.netns["peer_port"])
        return 53 if self.peer == "dns" else 0


# -- running ---------------------------------------------------------------------------------------------


@dataclass
class CaseRun:
    case: Case
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    pcap: str | None  # the capture of this run (capture=True), else None
    port: int | None  # the peer's port, when there was a peer
    duration: float  # seconds the program ran

    @property
    def final_exception(self) -> str | None:
        return final_exception(self.stderr)

    def witness(self, pcap: str | None = None) -> Witness:
        path = pcap or self.pcap
        if path is None:
            raise ValueError("this run has no capture: pass the pcapng")
        return Witness.load(path, self.port)


_TRACEBACK = "Traceback (most recent call last):"
_GROUP = "Exception Group Traceback (most recent call last):"
_EXC_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s|:$|$)")
_GROUP_LINE = re.compile(r"^\s*\| (?P<type>[A-Za-z_][\w.]*)(?::\s|:$|$)")


def final_exception(stderr: str) -> str | None:
    """The exception type of the last traceback on stderr ("requests.exceptions.ConnectionError",
    "ExceptionGroup"), None when there is none. Tracebacks printed earlier (by threads, by gevent) are
    skipped: the last top-level traceback is the program's. Pure."""
    lines = stderr.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln in (_TRACEBACK, "  + " + _GROUP)]
    if not starts:
        return None
    start = starts[-1]
    if lines[start].startswith("  + "):
        for ln in lines[start + 1:]:
            m = _GROUP_LINE.match(ln)
            if m and not ln.strip().startswith("| File"):
                return m["type"]
        return None
    for ln in lines[start + 1:]:
        m = _EXC_LINE.match(ln)
        if m:
            return m["type"]
    return None


def case_argv(case: Case, port: int | None, *, under: Sequence[str] = (),
              python: str | None = sys.executable) -> list[str]:
    """under + [python] + [case.path] + [port] (the port only for external peers)."""
    args = [str(port)] if case.where == "external" and port is not None else []
    return [*under, *([python] if python else []), case.path, *args]


def run_case(case: Case, tmpdir: str | os.PathLike[str], under: Sequence[str] = (), *,
             python: str | None = sys.executable, capture: bool = False, isolate: bool = False,
             timeout: float = RUN_TIMEOUT, env: dict[str, str] | None = None) -> CaseRun:
    """Run one case: start its peer if it has an external one, optionally a tcpdump on lo (capture=True,
    written to TMPDIR/NAME.pcapng), run `under + [python, case.path, port]` from the repository's root, stop
    it all. A case with NETNS, or any case with isolate=True, runs in a private network namespace (peer,
    tcpdump and program inside it). Returns the status, output and capture path."""
    tmp = Path(tmpdir)
    tmp.mkdir(parents=True, exist_ok=True)
    pcap = str(tmp / f"{case.name}.pcapng") if capture else None
    run_env = dict(os.environ if env is None else env)
    run_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *[p for p in run_env.get("PYTHONPATH", "").split(os.pathsep)
                                                           if p and p != str(ROOT)]])
    run_env.setdefault("PYTHONUNBUFFERED", "1")
    if case.needs_netns or isolate:
        return _run_in_netns(case, under, python, pcap, timeout, run_env)
    peer = process(case.peer, case.peer_host, case.peer_port, **case.peer_opts) \
        if case.where == "external" and case.peer else None
    with peer if peer is not None else _Null() as p:
        port = p.port if p is not None else None
        argv = case_argv(case, port, under=under, python=python)
        dump = Tcpdump(pcap).start() if pcap else None
        try:
            start = time.monotonic()
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                                      env=run_env, stdin=subprocess.DEVNULL)
                code, out, err = done.returncode, done.stdout, done.stderr
            except subprocess.TimeoutExpired as exc:
                code, out, err = -9, _text(exc.stdout), _text(exc.stderr) + f"\n[corpus: killed after {timeout} s]"
            duration = time.monotonic() - start
            time.sleep(case.settle)
        finally:
            if dump is not None:
                dump.stop()
    return CaseRun(case, argv, code, out, err, pcap, port, duration)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


def _run_in_netns(case: Case, under: Sequence[str], python: str | None, pcap: str | None, timeout: float,
                  env: dict[str, str]) -> CaseRun:
    spec = case.netns or {}
    hosts = {"dual": netns.HOSTS_DUAL, None: None}.get(spec.get("hosts"), spec.get("hosts"))
    resolv = str(spec.get("resolv", netns.RESOLV))
    peer = (case.peer, dict(case.peer_opts)) if case.where == "external" and case.peer else None
    argv = case_argv(case, 0, under=under, python=python)
    if case.where == "external":
        argv[-1] = "{port}"  # the peer's port, known inside the namespace
    settle = f"import time; time.sleep({case.settle})"
    start = time.monotonic()
    try:
        done = netns.run_in_netns([sys.executable, "-c", _RUN_AND_SETTLE, settle, *argv], resolv, timeout,
                                  hosts_text=hosts, peer=peer, peer_host=case.peer_host,
                                  peer_port=case.peer_port, capture=pcap, env=env)
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = -9, _text(exc.stdout), _text(exc.stderr) + f"\n[corpus: killed after {timeout} s]"
    duration = time.monotonic() - start
    port = _port_from(out, err) if case.where == "external" else None
    if port is not None:
        argv[-1] = str(port)
    err = "\n".join(ln for ln in err.splitlines() if not ln.startswith("corpus-port ")) + ("\n" if err else "")
    return CaseRun(case, argv, code, out, err, pcap, port, duration)


# Inside the namespace: say the peer's port (on stderr, for the CaseRun), run the program, let the last packets
# out, exit with the program's status.
_RUN_AND_SETTLE = (
    "import subprocess, sys\n"
    "argv = sys.argv[2:]\n"
    "sys.stderr.write('corpus-port %s\\n' % (argv[-1] if argv else '')); sys.stderr.flush()\n"
    "code = subprocess.run(argv).returncode\n"
    "exec(sys.argv[1])\n"
    "sys.exit(code if code >= 0 else 128 - code)\n"
)


def _port_from(out: str, err: str) -> int | None:
    for ln in err.splitlines():
        if ln.startswith("corpus-port ") and ln.split()[-1].isdigit():
            return int(ln.split()[-1])
    return None


# -- the cases ---------------------------------------------------------------------------------------------


def _constants(path: Path) -> tuple[dict[str, Any], str]:
    tree = ast.parse(path.read_text(), str(path))
    out: dict[str, Any] = {}
    for node in tree.body:
        target: str | None = None
        value: ast.expr | None = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target, value = node.target.id, node.value
        if target and value is not None and target.isupper():
            try:
                out[target] = ast.literal_eval(value)
            except ValueError:
                pass
    return out, ast.get_docstring(tree) or ""


def load_case(path: Path, truth: Truth) -> Case:
    c, doc = _constants(path)
    return Case(name=path.stem, path=str(path), peer=c.get("PEER"), peer_opts=dict(c.get("PEER_OPTS", {})),
                where=c.get("WHERE", "none"), expect_exit=int(c.get("EXPECT_EXIT", 1)),
                exception=dict(c.get("EXCEPTION_ON", {})).get(sys.version_info[:2], c.get("EXCEPTION")),
                library=c.get("LIBRARY", ""), classes=tuple(c.get("CLASSES", ())),
                min_python=(int(c.get("MIN_PYTHON", (3, 10))[0]), int(c.get("MIN_PYTHON", (3, 10))[1])),
                netns=c.get("NETNS"),
                settle=float(c.get("SETTLE", DEFAULT_SETTLE)), truth=truth, doc=doc)


TRUTHS: dict[str, Truth] = {}


def truth(name: str) -> Callable[[Truth], Truth]:
    def register(fn: Truth) -> Truth:
        TRUTHS[name] = fn
        return fn

    return register


def _no_truth(w: Witness) -> dict[str, Any]:
    return {}



# -- truths: helpers (pure) ------------------------------------------------------------------------------


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _gaps_ms(times: Sequence[float]) -> list[float]:
    return [_ms(b - a) for a, b in zip(times, times[1:], strict=False)]


def _peer_conns(w: Witness) -> list[Connection]:
    return w.to_peer()


def _attempts(w: Witness) -> dict[str, Any]:
    """Connection attempts to the peer: how many, how many refused, the gaps between their first SYNs."""
    conns = [c for c in _peer_conns(w) if c.syn_times]
    return {"attempts": len(conns), "refused_attempts": sum(c.outcome == "refused" for c in conns),
            "attempt_gaps_ms": _gaps_ms([c.syn_times[0] for c in conns]),
            "reset_from": sorted({c.first_rst for c in conns if c.first_rst}),
            "payload_bytes": sum(c.bytes_c2s + c.bytes_s2c for c in conns),
            "rst_after_syn_us": [round((c.rsts("server")[0].time - c.syn_times[0]) * 1e6)
                                 for c in conns if c.rsts("server")]}


def _one(w: Witness) -> Connection:
    conns = _peer_conns(w)
    if not conns:
        raise AssertionError("no TCP connection on the wire")
    return conns[0]


def _close(c: Connection) -> dict[str, Any]:
    return {"outcome": c.outcome, "first_fin_from": c.first_fin, "first_rst_from": c.first_rst,
            "bytes_client_to_server": c.bytes_c2s, "bytes_server_to_client": c.bytes_s2c}


def _on(conns: Sequence[Connection]) -> set[frozenset[str]]:
    return {frozenset((c.client, c.server)) for c in conns}


def _http_msgs(w: Witness, conns: Sequence[Connection]) -> list[Any]:
    pairs = _on(conns)
    return [m for m in w.http_messages() if frozenset((m.src, m.dst)) in pairs]


def _http(w: Witness, c: Connection | None = None) -> dict[str, Any]:
    """Requests, response codes and the first Content-Length on `c` (on all the peer's connections if None)."""
    msgs = _http_msgs(w, [c] if c is not None else _peer_conns(w))
    return {"requests": [f"{m.method} {m.uri}" for m in msgs if m.kind == "request"],
            "responses": [m.code for m in msgs if m.kind == "response"],
            "content_length": next((m.content_length for m in msgs if m.kind == "response"), None)}


def _body_delivered(w: Witness, c: Connection) -> int:
    """Body bytes the server sent: its payload bytes after the response head."""
    heads = [m for m in w.http_messages() if m.kind == "response" and m.src == c.server]
    if not heads:
        return 0
    head = heads[0]
    first = next(p for p in c.packets if p.frame == head.frame)
    head_len = first.tcp_len - head.body_bytes
    return c.bytes_s2c - head_len


def _alert(w: Witness, c: Connection | None = None) -> dict[str, Any] | None:
    alerts = [a for a in w.tls_alerts() if c is None or {a.src, a.dst} == {c.client, c.server}]
    if not alerts:
        return None
    a = alerts[0]
    who = (c.side_of(a.src) if c is not None else w.role(a.src)) or a.src
    return {"from": who, "level": "fatal" if a.fatal else "warning", "desc": a.name}


def _handshakes(w: Witness, side: str, c: Connection) -> list[int]:
    return [h for t in w.tls_packets() if t.src == c.endpoint_of(side) for h in t.handshakes]


def _encrypted(w: Witness, side: str, c: Connection) -> int:
    return sum(t.encrypted for t in w.tls_packets() if t.src == c.endpoint_of(side))


def _silence_ms(c: Connection) -> float | None:
    """From the server's last packet to the client's FIN (how long the client waited for an answer)."""
    fins = c.fins("client")
    server = [p for p in c.packets if c.side(p) == "server" and p.time <= (fins[0].time if fins else 0)]
    if not fins or not server:
        return None
    return _ms(fins[0].time - server[-1].time)


def _resp(c: Connection, side: str) -> list[bytes]:
    """RESP messages (first line of each payload) that `side` sent."""
    return [p.payload.split(b"\r\n", 1)[0] for p in c.data(side)]


# -- truths: one per case ---------------------------------------------------------------------------------


for _name in ("requests_refused", "httpx_refused", "aiohttp_refused", "uvloop_refused", "urllib_refused_caught",
              "gevent_requests_refused", "redis_refused", "urllib3_retry_refused"):
    TRUTHS[_name] = _attempts


@truth("asyncio_gather_one_refused")
def _gather(w: Witness) -> dict[str, Any]:
    conns = _peer_conns(w)
    return {"refused": [c.server for c in conns if c.outcome == "refused"],
            "established": [c.server for c in conns if c.outcome == "established"],
            "responses": _http(w)["responses"]}


@truth("taskgroup_two_refused")
@truth("trio_nursery_refused")
@truth("create_connection_all_errors")
def _group(w: Witness) -> dict[str, Any]:
    conns = _peer_conns(w)
    return {**_attempts(w), "refused_servers": [c.server for c in conns if c.outcome == "refused"],
            "families": ["ipv6" if c.server.startswith("[") else "ipv4" for c in conns]}


@truth("socket_connect_timeout")
@truth("requests_connect_timeout")
@truth("aiohttp_connect_timeout")
def _connect_timeout(w: Witness) -> dict[str, Any]:
    c = _one(w)
    return {"outcome": c.outcome, "syns": c.syn_count, "syn_gaps_ms": _gaps_ms(c.syn_times),
            "same_isn": len({p.seq for p in c.packets if p.has("S")}) == 1,
            "packets_from_server": sum(c.side(p) == "server" for p in c.packets),
            "client_rst_or_fin": bool(c.rsts("client") or c.fins("client"))}


@truth("requests_read_timeout")
@truth("httpx_read_timeout")
@truth("asyncio_read_timeout")
def _read_timeout(w: Witness) -> dict[str, Any]:
    c = _one(w)
    sent = c.data("client")
    acked = bool(sent) and any(c.side(p) == "server" and p.has("A") and p.ack is not None
                               and (p.ack - (c.isn or 0) - 1) % 2**32 >= c.bytes_c2s for p in c.packets)
    return {**_close(c), "request_acked_by_server": acked, "response_bytes": c.bytes_s2c,
            "wait_before_client_fin_ms": _silence_ms(c), "requests": _http(w, c)["requests"]}


@truth("tls_cert_verify_tls12")
@truth("requests_cert_verify_tls13")
def _cert_verify(w: Witness) -> dict[str, Any]:
    c = _one(w)
    server = _handshakes(w, "server", c)
    return {"alert": _alert(w, c), "server_hello": 2 in server, "certificate_readable": 11 in server,
            "server_encrypted_records": _encrypted(w, "server", c), **_close(c)}


@truth("requests_wrong_version")
def _wrong_version(w: Witness) -> dict[str, Any]:
    c = _one(w)
    first = c.data("server")
    return {"client_hello": 1 in _handshakes(w, "client", c), "alert": _alert(w, c),
            "server_first_bytes": first[0].payload[:12].decode("latin-1") if first else None,
            "server_tls_records": sum(len(t.records) for t in w.tls_packets() if t.src == c.server), **_close(c)}


@truth("tls_server_refuses_version")
@truth("tls_client_refuses_version")
@truth("asyncio_tls_alert_lost")
@truth("tls_client_cert_required")
def _tls_verdict(w: Witness) -> dict[str, Any]:
    c = _one(w)
    server, client = _handshakes(w, "server", c), _handshakes(w, "client", c)
    versions = [v for p in c.data("server") if 2 in p.tls_handshakes for v in p.tls_versions[:1]]
    return {"alert": _alert(w, c), "server_hello": 2 in server, "server_record_version": versions[0] if versions
            else None, "certificate_request": 13 in server, "client_certificate": 11 in client, **_close(c)}


@truth("tls_inprocess_cert_required")
def _tls13_cert_required(w: Witness) -> dict[str, Any]:
    c = _one(w)
    return {"readable_alerts": [a.name for a in w.tls_alerts() if frozenset((a.src, a.dst)) in _on([c])],
            "certificate_request_readable": 13 in
            _handshakes(w, "server", c), "client_encrypted_records": _encrypted(w, "client", c),
            "server_encrypted_records": _encrypted(w, "server", c), **_close(c)}


@truth("http_client_remote_disconnected")
@truth("httpx_remote_protocol_error")
@truth("aiohttp_server_disconnected")
@truth("inprocess_http_handler_crash")
def _closed_before_answer(w: Witness) -> dict[str, Any]:
    conns = [c for c in _peer_conns(w) if c.outcome == "established"]
    return {"connections": len(conns), "first_fin_from": [c.first_fin for c in conns],
            "first_rst_from": [c.first_rst for c in conns], "response_bytes": sum(c.bytes_s2c for c in conns),
            "requests": _http(w)["requests"]}


@truth("requests_reset_by_peer")
@truth("fork_child_server_reset")
def _reset_after_request(w: Witness) -> dict[str, Any]:
    c = _one(w)
    return {**_close(c), "requests": _http(w, c)["requests"], "fins": len(c.fins()),
            "rst_after_request_ms": _ms(c.rsts("server")[0].time - c.data("client")[-1].time)
            if c.rsts("server") and c.data("client") else None}


@truth("http_client_incomplete_read")
@truth("requests_short_body_reset")
def _short_body(w: Witness) -> dict[str, Any]:
    c = _one(w)
    return {**_close(c), **_http(w, c), "body_bytes_delivered": _body_delivered(w, c)}


@truth("stale_keepalive")
def _stale(w: Witness) -> dict[str, Any]:
    conns = _peer_conns(w)
    c = conns[0]
    http = _http(w, c)
    requests = c.data("client")
    fin = c.fins("server")
    answer = [p for p in c.packets if c.side(p) == "server" and len(requests) > 1 and p.time > requests[1].time]
    return {"connections": len(conns), **http, "first_fin_from": c.first_fin,
            "server_fin_before_second_request": bool(fin and len(requests) > 1 and fin[0].time < requests[1].time),
            "idle_before_server_fin_ms": _ms(fin[0].time - c.data("server")[0].time) if fin and c.data("server")
            else None, "answer_to_second_request": answer[0].flags if answer else None}


@truth("own_side_reset")
def _own_reset(w: Witness) -> dict[str, Any]:
    c = _one(w)
    return {**_close(c), **_http(w, c), "client_fin": bool(c.fins("client")),
            "rsts_from_client": len(c.rsts("client"))}


@truth("smtp_server_disconnected")
@truth("smtp_starttls_absent")
@truth("inprocess_smtp_starttls")
def _smtp(w: Witness) -> dict[str, Any]:
    conns = [c for c in _peer_conns(w) if c.outcome == "established"]
    talk = [c for c in conns if c.data("client")]  # the conversations (aiosmtpd's self-check sends nothing)
    c = talk[-1] if talk else conns[-1]
    msgs = [m for m in w.smtp_messages() if {m.src, m.dst} == {c.client, c.server}]
    replies = [m for m in msgs if m.src == c.server]
    ehlo_lines = [ln for m in replies if 250 in m.codes for ln in m.reply_lines]
    return {"connections": len(conns), "silent_connections": len(conns) - len(talk),
            "banner": replies[0].codes[0] if replies and replies[0].codes else None,
            "client_commands": [cmd for m in msgs if m.src == c.client for cmd in m.commands],
            "reply_codes": [code for m in replies for code in m.codes],
            "starttls_offered": any(ln.upper().startswith("STARTTLS") for ln in ehlo_lines), **_close(c)}


@truth("redis_pong_then_close")
@truth("redis_max_clients")
def _redis(w: Witness) -> dict[str, Any]:
    conns = [c for c in _peer_conns(w) if c.outcome == "established"]
    return {"connections": len(conns),
            "pings_sent": [sum(p.payload.count(b"\r\nPING\r\n") for p in c.data("client")) for c in conns],
            "pongs": [sum(m == b"+PONG" for m in _resp(c, "server")) for c in conns],
            "error_replies": [m.decode() for c in conns for m in _resp(c, "server") if m.startswith(b"-")],
            "first_fin_from": [c.first_fin for c in conns],
            "connection_gaps_ms": _gaps_ms([c.syn_times[0] for c in conns])}


@truth("sendall_reset_midway")
@truth("sendall_never_left")
def _sendall(w: Witness) -> dict[str, Any]:
    c = _one(w)
    zero = c.zero_windows("server")
    probes = [p for p in c.packets if c.side(p) == "client" and zero and p.time > zero[0].time and not p.tcp_len]
    return {**_close(c), "bytes_that_left": c.bytes_c2s, "zero_window_from": "server" if zero else None,
            "zero_window_adverts": len(zero), "client_packets_after_zero_window": len(probes),
            "client_fin": bool(c.fins("client"))}


@truth("requests_503_retries")
def _retries_503(w: Witness) -> dict[str, Any]:
    conns = _peer_conns(w)
    reqs = [m for m in _http_msgs(w, conns) if m.kind == "request"]
    return {"connections": len(conns), **_http(w), "request_gaps_ms": _gaps_ms([m.time for m in reqs])}


@truth("getaddrinfo_nxdomain")
@truth("requests_nxdomain")
@truth("resolver_no_server")
@truth("resolver_servfail")
@truth("resolver_silent")
def _resolver(w: Witness) -> dict[str, Any]:
    ex = w.dns_exchanges()
    qtype = {1: "A", 28: "AAAA"}
    return {"questions": sorted({(e.qname, qtype.get(e.qtype, str(e.qtype))) for e in ex}),
            "queries": sum(len(e.queries) for e in ex), "outcomes": [e.outcome for e in ex],
            "retransmitted": sum(len(e.queries) > 1 for e in ex),
            "retry_gaps_ms": [g for e in ex for g in _gaps_ms([q.time for q in e.queries])],
            "icmp_unreachable": sum(i.port_unreachable for i in w.icmp_errors()),
            "servers": sorted({e.server for e in ex}), "tcp_connections": len(w.connections())}


@truth("udp_unconnected_timeout")
@truth("udp_connected_refused")
@truth("udp_metrics_second_send")
def _udp(w: Witness) -> dict[str, Any]:
    sent = [p for p in w.datagrams(w.port) if p.dport == w.port] if w.port else w.datagrams()
    icmp = [i for i in w.icmp_errors() if i.port_unreachable and i.quoted is not None
            and (w.port is None or i.quoted.dst.endswith(f":{w.port}"))]
    quoted = {p.frame for p in sent}
    return {"datagrams_sent": len(sent), "replies": len([p for p in w.datagrams(w.port) if p.sport == w.port]),
            "icmp_port_unreachable": len(icmp), "icmp_quotes_sent_datagram": all(i.quoted_frame in quoted
                                                                                  for i in icmp) and bool(icmp),
            "icmp_after_us": [round((i.time - next(p.time for p in sent if p.frame == i.quoted_frame)) * 1e6)
                              for i in icmp if i.quoted_frame in quoted]}


CASES: list[Case] = [load_case(p, TRUTHS.get(p.stem, _no_truth)) for p in sorted(CASES_DIR.glob("*.py"))]
BY_NAME: dict[str, Case] = {c.name: c for c in CASES}
