"""The corpus on its own, without wirestack: every case run plainly under tcpdump exits as declared, dies of the
declared exception, and its truth (computed by the tshark witness from the capture) makes sense. Plus the pure
parts (traceback parsing, tshark field parsing, DNS replies, strace parsing), the peers, the namespaces, and
that every case at least imports on Python 3.10 to 3.13.

By default each case runs in a private network namespace (its own lo, so other tests' loopback traffic cannot
leak into the capture); CORPUS_ISOLATE=0 runs them on the machine's lo instead, as wirestack's own tests will.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.corpus import netns, peers
from tests.corpus.catalog import BY_NAME, CASES, CASES_DIR, ROOT, TRUTHS, Case, final_exception, run_case
from tests.corpus.witness import (
    Connection,
    WirePacket,
    connections,
    dns_exchanges,
    flag_letters,
    guess_ports,
    icmp_errors,
    parse_fields,
    parse_strace,
    strace_run,
)

ISOLATE = os.environ.get("CORPUS_ISOLATE", "1") != "0"
Check = Callable[[dict[str, Any]], None]


# -- what each case's truth must look like ------------------------------------------------------------------


def _refused_once(t: dict[str, Any]) -> None:
    assert t["attempts"] >= 1 and t["refused_attempts"] == t["attempts"]
    assert t["reset_from"] == ["server"] and t["payload_bytes"] == 0


def _refused_n(n: int, min_gap_ms: float) -> Check:
    def check(t: dict[str, Any]) -> None:
        assert t["attempts"] == n and t["refused_attempts"] == n, t
        assert all(gap >= 0 for gap in t["attempt_gaps_ms"])
        assert max(t["attempt_gaps_ms"]) >= min_gap_ms, t  # the backoff is on the wire
        assert t["payload_bytes"] == 0

    return check


def _group(families: list[str]) -> Check:
    def check(t: dict[str, Any]) -> None:
        assert t["refused_attempts"] == 2 and t["attempts"] == 2, t
        assert t["families"] == families

    return check


def _connect_timeout(min_syns: int, max_syns: int) -> Check:
    def check(t: dict[str, Any]) -> None:
        assert t["outcome"] == "unanswered" and t["packets_from_server"] == 0, t
        assert min_syns <= t["syns"] <= max_syns and t["same_isn"], t
        assert all(900 <= gap <= 2300 for gap in t["syn_gaps_ms"]), t  # RTO 1 s (linear) or 2 s (doubling)
        assert not t["client_rst_or_fin"]  # abandoning SYN-SENT sends nothing

    return check


def _read_timeout(wait_ms: float) -> Check:
    def check(t: dict[str, Any]) -> None:
        assert t["outcome"] == "established" and t["request_acked_by_server"], t
        assert t["bytes_client_to_server"] > 0 and t["response_bytes"] == 0
        assert t["first_fin_from"] == "client" and t["first_rst_from"] is None
        assert wait_ms - 50 <= t["wait_before_client_fin_ms"] <= wait_ms + 500, t

    return check


def _closed_first(connections: int) -> Check:
    def check(t: dict[str, Any]) -> None:
        assert t["connections"] == connections, t
        assert t["first_fin_from"] == ["server"] * connections and t["response_bytes"] == 0
        assert len(t["requests"]) == connections

    return check


def _reset_after_request(t: dict[str, Any]) -> None:
    assert t["first_rst_from"] == "server" and t["fins"] == 0 and t["bytes_server_to_client"] == 0, t
    assert len(t["requests"]) == 1 and t["rst_after_request_ms"] is not None


def _short_body(end: str) -> Check:
    def check(t: dict[str, Any]) -> None:
        assert t["content_length"] == 1000 and t["body_bytes_delivered"] == 100, t
        if end == "fin":
            assert t["first_fin_from"] == "server" and t["first_rst_from"] is None
        else:
            assert t["first_rst_from"] == "server" and t["first_fin_from"] is None

    return check


def _alert(sender: str, desc: str) -> Check:
    def check(t: dict[str, Any]) -> None:
        assert t["alert"] == {"from": sender, "level": "fatal", "desc": desc}, t

    return check


def _cert_verify(tls13: bool) -> Check:
    def check(t: dict[str, Any]) -> None:
        _alert("client", "unknown_ca")(t)
        assert t["server_hello"]
        assert t["certificate_readable"] is not tls13 and (t["server_encrypted_records"] > 0) is tls13, t

    return check


def _resolver(outcome: str, icmp: bool = False, retransmitted: bool = False) -> Check:
    def check(t: dict[str, Any]) -> None:
        assert t["tcp_connections"] == 0 and t["servers"] == ["127.0.0.53:53"], t
        assert {q[1] for q in t["questions"]} == {"A", "AAAA"}
        assert t["outcomes"] and set(t["outcomes"]) == {outcome}, t
        assert (t["icmp_unreachable"] == t["queries"]) if icmp else t["icmp_unreachable"] == 0
        if retransmitted:
            assert t["retransmitted"] >= 1 and all(900 <= g <= 1500 for g in t["retry_gaps_ms"]), t

    return check


def _udp(t: dict[str, Any]) -> None:
    assert t["datagrams_sent"] == 1 and t["replies"] == 0, t
    assert t["icmp_port_unreachable"] == 1 and t["icmp_quotes_sent_datagram"]
    assert all(us < 50_000 for us in t["icmp_after_us"])


def _smtp(commands: list[str], first_fin: tuple[str, ...], connections: int = 1) -> Check:
    def check(t: dict[str, Any]) -> None:
        assert t["banner"] == 220 and t["client_commands"] == commands, t
        assert not t["starttls_offered"] and "STARTTLS" not in t["client_commands"]
        assert t["first_fin_from"] in first_fin and t["connections"] == connections

    return check


def _sendall(t: dict[str, Any]) -> None:
    assert t["zero_window_from"] == "server" and t["first_rst_from"] == "server", t
    assert 0 < t["bytes_that_left"] < 200_000  # of megabytes handed to sendall()
    assert not t["client_fin"]


def _check_gather(t: dict[str, Any]) -> None:
    assert len(t["refused"]) == 1 and t["refused"][0].startswith("127.0.0.2:"), t
    assert all(s.startswith("127.0.0.1:") for s in t["established"])


def _check_stale(t: dict[str, Any]) -> None:
    assert t["connections"] == 1 and len(t["requests"]) == 2 and t["responses"] == [200], t
    assert t["first_fin_from"] == "server" and t["server_fin_before_second_request"]
    assert 150 <= t["idle_before_server_fin_ms"] <= 600 and "R" in t["answer_to_second_request"]


def _check_own_reset(t: dict[str, Any]) -> None:
    assert t["first_rst_from"] == "client" and not t["client_fin"] and t["rsts_from_client"] >= 1, t
    assert 0 < t["bytes_server_to_client"] < t["content_length"]


def _check_pong_close(t: dict[str, Any]) -> None:
    assert t["connections"] == 2 and t["pongs"] == [1, 1] and t["pings_sent"][0] in (1, 2), t
    assert t["first_fin_from"][0] == "server"  # the client only learns of the close from the FIN


def _check_max_clients(t: dict[str, Any]) -> None:
    assert t["connections"] == 4 and len(t["error_replies"]) == 4, t
    assert t["first_fin_from"] == ["client"] * 4 and max(t["connection_gaps_ms"]) >= 150


def _check_503(t: dict[str, Any]) -> None:
    assert t["connections"] == 1 and t["responses"] == [503] * 4 and len(t["requests"]) == 4, t
    assert t["request_gaps_ms"][-1] >= 300


def _check_wrong_version(t: dict[str, Any]) -> None:
    assert t["client_hello"] and t["alert"] is None and t["server_tls_records"] == 0, t
    assert t["server_first_bytes"].startswith("HTTP/1.1 400")


def _check_server_refuses(t: dict[str, Any]) -> None:
    _alert("server", "protocol_version")(t)
    assert not t["server_hello"]


def _check_client_refuses(t: dict[str, Any]) -> None:
    _alert("client", "protocol_version")(t)
    assert t["server_hello"] and t["server_record_version"] == 0x0301


def _check_alert_lost(t: dict[str, Any]) -> None:
    assert t["alert"] is None and t["server_hello"] and t["server_record_version"] == 0x0301, t
    assert t["first_fin_from"] == "client"


def _check_client_cert(t: dict[str, Any]) -> None:
    _alert("server", "handshake_failure")(t)
    assert t["certificate_request"] and t["client_certificate"]


def _check_tls13_client_cert(t: dict[str, Any]) -> None:
    assert t["readable_alerts"] == [] and not t["certificate_request_readable"], t
    assert t["server_encrypted_records"] > 0 and t["client_encrypted_records"] > 0
    assert t["first_rst_from"] == "server" or t["first_fin_from"] == "server"


CHECKS: dict[str, Check] = {
    **{name: _refused_once for name in ("requests_refused", "httpx_refused", "aiohttp_refused", "uvloop_refused",
                                        "urllib_refused_caught", "gevent_requests_refused")},
    "redis_refused": _refused_n(4, 150), "urllib3_retry_refused": _refused_n(4, 300),
    "asyncio_gather_one_refused": _check_gather,
    "taskgroup_two_refused": _group(["ipv4", "ipv4"]), "trio_nursery_refused": _group(["ipv4", "ipv4"]),
    "create_connection_all_errors": _group(["ipv6", "ipv4"]),
    "socket_connect_timeout": _connect_timeout(3, 4), "requests_connect_timeout": _connect_timeout(2, 2),
    "aiohttp_connect_timeout": _connect_timeout(2, 2),
    "requests_read_timeout": _read_timeout(800), "httpx_read_timeout": _read_timeout(700),
    "asyncio_read_timeout": _read_timeout(500),
    "tls_cert_verify_tls12": _cert_verify(tls13=False), "requests_cert_verify_tls13": _cert_verify(tls13=True),
    "requests_wrong_version": _check_wrong_version, "tls_server_refuses_version": _check_server_refuses,
    "tls_client_refuses_version": _check_client_refuses, "asyncio_tls_alert_lost": _check_alert_lost,
    "tls_client_cert_required": _check_client_cert, "tls_inprocess_cert_required": _check_tls13_client_cert,
    "http_client_remote_disconnected": _closed_first(1), "httpx_remote_protocol_error": _closed_first(1),
    "aiohttp_server_disconnected": _closed_first(2), "inprocess_http_handler_crash": _closed_first(1),
    "requests_reset_by_peer": _reset_after_request, "fork_child_server_reset": _reset_after_request,
    "http_client_incomplete_read": _short_body("fin"), "requests_short_body_reset": _short_body("rst"),
    "stale_keepalive": _check_stale, "own_side_reset": _check_own_reset,
    # after QUIT, the server's close (after 221) and the client's (after reading it) race: either FIN is first
    "smtp_server_disconnected": _smtp(["EHLO"], ("server",)),
    "smtp_starttls_absent": _smtp(["EHLO", "QUIT"], ("client", "server")),
    "inprocess_smtp_starttls": _smtp(["EHLO", "QUIT"], ("client", "server"), connections=2),
    "redis_pong_then_close": _check_pong_close, "redis_max_clients": _check_max_clients,
    "sendall_reset_midway": _sendall, "sendall_never_left": _sendall,
    "requests_503_retries": _check_503,
    "getaddrinfo_nxdomain": _resolver("NXDOMAIN"), "requests_nxdomain": _resolver("NXDOMAIN"),
    "resolver_servfail": _resolver("SERVFAIL"), "resolver_no_server": _resolver("icmp-unreachable", icmp=True),
    "resolver_silent": _resolver("unanswered", retransmitted=True),
    "udp_unconnected_timeout": _udp, "udp_connected_refused": _udp, "udp_metrics_second_send": _udp,
}


# -- the corpus on the wire -----------------------------------------------------------------------------------


def _skip_unless_runnable(case: Case) -> None:
    if (case.needs_netns or ISOLATE) and not netns.available():
        pytest.skip("needs root and unshare for a private network namespace")


# the cases this interpreter has the APIs for (TaskGroup, all_errors=True: 3.11), as in test_corpus: a case that
# cannot exist here is not collected, so that under CI=true a skip only ever means a capture that could not run
RUNNABLE = [c for c in CASES if sys.version_info[:2] >= c.min_python]


@pytest.mark.capture
@pytest.mark.parametrize("case", RUNNABLE, ids=[c.name for c in RUNNABLE])
def test_case_on_the_wire(case: Case, tmp_path: Path) -> None:
    _skip_unless_runnable(case)
    run = run_case(case, tmp_path, capture=True, isolate=ISOLATE)
    detail = f"argv={run.argv}\nstdout:\n{run.stdout[-2000:]}\nstderr:\n{run.stderr[-3000:]}"
    assert run.returncode == case.expect_exit, detail
    assert run.final_exception == case.exception, detail
    assert run.duration < 10, f"{case.name} ran {run.duration:.1f} s"
    facts = case.truth(run.witness())
    json.dumps(facts)  # plain data: the wirestack comparison will want to print it
    CHECKS[case.name](facts)


def test_the_corpus_is_complete() -> None:
    assert len(CASES) >= 32
    assert set(CHECKS) == set(BY_NAME), set(CHECKS) ^ set(BY_NAME)
    classes = {k for c in CASES for k in c.classes}
    for needed in ("refusal", "timeout", "tls", "reset", "close", "both-ends", "resolver", "udp", "exception-group",
                   "zero-window", "starttls", "stale-keepalive", "content-length", "caught"):
        assert needed in classes, needed
    for c in CASES:
        assert c.where in ("external", "in-process", "none"), c.name
        assert (c.peer is not None) == (c.where == "external"), c.name
        assert c.peer is None or c.peer in peers.KINDS, c.name
        assert c.doc and c.library and c.classes, c.name
        assert (c.exception is None) == (c.expect_exit == 0), c.name
        assert c.name in TRUTHS, c.name


# -- every case imports on 3.10 .. 3.13 --------------------------------------------------------------------

_IMPORT_CHECK = r"""
import importlib.abc, importlib.machinery, importlib.util, sys, types
THIRD_PARTY = {"requests", "urllib3", "httpx", "aiohttp", "redis", "trio", "uvloop", "gevent", "aiosmtpd"}

