"""Golden files for the rendered report: fixed width, no colour; ports, paths, times and numbers normalised.

Regenerate after an intended change with `UPDATE_GOLDEN=1 scripts/test tests/test_render.py` and review the diff.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
import pyversion
from builders import CLIENT, SERVER, call, refused, tcp
from conftest import wirestack

from wirestack.model import CaptureInfo, Frame, Trace
from wirestack.output.text import render_text
from wirestack.report import build_report

GOLDEN = Path(__file__).parent / "golden"
STDLIB = re.compile(r"/[^\s\"]*/lib/python3\.\d+/")


def normalise(text: str) -> str:
    text = STDLIB.sub("<stdlib>/", text)
    text = re.sub(r'(<stdlib>/[\w/]+\.py", line )\d+', r"\1N", text)  # library line numbers vary by version
    text = re.sub(r"\d+(\.\d+)? (µs|ms|s)\b", "T", text)
    text = re.sub(r"\+T", "+T", text)
    text = re.sub(r"(seq|ack|mss|wscale)=\d+", r"\1=N", text)  # wscale follows the machine's buffer sizes
    text = re.sub(r"(127\.0\.0\.1|::1|\[::1\]):(?!464\b)\d+", r"\1:PORT", text)
    text = re.sub(r"\(\d+ seen", "(N seen", text)
    text = re.sub(r"captures/smtp-[\d-]+\.pcapng", "captures/smtp-TIME.pcapng", text)
    return "\n".join(" ".join(line.split()) for line in text.splitlines()).strip() + "\n"


def check(name: str, text: str, running: dict[str, str] | None = None) -> None:
    """`running`: text of the golden file (which keeps 3.11's) → what the running interpreter prints there."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        kept = text
        for golden, own in (running or {}).items():
            kept = kept.replace(own, golden)
        path.write_text(kept)
    expected = path.read_text()
    for golden, own in (running or {}).items():
        expected = expected.replace(golden, own)
    assert text == expected


def _seed_trace() -> Trace:
    stack = tuple(replace(f, code=code) for f, code in zip(refused(1).frames, [
        "smtplib.SMTP('127.0.0.1', port=66000)", "(code, msg) = self.connect(host, port)",
        "self.sock = self._get_socket(host, port, self.timeout)",
        "return socket.create_connection((host, port), timeout,", "raise exceptions[0]", "sock.connect(sa)"],
        strict=True))
    gai = call(1, "getaddrinfo", 0, 5, socket=0, local=None, remote=None, args={"host": "127.0.0.1", "port": 66000},
               result=[["AF_INET", "SOCK_STREAM", ["127.0.0.1", 464]]])
    connect = call(2, "connect", 10, 60, errno=111, args={"address": ["127.0.0.1", 464]},
                   stack=tuple(f for i, f in enumerate(stack) if i != 4))
    exc = replace(refused(2), frames=stack)
    packets = (tcp(1, 20, CLIENT, SERVER, "S", seq=1000), tcp(2, 34, SERVER, CLIENT, "RA", ack=1001))
    defines = {"errno:111": "/usr/include/asm-generic/errno.h: #define ECONNREFUSED 111 /* Connection refused */"}
    return Trace("smtp", "import smtplib\nsmtplib.SMTP('127.0.0.1', port=66000)\n", packets, (gai, connect), exc,
                 CaptureInfo("lo", None, 2, 2, 0), defines=defines)


def test_seed_report_golden() -> None:
    text = render_text(build_report(_seed_trace()), width=100)
    assert "\x1b[" not in text
    check("seed.txt", text)


def test_colour_only_when_asked() -> None:
    assert "\x1b[" in render_text(build_report(_seed_trace()), width=100, color=True)


def test_frames_without_source_still_render() -> None:
    trace = _seed_trace()
    exc = trace.exception
    assert exc is not None
    bare = replace(trace, exception=replace(exc, frames=tuple(Frame(f.file, f.line, f.function, "", f.instance)
                                                              for f in exc.frames)))
    assert 'File "<stdin>", line 1, in <module>' in render_text(build_report(bare))


@pytest.mark.capture
def test_live_smtp_report_golden(workdir: Path) -> None:
    # wide enough that nothing wraps: times and ports vary in length, and are normalised after rendering
    done = wirestack("smtp", "--no-color", "--width", "1000", "--no-pcap", "--no-kernel")  # kernel: test_kernel.py
    assert done.returncode == 0, done.stderr
    # create_connection's re-raise, as this interpreter's socket.py has it ("raise err" on 3.10)
    check("smtp-live.txt", normalise(done.stdout),
          {"\nraise exceptions[0] transport interface": f"\n{pyversion.RAISE_CODE} transport interface"})
