"""The IPython extension in a real kernel: ipykernel started by nbclient executing a small notebook, as Jupyter
would; and in a terminal IPython driven through a pty."""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pexpect
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.capture
TSHARK = shutil.which("tshark")


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def listener() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    conns: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conns.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for c in conns:
        c.close()


def execute(cells: list[str], cwd: Path) -> list[list[dict[str, Any]]]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=120).execute(cwd=str(cwd))
    return [[dict(o) for o in c.get("outputs", [])] for c in nb.cells]


def html_of(outputs: list[dict[str, Any]]) -> list[str]:
    return [o["data"]["text/html"] for o in outputs if o["output_type"] == "display_data"
            and "text/html" in o.get("data", {})]


def test_the_cell_magic_in_a_kernel_shows_the_html_report_with_its_ladder(workdir: Path, listener: int) -> None:
    port = closed_port()
    outputs = execute([
        "%load_ext wirestack",
        f'%%wire\nimport socket\ns = socket.socket()\nprint("before")\ns.connect(("127.0.0.1", {port}))',
        "[p.flags for p in wire.packets], [c.op for c in wire.calls]",
        f'%%wire\nc = socket.create_connection(("127.0.0.1", {listener}))\nc.sendall(b"hi")\nc.close()',
        "[p.flags for p in wire.packets][:3]",
        "%wire_save session.pcapng",
    ], workdir)
    magic = outputs[1]
    kinds = [o["output_type"] for o in magic]
    assert kinds == ["stream", "error", "display_data"]  # the cell's own output and traceback, then the report
    assert magic[0]["text"] == "before\n" and magic[1]["ename"] == "ConnectionRefusedError"
    page = html_of(magic)
    assert len(page) == 1
    report = html.unescape(re.sub(r"<[^>]+>", "", page[0]))
    assert f's.connect(("127.0.0.1", {port}))' in report and "ECONNREFUSED (111)" in report
    assert re.search(rf"→ 127\.0\.0\.1:\d+ → 127\.0\.0\.1:{port}\s+TCP\s+S\s", report)
    assert re.search(rf"← 127\.0\.0\.1:{port} → 127\.0\.0\.1:\d+\s+TCP\s+RA\s", report)
    assert '<g class="ladder"' in page[0] and "<svg" in page[0]  # the same page as --html: its ladder, inline
    assert "<style>" not in page[0] and "<body>" not in page[0]  # nothing that restyles the whole notebook
    plain = [o["data"]["text/plain"] for o in magic if o["output_type"] == "display_data"][0]
    assert "2 packets" in plain
    assert outputs[2][0]["data"]["text/plain"] == "(['S', 'RA'], ['socket', 'connect'])"

    second = html.unescape(re.sub(r"<[^>]+>", "", html_of(outputs[3])[0]))
    assert "no exception escaped" in second and str(port) not in second  # its own packets only
    assert outputs[4][0]["data"]["text/plain"] == "['S', 'SA', 'A']"
    assert outputs[5][0]["text"].startswith("wirestack: wrote session.pcapng (2 cells, ")

    assert TSHARK, "tshark is required (scripts/bootstrap installs it)"
    done = subprocess.run([TSHARK, "-r", str(workdir / "session.pcapng"), "-T", "fields", "-e", "tcp.srcport",
                           "-e", "tcp.dstport", "-e", "frame.comment"], capture_output=True, text=True, check=True)
    rows = [line.split("\t") for line in done.stdout.splitlines() if line]
    assert sum(str(port) in r[:2] for r in rows) == 2 and sum(str(listener) in r[:2] for r in rows) >= 4
    assert all("wirestack call=" in r[2] for r in rows)


def test_in_a_terminal_ipython_the_text_report(workdir: Path) -> None:
    port = closed_port()
    child = pexpect.spawn(sys.executable, ["-m", "IPython", "--no-banner", "--colors=nocolor", "--no-confirm-exit",
                                            "--simple-prompt"],
                          cwd=str(workdir), encoding="utf-8", timeout=60, dimensions=(60, 200),
                          env={**os.environ, "TERM": "dumb", "NO_COLOR": "1"})
    child.expect_exact("In [1]: ")
    child.sendline("%load_ext wirestack.ipython")
    child.expect_exact("In [2]: ")
    for line in ("%%wire", f"import socket; socket.socket().connect(('127.0.0.1', {port}))", "", ""):
        child.sendline(line)  # a cell magic's cell ends at blank lines
    child.expect_exact("In [3]: ")
    out = str(child.before)
    assert "ConnectionRefusedError" in out and "wirestack wire [1]:" in out
    assert re.findall(r"TCP\s+(\w+)\s", out)[:2] == ["S", "RA"]
    child.sendline("exit")
    child.expect(pexpect.EOF)


def test_jupyter_s_interrupt_stops_the_cell_not_the_capture(workdir: Path) -> None:
    from jupyter_client.manager import start_new_kernel

    port = closed_port()
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(workdir))
    try:
        def run(code: str, interrupt_after: float = 0) -> list[dict[str, Any]]:
            msg_id = kc.execute(code)
            if interrupt_after:
                import time

                time.sleep(interrupt_after)
                km.interrupt_kernel()  # SIGINT to the kernel's process group, as Jupyter's button sends it
            out = []
            while True:
                m = kc.get_iopub_msg(timeout=60)
                if m["parent_header"].get("msg_id") != msg_id:
                    continue
                if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                    return out
                out.append(m)

        run("%load_ext wirestack")
        run("%%wire\nimport socket, time\nsocket.socket().connect_ex(('127.0.0.1', 9))")
        stopped = run("%%wire\ntime.sleep(30)", interrupt_after=2)
        assert [m["content"]["ename"] for m in stopped if m["msg_type"] == "error"] == ["KeyboardInterrupt"]
        run(f"%%wire\nsocket.socket().connect_ex(('127.0.0.1', {port}))")
        flags = run("[p.flags for p in wire.packets]")
        assert [m["content"]["data"]["text/plain"] for m in flags if m["msg_type"] == "execute_result"] == \
            ["['S', 'RA']"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
