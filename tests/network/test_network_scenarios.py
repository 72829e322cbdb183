"""The network scenarios as a user runs them (`wirestack NAME -w FILE --json FILE`), each checked against tshark
on the pcapng it wrote: the witness that wirestack's own report is not.

Every scenario: exit 0, the interfaces of the file are the lab's links, every packet a fact cites exists and is
what the fact says it is (by tshark's fields), the exception is the one Python raised, in its own namespace, and
nothing of the lab outlives the run (netlab.nothing_left).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from netlab import ROOT, frames, nothing_left  # noqa: F401  (nothing_left: autouse fixture)

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
LINKS = ["router/router-eth0", "router/router-eth1"]
CLIENT, ROUTER, SERVER = "192.0.2.10", "192.0.2.1", "198.51.100.10"
CLIENT6, NOBODY6 = "2001:db8:1::10", "2001:db8:1::99"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI", "").lower() not in ("1", "true", "yes"),
                                reason="a network lab needs root")


def run(name: str, tmp: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    pcap, report = tmp / f"{name}.pcapng", tmp / f"{name}.json"
    done = subprocess.run([sys.executable, "-m", "wirestack", name, "-w", str(pcap), "--json", str(report),
                           "--no-color"], capture_output=True, text=True, env=ENV, timeout=120,
                          stdin=subprocess.DEVNULL, cwd=tmp)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    data: dict[str, Any] = json.loads(report.read_text())
    names = subprocess.run(["tshark", "-n", "-r", str(pcap), "-T", "fields", "-e", "frame.interface_name"],
                           capture_output=True, text=True, timeout=30).stdout.split()
    assert set(names) <= set(LINKS) and data["capture"]["links"] == LINKS
    wire = frames(pcap)
    for row, iface in zip(wire, names, strict=True):
        row["interface"] = iface
    assert len(wire) == len(data["packets"])
    for fact in data["facts"]:  # every cited packet exists
        assert all(1 <= pid <= len(wire) for pid in fact["packets"]), fact
    # the reread file gives the same report
    back = subprocess.run([sys.executable, "-m", "wirestack", "read", str(pcap), "--json", "-"],
                          capture_output=True, text=True, env=ENV, timeout=120, cwd=tmp)
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["facts"] == data["facts"]
    return data, wire


def facts(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [f for f in data["facts"] if f["kind"] == kind]


def fault(data: dict[str, Any]) -> tuple[str, str, Any]:
    e = data["exception"]
    return e["type"], e["fault"]["namespace"], e["fault"]["name"] or e["fault"]["code"]  # a timeout: no code


def on(wire: list[dict[str, str]], pid: int) -> dict[str, str]:
    return wire[pid - 1]


def test_no_route_host(tmp_path: Path) -> None:
    data, wire = run("no-route-host", tmp_path)
    assert fault(data) == ("OSError", "errno", "EHOSTUNREACH")
    asks = [i + 1 for i, f in enumerate(wire) if f.get("arp.opcode") == "1" and f.get("arp.src.proto_ipv4") == CLIENT]
    assert len(asks) >= 2 and not [f for f in wire if "tcp.srcport" in f]  # tshark: ARP only, no SYN left
    (fact,) = facts(data, "neighbour.unanswered")
    assert sorted(fact["requests"]) == asks and "nobody on the link answered" in fact["text"]


def test_no_route_host6(tmp_path: Path) -> None:
    """IPv6: neighbour solicitations (tshark: ICMPv6 135, target the address) instead of ARP, none answered, no
    SYN; each is the connect's, and the kernel's lines name the socket by its IPv6 addresses."""
    data, wire = run("no-route-host6", tmp_path)
    assert fault(data) == ("OSError", "errno", "EHOSTUNREACH")
    asks = [i + 1 for i, f in enumerate(wire) if f.get("icmpv6.type") == "135" and f.get("ipv6.src") == CLIENT6
            and f["interface"] == LINKS[0]]
    assert len(asks) >= 2 and not [f for f in wire if "tcp.srcport" in f]
    assert not [f for f in wire if f.get("icmpv6.type") == "136" and f.get("ipv6.src") == NOBODY6]
    (fact,) = facts(data, "neighbour.unanswered")
    assert sorted(fact["requests"]) == asks and "nobody on the link answered" in fact["text"]
    (connect,) = [c for c in data["calls"] if c["op"] == "connect"]
    assert set(asks) <= set(connect["packets"])
    states = [k for k in data["kernel"] if k["event"] == "inet_sock_set_state" and k["call"] == connect["id"]]
    assert states and all(k["fields"]["daddrv6"] == NOBODY6 for k in states)
    text = subprocess.run([sys.executable, "-m", "wirestack", "read", str(tmp_path / "no-route-host6.pcapng"),
                           "--no-color", "--width", "200"], capture_output=True, text=True, env=ENV, timeout=60).stdout
    assert f"[{NOBODY6}]:80)" in text and f"neighbor solicitation for {NOBODY6}" in text


def test_no_route_net(tmp_path: Path) -> None:
    data, wire = run("no-route-net", tmp_path)
    assert fault(data) == ("OSError", "errno", "ENETUNREACH")
    assert wire == []
    assert facts(data, "route.none") and "not one packet" in facts(data, "route.none")[0]["text"]


def test_firewall_drop(tmp_path: Path) -> None:
    data, wire = run("firewall-drop", tmp_path)
    assert fault(data) == ("TimeoutError", "timeout", None)
    syns = [i + 1 for i, f in enumerate(wire) if f.get("tcp.flags.syn") == "1" and f.get("tcp.flags.ack") == "0"]
    assert len(syns) >= 2 and {on(wire, p)["interface"] for p in syns} == {LINKS[0]}  # never past the router
    (stopped,) = facts(data, "path.stopped")
    assert set(stopped["packets"]) & set(syns) and "did not pass them on" in stopped["text"]
    assert not [f for f in wire if f.get("tcp.flags.reset") == "1" or "icmp.type" in f]
    assert facts(data, "firewall.counted")


def test_firewall_reject(tmp_path: Path) -> None:
    data, wire = run("firewall-reject", tmp_path)
    assert fault(data) == ("OSError", "errno", "EHOSTUNREACH")
    resets = [i + 1 for i, f in enumerate(wire) if f.get("tcp.flags.reset") == "1" and f.get("ip.src") == SERVER
              and f["interface"] == LINKS[0]]
    assert len(resets) == 2
    origins = {f["packets"][0]: f["text"] for f in facts(data, "ip.ttl_origin")}
    forged, real = sorted(resets, key=lambda p: on(wire, p)["tcp.srcport"])  # 81: the router's, 82: the server's
    assert on(wire, forged)["ip.ttl"] == "64" and "the router made it" in origins[forged]
    assert on(wire, real)["ip.ttl"] == "63" and "came from beyond the router" in origins[real]
    admin = [i + 1 for i, f in enumerate(wire) if (f.get("icmp.type"), f.get("icmp.code")) == ("3", "13")]
    assert admin and on(wire, admin[0])["ip.src"] == ROUTER


def test_ttl(tmp_path: Path) -> None:
    data, wire = run("ttl", tmp_path)
    assert fault(data) == ("OSError", "errno", "EHOSTUNREACH")
    exceeded = [i + 1 for i, f in enumerate(wire) if f.get("icmp.type") == "11"]
    assert len(exceeded) == 1 and on(wire, exceeded[0])["ip.src"] == ROUTER
    (icmp,) = [f for f in facts(data, "udp.icmp") if exceeded[0] in f["packets"]]
    assert "time exceeded" in icmp["text"] and "EHOSTUNREACH (113)" in icmp["text"]


def test_mtu(tmp_path: Path) -> None:
    data, wire = run("mtu", tmp_path)
    assert data["exit_code"] == 0 and data["exception"] is None
    needed = [f for f in wire if (f.get("icmp.type"), f.get("icmp.code")) == ("3", "4")]
    assert needed and {f.get("icmp.mtu") for f in needed} == {"1000"}
    far = [int(f["ip.len"]) for f in wire if f["interface"] == LINKS[1] and "ip.len" in f]
    assert far and max(far) <= 1000
    (mtu,) = facts(data, "path.mtu")
    assert "next-hop MTU 1000" in mtu["text"]
    assert_handshake_mss(mtu, wire)


def assert_handshake_mss(fact: dict[str, Any], wire: list[dict[str, str]]) -> None:
    """The MSS the fact says each end announced is the one tshark reads in the first SYN and SYN/ACK, and the
    sentence gives it (Linux derives 1460 from the 1500-byte links each end sits on)."""
    near = [f for f in wire if f["interface"] == LINKS[0] and f.get("tcp.flags.syn") == "1"]
    syn = next(i for i, f in enumerate(wire, 1) if f in near and f.get("tcp.flags.ack") == "0")
    synack = next(i for i, f in enumerate(wire, 1) if f in near and f.get("tcp.flags.ack") == "1")
    assert [tuple(m) for m in fact["mss"]] == [(syn, "SYN", int(wire[syn - 1]["tcp.options.mss_val"])),
                                               (synack, "SYN/ACK", int(wire[synack - 1]["tcp.options.mss_val"]))]
    assert wire[syn - 1]["tcp.options.mss_val"] == "1460"
    assert f"MSS 1460 (SYN #{syn})" in fact["text"] and "allows IP packets of 1500 bytes" in fact["text"]


def test_mtu_black_hole(tmp_path: Path) -> None:
    data, wire = run("mtu-black-hole", tmp_path)
    assert fault(data) == ("TimeoutError", "timeout", None)
    assert not [f for f in wire if "icmp.type" in f]  # no ICMP ever reaches the client's link
    big = [f for f in wire if f["interface"] == LINKS[0] and int(f.get("ip.len", 0)) > 1000]
    assert big and not [f for f in wire if f["interface"] == LINKS[1] and int(f.get("ip.len", 0)) > 1000]
    (hole,) = facts(data, "path.black_hole")
    assert "no ICMP fragmentation needed came back" in hole["text"]
    assert_handshake_mss(hole, wire)


def test_nat(tmp_path: Path) -> None:
    data, wire = run("nat", tmp_path)
    assert data["exit_code"] == 0
    near = {f["ip.src"] for f in wire if f["interface"] == LINKS[0] and f.get("ip.dst") == SERVER}
    far = {f["ip.src"] for f in wire if f["interface"] == LINKS[1] and f.get("ip.dst") == SERVER}
    assert near == {CLIENT} and far == {"198.51.100.1"}  # tshark: the source was rewritten
    (nat,) = facts(data, "nat.rewrite")
    assert "198.51.100.1" in nat["text"] and CLIENT in nat["text"]


@pytest.mark.parametrize(("name", "code", "tries"), [("dns-nxdomain", "EAI_NONAME", 1),
                                                      ("dns-servfail", "EAI_AGAIN", 2), ("dns-silent", "EAI_AGAIN", 2)])
def test_dns(tmp_path: Path, name: str, code: str, tries: int) -> None:
    data, wire = run(name, tmp_path)
    assert fault(data) == ("socket.gaierror", "eai", code)
    queries = [f for f in wire if f.get("dns.flags.response") == "0" and f["interface"] == LINKS[0]]
    answers = [f for f in wire if f.get("dns.flags.response") == "1" and f["interface"] == LINKS[0]]
    (dns,) = facts(data, "dns.tries")
    assert dns["queries"] == len(queries) and dns["tries"] == tries
    assert len(dns["rcodes"]) == len(answers)
    assert not [f for f in wire if "tcp.srcport" in f]  # the name never resolved: no connection was tried


def test_fragments(tmp_path: Path) -> None:
    data, wire = run("fragments", tmp_path)
    near = [f for f in wire if f["interface"] == LINKS[0] and f.get("ip.src") == CLIENT]
    assert [f.get("ip.flags.mf") for f in near] == ["1", "1", "0"]
    (frag,) = facts(data, "ip.fragments")
    assert frag["sizes"] == [int(f["ip.len"]) for f in near]
    (udp,) = facts(data, "udp.exchange")
    assert "(3,000 bytes)" in udp["text"]  # the datagram's data, not its first fragment's


# -- without root: the same labs in a user namespace, as `nobody` -------------------------------------------------


def _interpreter_for_nobody() -> str | None:
    """An interpreter user 65534 may run that can import this venv's packages (same minor version): the running
    one when it is reachable, else the system's (pyenv's live under /root, mode 0700)."""
    for candidate in (os.path.realpath(sys.executable), "/usr/bin/python3"):
        # through env(1), as the test runs it: setpriv itself may find another interpreter of the same name
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", candidate, "-c",
                               "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True,
                              timeout=30)
        if done.returncode == 0 and done.stdout.strip() == f"{sys.version_info[0]}.{sys.version_info[1]}":
            return candidate
    return None


# each scenario's lesson, which it must teach also without root (no kernel layer in a user namespace)
LESSONS = {"no-route-host": "neighbour.unanswered", "no-route-host6": "neighbour.unanswered",
           "no-route-net": "route.none", "firewall-drop": "path.stopped", "firewall-reject": "ip.ttl_origin",
           "ttl": "ip.ttl_origin", "mtu": "path.mtu", "mtu-black-hole": "path.black_hole", "nat": "nat.rewrite",
           "dns-nxdomain": "dns.tries", "dns-servfail": "dns.tries", "dns-silent": "dns.tries",
           "fragments": "ip.fragments"}


def test_every_network_scenario_has_its_lesson_here() -> None:
    from wirestack.labs.scenarios import network_catalogue

    assert sorted(LESSONS) == sorted(network_catalogue())


@pytest.mark.parametrize("name", sorted(LESSONS))
def test_as_nobody_in_a_user_namespace(tmp_path: Path, name: str) -> None:
    import sysconfig

    python = _interpreter_for_nobody()
    if python is None:
        message = "no interpreter of this version that user 65534 may run"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    tmp_path.chmod(0o777)
    for parent in tmp_path.parents:  # pytest's folders are root's, mode 0700
        if str(parent).startswith("/tmp/pytest-of-"):
            parent.chmod(0o755)
    path = os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    report = tmp_path / "r.json"
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", f"HOME={tmp_path}",
                           f"PYTHONPATH={path}", python, "-m", "wirestack", name, "--json", str(report), "-w",
                           str(tmp_path / "r.pcapng"), "--no-color"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    assert data["capture"]["links"] == LINKS
    assert facts(data, LESSONS[name]), sorted(f["kind"] for f in data["facts"])
    assert (tmp_path / "r.pcapng").stat().st_uid == 65534


def test_an_interrupted_lab_leaves_nothing(tmp_path: Path) -> None:
    """SIGINT while the client waits (dns-silent: two 1 s resolver timeouts): exit 130, a valid file written, and
    no host, veth, nft table or helper process of the lab left (netlab.nothing_left checks after the test)."""
    import signal
    import time

    pcap = tmp_path / "r.pcapng"
    proc = subprocess.Popen([sys.executable, "-m", "wirestack", "dns-silent", "-w", str(pcap), "--no-color"],
                            env=ENV, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline, first = time.monotonic() + 20, None  # until the spool on disk grows past its header: packets came
    while time.monotonic() < deadline:
        sizes = [p.stat().st_size for p in tmp_path.glob(".*wirestack-spool*")]
        if sizes and first is None:
            first = sizes[0]
        elif sizes and first is not None and sizes[0] > first:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: the program was stopped" in err
    frames(pcap)  # a valid pcapng (tshark reads it); which packets it holds: see issue 15's note on interrupted calls


def test_the_ladder_has_a_lifeline_per_host(tmp_path: Path) -> None:
    """nat's picture: client, router, server; each packet an arrow on the link tshark says it was seen on, from
    the host that sent it there (the router forwards: one packet, two arrows)."""
    import re

    data, wire = run("nat", tmp_path)
    svg = tmp_path / "nat.svg"
    done = subprocess.run([sys.executable, "-m", "wirestack", "read", str(tmp_path / "nat.pcapng"), "--svg", str(svg)],
                          capture_output=True, text=True, env=ENV, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = svg.read_text()
    names = re.findall(r'text-anchor="middle" font-weight="bold" fill="#[0-9a-f]+">([^<]*)<', text)
    xs = [int(x) for x in re.findall(r'<text x="(\d+)" y="\d+" text-anchor="middle" font-weight="bold"', text)]
    assert names == ["client (traced)", "router", "server"]
    arrows = {int(m[0]): (int(m[1]), int(m[2])) for m in re.findall(
        r'<g class="arrow" data-packet="(\d+)">\s*<line x1="(\d+)" y1="\d+" x2="(\d+)"', text)}
    for n, row in enumerate(wire, 1):
        if "ip.src" not in row:
            continue
        near = row["interface"] == LINKS[0]
        ends = (xs[0], xs[1]) if near else (xs[1], xs[2])
        towards_server = row["ip.dst"] == SERVER
        assert arrows[n] == (ends if towards_server else ends[::-1]), (n, row)
