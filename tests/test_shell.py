"""`wirestack shell` driven through a pseudo-terminal, as a person types at it: the classic two lines, a second
input with its own report, Ctrl-C during a blocking recv, Ctrl-D writing the session's pcapng (checked by tshark),
the `wire` helper, and the console printing exactly what an untraced console prints."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from conftest import ROOT

pytestmark = pytest.mark.capture
PROMPT = ">>> "
TSHARK = shutil.which("tshark")


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


class Session:
    """One `wirestack shell` (or `command`) in a pty; `type(line)` returns what came back before the next
    prompt."""

    def __init__(self, cwd: Path, *options: str, prompt: str = PROMPT, command: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        argv = command or [sys.executable, "-m", "wirestack", "shell", "--no-color", "--width", "200", *options]
        self.prompt = prompt
        self.child = pexpect.spawn(argv[0], argv[1:],
                                   cwd=str(cwd), encoding="utf-8", timeout=60, dimensions=(60, 200),
                                   env={**os.environ, "TERM": "dumb", **(env or {})})
        self.child.expect_exact(prompt)
        self.banner = str(self.child.before)

    def type(self, line: str) -> str:
        self.child.sendline(line)
        self.child.expect_exact(self.prompt)
        out = str(self.child.before).replace("\r\n", "\n")
        return out.split("\n", 1)[1] if "\n" in out else ""  # after the echoed line

    def end(self) -> str:
        self.child.sendeof()
        self.child.expect(pexpect.EOF)
        self.child.close()
        return str(self.child.before).replace("\r\n", "\n")


@pytest.fixture
def listener() -> Iterator[int]:
    """A server on loopback that accepts, reads what comes, and never answers (untraced: this process)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    conns: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conns.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for c in conns:
        c.close()


def report_rows(text: str) -> list[str]:
    """The packet rows of a report: '#1 +77 µs → 127.0.0.1:33710 → 127.0.0.1:42771  TCP  S ...'."""
    return [line.strip() for line in text.splitlines() if re.match(r"\s+#\d+\s+[+-]", line)]