class Stub(types.ModuleType):
    __path__ = []
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Stub(self.__name__ + "." + name)
    def __call__(self, *a, **k):
        return Stub(self.__name__ + "()")

class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] not in THIRD_PARTY:
            return None
        top = sys.modules.get(name.split(".")[0])
        if top is not None and not isinstance(top, Stub):
            return None
        if top is None and importlib.machinery.PathFinder.find_spec(name.split(".")[0]) is not None:
            return None  # the real library, when this interpreter has it
        return importlib.machinery.ModuleSpec(name, self, is_package=True)
    def create_module(self, spec):
        return Stub(spec.name)
    def exec_module(self, module):
        pass

sys.meta_path.insert(0, Finder())
sys.path.insert(0, sys.argv[1])
for path in sys.argv[2:]:
    spec = importlib.util.spec_from_file_location("case_" + path.rsplit("/", 1)[-1][:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert hasattr(module, "PEER") and hasattr(module, "EXPECT_EXIT"), path
print("ok", len(sys.argv) - 2)
"""


def _pythons() -> list[str]:
    found = []
    for minor in (10, 11, 12, 13):
        hits = sorted(glob.glob(f"/root/.pyenv/versions/3.{minor}.*/bin/python"))
        if hits:
            found.append(hits[-1])
    return found


@pytest.mark.parametrize("python", _pythons() or ["none"])
def test_every_case_imports(python: str) -> None:
    if python == "none":
        pytest.skip("no pyenv interpreters")
    paths = [c.path for c in CASES]
    done = subprocess.run([python, "-c", _IMPORT_CHECK, str(ROOT), *paths], capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"ok {len(paths)}"


def test_every_case_file_is_a_case() -> None:
    assert sorted(p.stem for p in CASES_DIR.glob("*.py")) == sorted(BY_NAME)


# -- pure parts ------------------------------------------------------------------------------------------


def test_final_exception_plain_and_chained() -> None:
    text = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nKeyError: 'a'\n\n"
            "During handling of the above exception, another exception occurred:\n\n"
            "Traceback (most recent call last):\n  File \"x.py\", line 3, in <module>\n"
            "    raise requests.exceptions.ConnectionError(e)\n"
            "requests.exceptions.ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=1)\n")
    assert final_exception(text) == "requests.exceptions.ConnectionError"
    assert final_exception("all fine\n") is None
    assert final_exception("Traceback (most recent call last):\n  File \"x\", line 1\nTimeoutError\n") == \
        "TimeoutError"


def test_final_exception_group() -> None:
    text = ("  + Exception Group Traceback (most recent call last):\n"
            "  |   File \"t.py\", line 9, in <module>\n  |     asyncio.run(main())\n"
            "  | ExceptionGroup: unhandled errors in a TaskGroup (2 sub-exceptions)\n"
            "  +-+---------------- 1 ----------------\n    | Traceback (most recent call last):\n"
            "    | ConnectionRefusedError: [Errno 111] Connect call failed\n"
            "    +------------------------------------\n")
    assert final_exception(text) == "ExceptionGroup"


def test_final_exception_skips_earlier_thread_tracebacks() -> None:
    text = ("Exception in thread Thread-1:\nTraceback (most recent call last):\n  File \"a\"\nKeyError: 'x'\n"
            "Traceback (most recent call last):\n  File \"b\"\nhttp.client.RemoteDisconnected: Remote end closed\n")
    assert final_exception(text) == "http.client.RemoteDisconnected"


def test_flag_letters() -> None:
    assert flag_letters(0x002) == "S" and flag_letters(0x012) == "SA" and flag_letters(0x014) == "RA"
    assert flag_letters(0x011) == "FA" and flag_letters(0x018) == "PA" and flag_letters(0x010) == "A"
    assert flag_letters(0x019) == "FPA" and flag_letters(0x004) == "R"


def test_guess_ports_first_hint_wins() -> None:
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    got = guess_ports([(40000, 8443, hello), (8443, 40000, b"HTTP/1.1 400 Bad Request\r\n"),
                       (40001, 8080, b"GET / HTTP/1.1\r\n"), (2525, 40002, b"220 x ESMTP ready\r\n"),
                       (40003, 9999, b"\x00\x01")])
    assert got == {8443: "tls", 8080: "http", 2525: "smtp"}


def _tshark_line(**values: str) -> str:
    from tests.corpus.witness import FIELDS

    return "\t".join(values.get(f.replace(".", "_"), "") for f in FIELDS)


def test_parse_fields_tcp_and_icmp() -> None:
    syn = _tshark_line(frame_number="1", frame_time_epoch="10.0", frame_protocols="eth:ethertype:ip:tcp",
                       ip_src="127.0.0.1", ip_dst="127.0.0.1", tcp_srcport="40000", tcp_dstport="80",
                       tcp_flags="0x0002", tcp_seq_raw="1000", tcp_ack_raw="0", tcp_len="0",
                       tcp_window_size_value="65495")
    rst = _tshark_line(frame_number="2", frame_time_epoch="10.001", frame_protocols="eth:ethertype:ip:tcp",
                       ip_src="127.0.0.1", ip_dst="127.0.0.1", tcp_srcport="80", tcp_dstport="40000",
                       tcp_flags="0x0014", tcp_seq_raw="0", tcp_ack_raw="1001", tcp_len="0",
                       tcp_window_size_value="0")
    udp = _tshark_line(frame_number="3", frame_time_epoch="11.0", frame_protocols="eth:ethertype:ip:udp:data",
                       ip_src="127.0.0.1", ip_dst="127.0.0.1", udp_srcport="5000", udp_dstport="6000",
                       udp_length="15")
    icmp = _tshark_line(frame_number="4", frame_time_epoch="11.00002",
                        frame_protocols="eth:ethertype:ip:icmp:ip:udp:data", ip_src="127.0.0.1,127.0.0.1",
                        ip_dst="127.0.0.1,127.0.0.1", udp_srcport="5000", udp_dstport="6000", udp_length="15",
                        icmp_type="3", icmp_code="3")
    pkts = parse_fields("\n".join([syn, rst, udp, icmp]) + "\n")
    assert [p.proto for p in pkts] == ["TCP", "TCP", "UDP", "ICMP"]
    assert pkts[0].flags == "S" and pkts[1].flags == "RA" and pkts[2].udp_len == 7
    conns = connections(pkts)
    assert len(conns) == 1 and conns[0].outcome == "refused" and conns[0].first_rst == "server"
    errs = icmp_errors(pkts)
    assert len(errs) == 1 and errs[0].quoted_frame == 3 and errs[0].port_unreachable
    assert errs[0].quoted is not None and errs[0].quoted.dst == "127.0.0.1:6000"


def _tcp(frame: int, t: float, a: tuple[str, int], b: tuple[str, int], flags: str, seq: int, ack: int = 0,
         length: int = 0, window: int = 100) -> WirePacket:
    return WirePacket(frame, t, a[0], b[0], a[1], b[1], "TCP", flags, seq, ack, length, window)


def test_connections_split_on_new_isn_and_count_bytes_once() -> None:
    c, s = ("127.0.0.1", 40000), ("127.0.0.1", 80)
    pkts = [_tcp(1, 0.0, c, s, "S", 100), _tcp(2, 1.0, c, s, "S", 100),  # a retransmission: same ISN
            _tcp(3, 1.1, s, c, "SA", 500, 101), _tcp(4, 1.2, c, s, "PA", 101, 501, 10),
            _tcp(5, 1.3, c, s, "PA", 101, 501, 10),  # a retransmission of the same 10 bytes
            _tcp(6, 1.4, s, c, "FA", 501, 111), _tcp(7, 1.5, c, s, "RA", 111, 502),
            _tcp(8, 5.0, c, s, "S", 9000)]  # the 4-tuple again, a new ISN: a new connection
    conns = connections(pkts)
    assert len(conns) == 2
    first: Connection = conns[0]
    assert first.syn_count == 2 and first.outcome == "established" and first.bytes_c2s == 10
    assert first.first_fin == "server" and first.first_rst == "client" and first.server_isn == 500
    assert conns[1].outcome == "unanswered" and conns[1].isn == 9000


def test_dns_exchanges_pair_queries_responses_and_icmp() -> None:
    def dns(frame: int, a: tuple[str, int], b: tuple[str, int], qid: int, response: bool,
            rcode: int | None = None) -> WirePacket:
        return WirePacket(frame, float(frame), a[0], b[0], a[1], b[1], "UDP", udp_len=30, dns_id=qid,
                          dns_response=response, dns_qnames=("x.test",), dns_qtypes=(1,), dns_rcode=rcode)

    c, s = ("127.0.0.1", 5555), ("127.0.0.53", 53)
    from tests.corpus.witness import Quoted

    icmp = WirePacket(4, 4.0, "127.0.0.53", "127.0.0.1", None, None, "ICMP", icmp_type=3, icmp_code=3,
                      quoted=Quoted("UDP", "127.0.0.1:5555", "127.0.0.53:53"))
    ex = dns_exchanges([dns(1, c, s, 7, False), dns(2, c, s, 7, False), dns(3, s, c, 7, True, 3),
                        dns(4, c, s, 8, False), icmp])
    assert [e.outcome for e in ex] == ["NXDOMAIN", "icmp-unreachable"]
    assert len(ex[0].queries) == 2


def test_dns_reply_modes() -> None:
    query = bytes.fromhex("abcd01000001000000000000") + b"\x01x\x04test\x00" + b"\x00\x01\x00\x01"
    qid, flags, question, name, qtype = peers.dns_question(query)
    assert (qid, name, qtype) == (0xABCD, "x.test", 1)
    nx = peers.dns_reply(query, "nxdomain")
    assert nx is not None and nx[:2] == b"\xab\xcd" and nx[3] & 0x0F == 3 and nx[2] & 0x80
    sf = peers.dns_reply(query, "servfail")
    assert sf is not None and sf[3] & 0x0F == 2
    ans = peers.dns_reply(query, "answer")
    assert ans is not None and ans.endswith(socket.inet_aton("127.0.0.1")) and ans[7] == 1
    assert peers.dns_reply(query, "silent") is None


def test_parse_strace_joins_resumed_calls() -> None:
    text = ("101 socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_TCP) = 3\n"
            "101 connect(3, {sa_family=AF_INET, sin_port=htons(80)}, 16) = -1 ECONNREFUSED (Connection refused)\n"
            "102 poll([{fd=4, events=POLLIN}], 1, 800 <unfinished ...>\n"
            "101 sendto(5, \"x\", 1, 0, NULL, 0) = 1\n"
            "102 <... poll resumed>)             = 0 (Timeout)\n")
    calls = parse_strace(text)
    assert [c.name for c in calls] == ["socket", "connect", "sendto", "poll"]
    assert calls[1].errno == "ECONNREFUSED" and calls[3].timed_out and calls[3].pid == 102


def test_parse_opts() -> None:
    assert peers.parse_opts(["host=::1", "port=0", "status=503", "dual=true", "body=hi there"]) == \
        {"host": "::1", "port": 0, "status": 503, "dual": True, "body": "hi there"}
    with pytest.raises(ValueError):
        peers.parse_opts(["novalue"])


# -- peers, namespaces, strace ---------------------------------------------------------------------------


def test_in_thread_peers_start_and_stop() -> None:
    before = threading.active_count()
    port, stop = peers.in_thread("http", status=503)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 503")
    stop()
    port, stop = peers.in_thread("closed")
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) == 111
    stop()
    time.sleep(0.2)
    assert threading.active_count() <= before + 1  # at most a lingering daemon connection thread


def test_process_peer_prints_ready_and_goes_when_stdin_closes() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tests.corpus.peers", "udp_echo"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        word, port = proc.stdout.readline().split()
        assert word == "ready"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(b"echo?", ("127.0.0.1", int(port)))
            assert s.recv(100) == b"echo?"
        proc.stdin.close()
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_process_peer_refuses_an_unknown_kind() -> None:
    done = subprocess.run([sys.executable, "-m", "tests.corpus.peers", "nope"], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and done.stdout.startswith("error usage")


@pytest.mark.skipif(not netns.available(), reason="needs root and unshare")
def test_netns_is_private_and_leaves_nothing_behind() -> None:
    naptime = f"300.{os.getpid()}"  # a sleep of its own: other tests may be running sleeps meanwhile
    code = ("import socket, subprocess; print(open('/etc/resolv.conf').read().split()[1]); "
            "print(len(open('/proc/net/dev').read().splitlines()) - 2); "
            "print(socket.getaddrinfo('localhost', 1, type=socket.SOCK_STREAM)[0][4][0]); "
            f"subprocess.Popen(['sleep', '{naptime}'])")
    outside = Path("/etc/resolv.conf").read_text()
    done = netns.run_in_netns([sys.executable, "-c", code], netns.RESOLV, 30, hosts_text=netns.HOSTS_DUAL)
    assert done.returncode == 0, done.stderr
    nameserver, interfaces, localhost = done.stdout.split()
    assert nameserver == netns.NAMESERVER and interfaces == "1" and localhost == "::1"
    assert Path("/etc/resolv.conf").read_text() == outside
    time.sleep(0.2)  # the sleep it started died with the PID namespace
    leftover = subprocess.run(["pgrep", "-f", f"^sleep {naptime}$"], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", leftover.stdout


@pytest.mark.skipif(not netns.available(), reason="needs root and unshare")
def test_netns_timeout_kills_everything() -> None:
    marker = f"corpus-marker-{os.getpid()}"
    code = f"import subprocess, time; subprocess.Popen(['sleep', '61']); time.sleep(60)  # {marker}"
    start = time.monotonic()
    done = netns.run_in_netns([sys.executable, "-c", code], netns.RESOLV, 7)
    assert done.returncode == netns.DRIVER_STATUS and "ran longer" in done.stderr
    assert time.monotonic() - start < 7
    time.sleep(0.3)
    for pattern in (marker, "^sleep 61$"):
        leftover = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
        assert leftover.stdout.strip() == "", pattern


@pytest.mark.capture
def test_strace_shows_python_timeouts_as_poll_timeouts() -> None:
    case = BY_NAME["requests_read_timeout"]
    with peers.process(case.peer or "", **case.peer_opts) as peer:
        calls, done = strace_run([sys.executable, case.path, str(peer.port)], cwd=str(ROOT))
    assert done.returncode == 1 and "ReadTimeout" in done.stderr
    connects = [c for c in calls if c.name == "connect" and f"htons({peer.port})" in c.args]
    assert connects, calls
    fd = connects[0].args.split(",")[0]
    on_fd = [c for c in calls if c.args.startswith(f"{fd},") or c.args.startswith(f"[{{fd={fd},")]
    waits = [c for c in on_fd if c.name in ("poll", "ppoll") and c.timed_out]
    assert waits, on_fd  # Python's timeout: poll() returned 0
    assert not [c for c in on_fd if c.name in ("recvfrom", "recvmsg", "recv") and c.result != "-1"], on_fd
