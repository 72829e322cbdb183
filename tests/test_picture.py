"""Pictures: SVG (valid XML) and HTML with the ladder diagram; golden files with times and ports normalised.

Regenerate after an intended change with `UPDATE_GOLDEN=1 scripts/test tests/test_picture.py` and review the diff.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import wirestack
from pcaps import pcap, port_unreachable, refused, udp
from test_render import _seed_trace

from wirestack.commands.read import load
from wirestack.output.picture import ladder, render_html, render_svg
from wirestack.report import build_report

GOLDEN = Path(__file__).parent / "golden"
SVG = "{http://www.w3.org/2000/svg}"


def normalise(text: str) -> str:
    text = re.sub(r"\d+(\.\d+)? (µs|ms|s)\b", "T", text)
    text = re.sub(r"(127\.0\.0\.1|::1|\[::1\]):(?!464\b|9999\b)\d+", r"\1:PORT", text)
    text = re.sub(r"(seq|ack)=\d+", r"\1=N", text)
    return text


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def _arrows(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg.encode())
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "arrow"]


def test_seed_svg_golden_and_valid() -> None:
    svg = render_svg(build_report(_seed_trace()))
    arrows = _arrows(svg)  # parses: valid XML
    assert [a.get("data-packet") for a in arrows] == ["1", "2"]
    texts = ["".join(t.itertext()) for t in ET.fromstring(svg.encode()).iter(f"{SVG}text")]
    assert "traced 127.0.0.1:40000" in texts and "peer 127.0.0.1:464" in texts
    assert "#1 SYN  +0 µs" in texts and "#2 RST/ACK  +14 µs" in texts
    assert texts.count("socket.py:836 create_connection") == 2
    assert texts.count("connect(127.0.0.1:464) → ECONNREFUSED (111)") == 2
    check("seed.svg", normalise(svg))


def test_seed_html_golden() -> None:
    html = render_html(build_report(_seed_trace()))
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "ConnectionRefusedError" in html
    check("seed.html", normalise(html))


def _wire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    dgram = udp(40, ("127.0.0.1", 40001), ("127.0.0.1", 9999))
    (tmp_path / "w.pcap").write_bytes(pcap(refused(after_us=22) + [dgram, port_unreachable(45, dgram)]))
    monkeypatch.chdir(tmp_path)  # the file's name is part of the report: the same name, the same text
    loaded = load("w.pcap", decode_app=False)
    assert not loaded.report.trace.traced
    return loaded.report


def test_wire_only_picture_shows_flows_and_no_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wire = _wire(tmp_path, monkeypatch)
    lad = ladder(wire)
    assert lad.lifelines == ("client 127.0.0.1 (2 endpoints)", "peer 127.0.0.1:464", "peer 127.0.0.1:9999",
                             "peer 127.0.0.1")
    assert [(a.packet, a.left_to_right, a.peer) for a in lad.arrows] == [(1, True, 1), (2, False, 1), (3, True, 2),
                                                                          (4, False, 3)]
    assert all(a.frame == "" and a.call == "" for a in lad.arrows)
    svg = render_svg(wire)
    assert len(_arrows(svg)) == 4 and "Python frame" not in svg
    check("wire.svg", normalise(svg))


def test_hostile_labels_stay_valid_xml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    wire = _wire(tmp_path, monkeypatch)
    trace = replace(wire.trace, packets=tuple(replace(p, app="<b>&\x00\x1b[31m\u202e") for p in wire.trace.packets),
                    title="\x1b]0;owned\x07")
    svg = render_svg(build_report(trace))
    _arrows(svg)
    assert "\x1b" not in svg and "\u202e" not in svg


@pytest.mark.capture
def test_live_run_and_read_write_pictures(workdir: Path) -> None:
    done = wirestack("smtp", "-w", "x.pcapng", "--svg", "live.svg", "--html", "live.html")
    assert done.returncode == 0, done.stderr
    assert len(_arrows(Path("live.svg").read_text())) == 2
    assert "peer 127.0.0.1:464" in Path("live.html").read_text()
    assert wirestack("read", "x.pcapng", "--svg", "read.svg", "--html", "read.html").returncode == 0
    assert Path("read.svg").read_text() == Path("live.svg").read_text()
    assert Path("read.html").read_text() == Path("live.html").read_text()
    assert "live.svg exists" in wirestack("smtp", "--svg", "live.svg").stderr