def test_the_classic_two_lines_then_an_input_that_works(workdir: Path, listener: int) -> None:
    port = closed_port()
    shell = Session(workdir, "-w", "session.pcapng")
    assert "wirestack shell: socket calls traced, packets captured on lo" in shell.banner
    first = shell.type("import socket; s = socket.socket()")
    assert first.strip() == "wirestack [1]: 1 socket call (socket), no packet; `wire.report` has it all"
    second = shell.type(f's.connect(("127.0.0.1", {port}))')
    # the console's own traceback first, as python prints it (from 3.13 on with the source line), then the report
    # of this input alone
    head, _, rest = second.partition("ConnectionRefusedError: [Errno 111] Connection refused\n")
    assert head.startswith('Traceback (most recent call last):\n  File "<stdin>", line 1, in <module>\n')
    assert (f's.connect(("127.0.0.1", {port}))' in head) == (sys.version_info >= (3, 13))
    assert f'wirestack shell [2]: s.connect(("127.0.0.1", {port}))' in second
    lines = second.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith(f's.connect(("127.0.0.1", {port}))')
              and "program" in line)
    under = lines[at:]
    assert "kernel  connect(127.0.0.1:" in under[1] and "ECONNREFUSED (111)" in under[1]
    rows = report_rows("\n".join(under))
    assert re.search(rf"→ 127\.0\.0\.1:\d+ → 127\.0\.0\.1:{port}\s+TCP\s+S\s", rows[0])
    assert re.search(rf"← 127\.0\.0\.1:{port} → 127\.0\.0\.1:\d+\s+TCP\s+RA\s", rows[1])
    assert "captured on lo: 2 packets of the program's flows" in second

    third = shell.type(f'c = socket.create_connection(("127.0.0.1", {listener})); c.sendall(b"hello"); c.close()')
    assert f"wirestack shell [3]: c = socket.create_connection((\"127.0.0.1\", {listener}))" in third
    assert "no exception escaped" in third and str(port) not in third  # its own packets only
    assert re.search(rf"connect\(127\.0\.0\.1:{listener}\) → ok .* #1 #2 #3", third)
    assert re.search(r"sendall\(5 bytes\) → ok .* #4", third)
    flags = shell.type("[p.flags for p in wire.packets]")
    assert flags.startswith("['S', 'SA', 'A', 'PA'") and "'FA'" in flags

    assert "input 3:" in shell.type("wire")  # the last input that made socket calls
    assert shell.type(f"all({listener} in (p.sport, p.dport) for p in wire.packets)").strip() == "True"
    assert shell.type('wire.save("third.pcapng")').strip() == "'third.pcapng'"
    out = shell.end()
    assert "wirestack: wrote session.pcapng (7 inputs, " in out

    assert TSHARK, "tshark is required (scripts/bootstrap installs it)"
    fields = subprocess.run([TSHARK, "-r", str(workdir / "session.pcapng"), "-T", "fields", "-e", "tcp.srcport",
                             "-e", "tcp.dstport", "-e", "tcp.flags.str", "-e", "tcp.analysis.retransmission"],
                            capture_output=True, text=True, check=True)
    rows = [(line + "\t\t\t").split("\t")[:4] for line in fields.stdout.splitlines() if line]
    to_closed = [r for r in rows if str(port) in r[:2]]
    assert [("S" in r[2] and r[1] == str(port), "R" in r[2]) for r in to_closed] == [(True, False), (False, True)]
    to_listener = [r for r in rows if str(listener) in r[:2]]
    assert len(to_listener) >= 6 and all(r[3] == "" for r in rows)  # every input's packets, no duplicates
    saved = subprocess.run([TSHARK, "-r", str(workdir / "third.pcapng"), "-T", "fields", "-e", "tcp.dstport"],
                           capture_output=True, text=True, check=True)
    assert str(port) not in saved.stdout and str(listener) in saved.stdout
    read = subprocess.run([sys.executable, "-m", "wirestack", "read", "session.pcapng", "--no-color"],
                          capture_output=True, text=True, cwd=workdir)
    assert read.returncode == 0 and "connect() failed" in read.stdout


def test_ctrl_c_during_a_blocking_recv_returns_to_the_prompt(workdir: Path, listener: int) -> None:
    shell = Session(workdir, "--no-pcap")
    shell.type(f'import socket; c = socket.create_connection(("127.0.0.1", {listener}))')
    shell.child.sendline("c.recv(100)")
    shell.child.expect_exact("c.recv(100)")
    with pytest.raises(pexpect.TIMEOUT):
        shell.child.expect_exact(PROMPT, timeout=1)  # blocked: the peer never answers
    shell.child.sendintr()
    shell.child.expect_exact(PROMPT)
    out = str(shell.child.before).replace("\r\n", "\n")
    assert "KeyboardInterrupt" in out and "wirestack shell [2]: c.recv(100)" in out
    assert "recv(100)" in out
    assert shell.type("1 + 1").strip() == "2"  # the session goes on
    assert shell.type("c.getpeername()[1]").strip() == str(listener)  # with its state
    shell.end()


def test_ctrl_c_at_the_prompt_and_exit_write_the_file(workdir: Path) -> None:
    port = closed_port()
    shell = Session(workdir, "-w", "s.pcapng")
    shell.type(f"import socket; socket.socket().connect_ex(('127.0.0.1', {port}))")
    shell.child.sendintr()
    shell.child.expect_exact(PROMPT)
    assert "KeyboardInterrupt" in str(shell.child.before)
    assert "wirestack: wrote the session so far to s.pcapng (1 input, 2 packets)" in str(shell.child.before)
    assert (workdir / "s.pcapng").stat().st_size > 0
    assert not [p for p in workdir.iterdir() if p.name.endswith(".tmp")]
    shell.child.sendline("exit(3)")
    shell.child.expect(pexpect.EOF)
    shell.child.close()
    assert shell.child.exitstatus == 3  # the console's exit status is the session's
    assert "wirestack: wrote s.pcapng (2 inputs, 2 packets)" in str(shell.child.before)


