"""Every corpus case run under `wirestack run`, and what wirestack says checked against an independent witness:
tshark's dissection of the very pcapng wirestack wrote (never wirestack's own reading of it).

For each case, in its own network namespace (its own lo, resolv.conf and hosts; nothing else on the wire):
- the program behaves as under python: the same exit status, the same exception at the end of its traceback,
  no frame of wirestack's in it;
- every TCP connection tshark sees is one of wirestack's flows with the same client, server, handshake outcome
  and bytes each way, and the facts about who closed first (FIN) and who reset (RST) name the same side;
- every TLS alert tshark can read is a `tls.alert` fact with the same sender and description;
- every ICMP error is a `udp.icmp` (or `icmp.error`) fact;
- every error is named in its own namespace (no OpenSSL, resolver or timeout error as a kernel errno), in the
  JSON and in the pcapng's comments (tshark + the Lua dissector);
- no two facts disagree about one packet (who sent it, what it is);
- and the lesson of the case's class is there, with the numbers the witness gives (retries and their gaps, the
  read timeout after an acknowledged request, Content-Length against what came, bytes that never left, ...).

Run with `pytest tests/corpus -m corpus`: about two minutes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .catalog import CASES, Case, CaseRun, final_exception, run_case
from .conftest import RUNS
from .witness import Witness

pytestmark = [pytest.mark.capture, pytest.mark.corpus]
ROOT = Path(__file__).resolve().parents[2]
LUA = ROOT / "wirestack" / "data" / "wirestack.lua"

_OUTCOME = {"established": "established", "refused": "refused", "unanswered": "unanswered",
            "midstream": "unknown"}


def endpoint(addr: list[Any]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def runnable(case: Case) -> bool:
    return sys.version_info[:2] >= case.min_python


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[CaseRun, dict[str, Any], Path]]:
    """Every case, once, under wirestack (the module's tests share the runs)."""
    out = {}
    for case in CASES:
        if not runnable(case):
            continue
        tmp = tmp_path_factory.mktemp(case.name)
        report, pcap = tmp / "r.json", tmp / "r.pcapng"
        under = [sys.executable, "-m", "wirestack", "run", "--json", str(report), "-w", str(pcap), "--no-color"]
        run = run_case(case, tmp, under=under, python=None, isolate=True)
        data = json.loads(report.read_text()) if report.exists() else {}
        out[case.name] = (run, data, pcap)
    RUNS.update(out)  # for the corpus table (conftest.py)
    return out


NAMES = [c.name for c in CASES if runnable(c)]


def get(runs: dict[str, tuple[CaseRun, dict[str, Any], Path]], name: str) -> tuple[CaseRun, dict[str, Any], Path]:
    run, data, pcap = runs[name]
    assert data, f"{name}: wirestack wrote no report: {run.stderr[-2000:]}"
    return run, data, pcap


def facts(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [f for f in data["facts"] if f["kind"] == kind]


@pytest.mark.parametrize("name", NAMES)
def test_the_program_behaves_as_under_python(runs: dict[str, Any], name: str) -> None:
    run, data, _ = get(runs, name)
    case = run.case
    assert run.returncode == case.expect_exit, run.stderr[-3000:]
    program_part = program_stderr(run)  # wirestack's report follows the program's own output on stderr
    assert final_exception(program_part) == case.exception, run.stderr[-3000:]
    assert "<wirestack probe>" not in program_part and "_wirestack_probe" not in program_part


def program_stderr(run: CaseRun) -> str:
    head, sep, _ = ("\n" + run.stderr).partition(f"\nwirestack run {Path(run.case.path).stem}: ")
    return head[1:] if sep else run.stderr


@pytest.mark.parametrize("name", NAMES)
def test_connections_are_the_ones_tshark_sees(runs: dict[str, Any], name: str) -> None:
    run, data, pcap = get(runs, name)
    w = Witness.load(str(pcap), run.port)
    flows = [f for f in data["flows"] if f["proto"] == "TCP"]
    mine: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for f in flows:
        mine.setdefault((endpoint(f["client"]["addr"]), endpoint(f["server"]["addr"])), []).append(f)
    seen: dict[tuple[str, str], int] = {}
    for c in w.connections():
        key = (c.client, c.server)
        index = seen.get(key, 0)
        seen[key] = index + 1
        assert key in mine and len(mine[key]) > index, (name, key, sorted(mine))
        flow = mine[key][index]
        assert flow["outcome"] == _OUTCOME[c.outcome], (name, key)
        assert (flow["bytes"]["client"], flow["bytes"]["server"]) == (c.bytes_c2s, c.bytes_s2c), (name, key)
        closed = [f for f in facts(data, "tcp.closed") if f["flow"] == flow["id"]]
        if c.first_fin is None:
            assert not closed, (name, key)
        else:
            assert [f["first_role"] for f in closed] == [c.first_fin], (name, key, closed)
        resets = sorted((f for f in facts(data, "tcp.reset") if f["flow"] == flow["id"]), key=lambda f: f["rst"])
        if c.outcome == "established":
            if c.first_rst is None:
                assert not resets, (name, key)
            else:
                assert resets and resets[0]["sender_role"] == c.first_rst, (name, key, resets)
        refused = [f for f in facts(data, "tcp.refused") if f["flow"] == flow["id"]]
        assert bool(refused) == (c.outcome == "refused"), (name, key)
    assert sum(seen.values()) == len(flows), (name, "wirestack has flows tshark does not")


@pytest.mark.parametrize("name", NAMES)
def test_tls_alerts_and_icmp_errors_are_told_by_their_sender(runs: dict[str, Any], name: str) -> None:
    run, data, pcap = get(runs, name)
    w = Witness.load(str(pcap), run.port)
    alerts = sorted((endpoint(f["sender"]["addr"]), f["description"]) for f in facts(data, "tls.alert")
                    if f["description"])
    assert alerts == sorted((a.src, a.name) for a in w.tls_alerts()), name
    icmp = facts(data, "udp.icmp") + facts(data, "icmp.error")
    assert len(icmp) == len(w.icmp_errors()), name


@pytest.mark.parametrize("name", NAMES)
def test_every_error_is_named_in_its_own_namespace(runs: dict[str, Any], name: str) -> None:
    _, data, pcap = get(runs, name)
    faults = [c["fault"] for c in data["calls"] if c["fault"]]

    def walk(e: dict[str, Any] | None) -> None:
        if e is None:
            return
        if e["fault"]:
            faults.append(e["fault"])
        for key in ("cause", "context"):
            walk(e[key])
        for g in e["group"]:
            walk(g)

    walk(data["exception"])
    for f in faults:
        if f["type"].startswith("ssl.") and "Error" in f["type"]:  # ssl.SSLError and its subclasses
            assert f["namespace"] == "openssl", f
        elif f["type"] in ("socket.gaierror",):
            assert f["namespace"] == "eai" and f["name"].startswith("EAI_"), f
        elif f["namespace"] == "errno":
            assert f["code"] > 0 and f["name"].startswith("E"), f
        if f["namespace"] != "errno":
            assert f["code"] is None or f["namespace"] in ("openssl", "eai", "h_errno"), f
    texts = " ".join(f["text"] for f in data["facts"])
    assert "EPERM" not in texts and "errno -" not in texts
    tshark = shutil.which("tshark")
    assert tshark
    errnos = subprocess.run([tshark, "-X", f"lua_script:{LUA}", "-r", str(pcap), "-Y", "wirestack.errno", "-T",
                             "fields", "-e", "wirestack.call", "-e", "wirestack.errno"], capture_output=True,
                            text=True, timeout=120)
    calls = {c["id"]: c for c in data["calls"]}
    for line in errnos.stdout.splitlines():  # per packet: its calls, and the errnos of those that have one
        call_ids, codes = line.split("\t")
        known = [calls[int(cid)]["fault"] for cid in call_ids.split(",")]
        kernel = [f["code"] for f in known if f and f["namespace"] == "errno"]
        assert sorted(int(c) for c in codes.split(",")) == sorted(kernel), (name, line)


@pytest.mark.parametrize("name", NAMES)
def test_no_two_facts_disagree_about_a_packet(runs: dict[str, Any], name: str) -> None:
    from wirestack.commands.read import load

    _, _, pcap = get(runs, name)
    report = load(pcap, decode_app=False).report
    packets = {p.id: p for p in report.trace.packets}
    for fact in report.facts:
        for pid, sender, what in fact.claims():
            p = packets[pid]
            if sender is not None:
                assert (p.src, p.sport) == sender, (name, fact.kind, pid)
            need = {"SYN": "S", "RST": "R", "FIN": "F", "SYN/ACK": "SA"}.get(what, "")
            assert set(need) <= set(p.flags), (name, fact.kind, pid, what)


# -- the lesson of each class, with the witness's numbers -------------------------------------------------------


def _truth(runs: dict[str, Any], name: str) -> tuple[dict[str, Any], dict[str, Any], Witness]:
    run, data, pcap = get(runs, name)
    w = Witness.load(str(pcap), run.port)
    return run.case.truth(w), data, w


REFUSALS = [n for n in NAMES if n in ("requests_refused", "httpx_refused", "aiohttp_refused", "uvloop_refused",
                                      "urllib_refused_caught", "gevent_requests_refused", "redis_refused",
                                      "urllib3_retry_refused")]


@pytest.mark.parametrize("name", REFUSALS)
def test_refusals_and_library_retries(runs: dict[str, Any], name: str) -> None:
    truth, data, _ = _truth(runs, name)
    assert len(facts(data, "tcp.refused")) == truth["refused_attempts"]
    retries = facts(data, "library.retries")
    if name in ("redis_refused", "urllib3_retry_refused"):  # one after the other, each after the last failed
        assert len(retries) == 1 and len(retries[0]["attempts"]) == truth["attempts"]
        starts = [a[1] / 1e6 for a in retries[0]["attempts"]]
        gaps = [round(b - a, 1) for a, b in zip(starts, starts[1:], strict=False)]
        assert all(abs(g - t) < 20 for g, t in zip(gaps, truth["attempt_gaps_ms"], strict=True)), (gaps, truth)
    elif name == "gevent_requests_refused":  # at once, not one after the other: no retry
        assert not retries


@pytest.mark.parametrize("name", [n for n in NAMES if n in ("socket_connect_timeout", "requests_connect_timeout",
                                                               "aiohttp_connect_timeout")])
def test_a_connect_timeout_is_the_programs_own(runs: dict[str, Any], name: str) -> None:
    truth, data, _ = _truth(runs, name)
    [silent] = facts(data, "tcp.unanswered")
    assert silent["copies"] == truth["syns"] and silent["ended_by"] == "timeout"
    if truth["syns"] > 1:
        assert len(facts(data, "tcp.syn_retransmits")[0]["waits_ns"]) == truth["syns"] - 1


@pytest.mark.parametrize("name", [n for n in NAMES if n in ("requests_read_timeout", "httpx_read_timeout",
                                                               "asyncio_read_timeout")])
def test_a_read_timeout_after_an_acknowledged_request(runs: dict[str, Any], name: str) -> None:
    truth, data, _ = _truth(runs, name)
    waits = facts(data, "tcp.read_timeout")
    assert truth["request_acked_by_server"] and truth["response_bytes"] == 0
    assert len(waits) == 1 and waits[0]["ack"] is not None and waits[0]["waiter"]["sockets"]
    assert (waits[0]["call"] is None) == (name == "asyncio_read_timeout")  # asyncio waits without a read call


@pytest.mark.parametrize("name", [n for n in NAMES if n in ("tls_cert_verify_tls12", "requests_cert_verify_tls13")])
def test_a_rejected_certificate_is_the_clients_verdict(runs: dict[str, Any], name: str) -> None:
    truth, data, _ = _truth(runs, name)
    [rejected] = facts(data, "tls.rejected_certificate")
    assert rejected["client"]["sockets"] and not rejected["server"]["sockets"]
    assert truth["alert"] is None or truth["alert"]["from"] == "client"
    assert not [f for f in facts(data, "tls.alert") if f["sender_role"] == "server"]


@pytest.mark.parametrize("name", [n for n in NAMES if n == "requests_wrong_version"])
def test_a_plain_text_answer_to_a_client_hello(runs: dict[str, Any], name: str) -> None:
    truth, data, _ = _truth(runs, name)
    [hello] = facts(data, "tls.hello")
    assert truth["client_hello"] and hello["reply"] == "not-tls" and hello["client"]["sockets"]


@pytest.mark.parametrize("name", [n for n in NAMES if n in ("http_client_incomplete_read",
                                                               "requests_short_body_reset")])
def test_a_body_cut_short_of_its_content_length(runs: dict[str, Any], name: str) -> None:
    truth, data, _ = _truth(runs, name)
    [short] = facts(data, "http.short_body")
    assert (short["promised"], short["delivered"]) == (truth["content_length"], truth["body_bytes_delivered"])
    assert short["ended_by"] == ("RST" if truth["first_rst_from"] == "server" and truth["first_fin_from"] is None
                                 else "FIN")


@pytest.mark.parametrize("name", [n for n in NAMES if n == "stale_keepalive"])
def test_a_request_into_a_connection_the_server_had_closed(runs: dict[str, Any], name: str) -> None:
    truth, data, _ = _truth(runs, name)
    assert truth["server_fin_before_second_request"]
    [stale] = facts(data, "tcp.stale")
    assert stale["sender"]["sockets"] and not stale["closer"]["sockets"]


@pytest.mark.parametrize("name", [n for n in NAMES if n in ("sendall_reset_midway", "sendall_never_left")])
def test_bytes_sendall_handed_over_that_never_left(runs: dict[str, Any], name: str) -> None:
    truth, data, _ = _truth(runs, name)
    if truth["zero_window_from"] == "server":
        assert [f["side"]["addr"][1] for f in facts(data, "tcp.zero_window")] == [w_port(data)]
    if name == "sendall_never_left":  # sendall() returned: the kernel had the bytes, the wire never did
        [unsent] = facts(data, "tcp.unsent")
        assert unsent["left"] == truth["bytes_that_left"] and unsent["written"] > unsent["left"]
    else:  # sendall() raised: how much it handed over is unknown, so nothing is said of it; the reset met it
        assert not facts(data, "tcp.unsent")
        [reset] = facts(data, "tcp.reset")
        met = next(c for c in data["calls"] if c["id"] == reset["met_by"])
        assert reset["sender_role"] == "server" and met["op"] == "sendall" and met["fault"]["name"] == "ECONNRESET"


def w_port(data: dict[str, Any]) -> int:
    flow = next(f for f in data["flows"] if f["proto"] == "TCP")
    return int(flow["server"]["addr"][1])


@pytest.mark.parametrize("name", [n for n in NAMES if n in ("smtp_starttls_absent", "inprocess_smtp_starttls")])
def test_an_ehlo_reply_without_starttls(runs: dict[str, Any], name: str) -> None:
    truth, data, _ = _truth(runs, name)
    assert not truth["starttls_offered"]
    [no] = facts(data, "smtp.no_starttls")
    assert "STARTTLS" not in no["extensions"]


@pytest.mark.parametrize("name", [n for n in NAMES if n in ("taskgroup_two_refused", "trio_nursery_refused",
                                                               "create_connection_all_errors")])
def test_an_exception_group_keeps_each_member_with_its_call(runs: dict[str, Any], name: str) -> None:
    truth, data, _ = _truth(runs, name)
    groups = facts(data, "exception.group")
    assert groups and len(groups[0]["members"]) >= truth["refused_attempts"] or name == "trio_nursery_refused"
    refused_calls = {f["call"] for f in facts(data, "tcp.refused")}
    member_calls = {m[1] for g in groups for m in g["members"] if m[1] is not None}
    origins = {f["call"] for f in facts(data, "exception.origin")} | {f["getsockopt"] for f in
                                                                       facts(data, "exception.built")}
    assert member_calls <= origins | refused_calls | {c["id"] for c in data["calls"]}
    assert len(facts(data, "tcp.refused")) == truth["refused_attempts"]


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("udp_")])
def test_an_icmp_error_and_whether_the_socket_was_told(runs: dict[str, Any], name: str) -> None:
    truth, data, _ = _truth(runs, name)
    icmp = facts(data, "udp.icmp")
    assert len(icmp) == truth["icmp_port_unreachable"]
    told = {"udp_unconnected_timeout": "unconnected", "udp_connected_refused": "call",
            "udp_metrics_second_send": "call"}[name]
    assert icmp and icmp[0]["told"] == told


@pytest.mark.parametrize("name", [n for n in NAMES if n in ("getaddrinfo_nxdomain", "requests_nxdomain",
                                                               "resolver_no_server", "resolver_servfail",
                                                               "resolver_silent")])
def test_a_resolver_error_with_the_queries_it_made(runs: dict[str, Any], name: str) -> None:
    truth, data, _ = _truth(runs, name)
    failed = facts(data, "resolve.failed")
    assert failed, data["facts"]
    expected = "EAI_NONAME" if name.endswith("nxdomain") else "EAI_AGAIN"
    assert all(f["error"] == expected for f in failed)
    assert sum(f["queries"] for f in failed) == truth["queries"]
    assert sum(f["icmp"] for f in failed) == truth["icmp_unreachable"]