PROGRAM = ['import sys, traceback', 'print(sys.argv, __name__, sys.path[0] == "")',
           'def f():\n    raise ValueError("x")\n', 'f()',
           'try:\n    f()\nexcept ValueError:\n    print(traceback.format_exc().count("\\n"))\n',
           '"wirestack" in sys.modules, __name__, __builtins__.__name__',
           'import sys; sys.flags.interactive, sys.ps1, sys.ps2']


def test_the_console_prints_what_python_s_own_prompt_prints(workdir: Path) -> None:
    plain = Session(workdir, command=[sys.executable, "-q"])  # python's own prompt, untraced
    traced = Session(workdir, "--no-pcap")
    for line in PROGRAM:
        for part in line.split("\n"):
            plain.child.sendline(part)
            traced.child.sendline(part)
        expected = _until_prompt(plain)
        got = _until_prompt(traced)  # wirestack's own lines left out
        assert "\n".join(ln for ln in got.split("\n") if not ln.startswith("wirestack [")) == expected, line
    plain.end()
    traced.end()


def _until_prompt(s: Session) -> str:
    s.child.expect_exact(PROMPT)
    return re.sub(r"(\.\.\. |>>> )", "", str(s.child.before).replace("\r\n", "\n"))


def test_in_the_namespace_mode(workdir: Path) -> None:
    port = closed_port()
    shell = Session(workdir, "--netns", "--no-pcap")
    assert "raw socket in a private user + network namespace" in shell.banner
    shell.type("import socket; s = socket.socket()")
    out = shell.type(f's.connect(("127.0.0.1", {port}))')
    assert re.findall(r"TCP\s+(\w+)\s", out)[:2] == ["S", "RA"]
    assert "\ncapture: raw socket in a private user + network namespace" in out  # in the header
    shell.end()


def test_under_sudo_the_console_runs_as_the_invoking_user(listener: int) -> None:
    python = "/usr/bin/python3"
    assert os.access(python, os.X_OK), "a system python that the unprivileged user can run"
    folder = Path(tempfile.mkdtemp(prefix="wirestack-shell-"))
    try:
        folder.chmod(0o777)
        shell = Session(folder, "--python", python, "-w", "s.pcapng",
                        env={"SUDO_UID": "65534", "SUDO_GID": "65534", "PYTHONPATH": str(ROOT)})
        assert shell.type("import os; os.getuid(), os.getgid()").strip() == "(65534, 65534)"
        out = shell.type(f"import socket; socket.create_connection(('127.0.0.1', {listener})).close()")
        assert "no exception escaped" in out and re.search(r"captured on lo: [45] packets", out)
        assert shell.type("[p.flags for p in wire.packets][:2]").strip() == "['S', 'SA']"
        assert shell.type('wire.save("mine.pcapng")').strip() == "'mine.pcapng'"
        shell.end()
        for name in ("s.pcapng", "mine.pcapng"):
            assert (folder / name).stat().st_uid == 65534  # the user's files: the console wrote its own
    finally:
        shutil.rmtree(folder)


def test_ipython_terminal(workdir: Path) -> None:
    import IPython  # noqa: F401  (the test extra installs it)

    port = closed_port()
    shell = Session(workdir, "--ipython", "--no-pcap", prompt="]: ")
    shell.child.sendline(f"import socket; socket.socket().connect(('127.0.0.1', {port}))")
    shell.child.expect_exact("In [2]: ")
    out = str(shell.child.before)
    assert "ConnectionRefusedError" in out and "wirestack shell [1]:" in out
    assert re.findall(r"TCP\s+(\w+)\s", out)[:2] == ["S", "RA"]
    shell.child.sendline("exit")
    shell.child.expect(pexpect.EOF)
