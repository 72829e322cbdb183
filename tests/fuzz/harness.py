"""Driving `wirestack read` on one input and checking what came out: the properties every input must keep.

    outcome = read_in_process(data, "text", scratch)      the CLI's own main(argv), stdout/stderr captured
    outcome = read_in_subprocess(data, "json", scratch)   python -m wirestack, under a memory limit
    check(outcome)                                         AssertionError naming the broken property

The properties: exit 0 with nothing on stderr, or exactly one line on stderr ("wirestack: ...") and status 2;
never a traceback; no raw control character (C0 but newline and tab, DEL, C1, a lone surrogate, a
bidirectional override) in any output, colour off; the SVG is well-formed XML, the JSON parses; the time and
memory a read takes are bounded (`DEADLINE_S`, `MAX_RSS_GROWTH_MB`, `SUBPROCESS_MEMORY_MB`).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import FrameType

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SEEDS = HERE / "seeds"
REGRESSIONS = HERE / "regressions"
FOUND = Path(os.environ.get("WIRESTACK_FUZZ_FOUND", HERE / "found"))  # failing inputs land here (not committed)

KINDS = ("text", "json", "svg", "html")
DEADLINE_S = float(os.environ.get("WIRESTACK_FUZZ_DEADLINE", "20"))  # one read of one small input
MAX_RSS_GROWTH_MB = 600  # the in-process high-water mark may not rise more than this for one input
SUBPROCESS_MEMORY_MB = 1024  # address space of a `read` in a subprocess (RLIMIT_AS)

# what must never reach any output raw (colour is off, so no ESC at all): C0 but \t and \n, DEL, C1, lone
# surrogates, the bidirectional overrides and isolates
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


EXAMPLES = int(os.environ.get("WIRESTACK_FUZZ_EXAMPLES", "0") or 0)

settings.register_profile(
    "wirestack-fuzz", deadline=None, print_blob=True, max_examples=EXAMPLES or 20,
    # one example is one `wirestack read`: slow by hypothesis' measure, and the inputs are large on purpose
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
    database=DirectoryBasedExampleDatabase(str(FOUND / "hypothesis")))


def fuzz_settings(default: int, slow: bool = False) -> settings:
    """`default` examples (CI), or WIRESTACK_FUZZ_EXAMPLES (a tenth of it for the slow, subprocess tests)."""
    n = (max(1, EXAMPLES // 10) if slow else EXAMPLES) if EXAMPLES else default
    return settings(settings.get_profile("wirestack-fuzz"), max_examples=n)


class Blob(bytes):
    """An input file; shown by its digest and size (hypothesis prints the falsifying example)."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes, sha256 {hashlib.sha256(self).hexdigest()[:12]}>"


class TookTooLong(Exception):
    pass


@dataclass
class Outcome:
    kind: str
    code: int | None
    stdout: str
    stderr: str
    files: dict[str, bytes] = field(default_factory=dict)
    seconds: float = 0.0
    rss_growth_mb: float = 0.0
    crash: str | None = None  # an exception that escaped main(), as a traceback would show it

    def describe(self) -> str:
        return (f"kind={self.kind} code={self.code} seconds={self.seconds:.2f} rss+={self.rss_growth_mb:.0f}MB\n"
                f"stderr={self.stderr[-2000:]!r}\nstdout={self.stdout[:600]!r}" + (f"\ncrash={self.crash}"
                                                                                    if self.crash else ""))


def argv_for(kind: str, path: Path, out: Path) -> list[str]:
    argv = ["read", str(path), "--no-color", "--width", "100"]
    if kind == "json":
        argv += ["--json", "-"]
    elif kind in ("svg", "html"):
        argv += [f"--{kind}", str(out / f"out.{kind}"), "--force"]
    return argv


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise TookTooLong(f"read took more than {DEADLINE_S:g} s")


def read_in_process(data: bytes | None, kind: str, scratch: Path, name: str = "input.pcapng") -> Outcome:
    """`wirestack read` on `data` (written to scratch/name; None: no such file) by the CLI's main(), in this
    process."""
    from wirestack import cli

    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / name
    if data is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(data)
    for stale in scratch.glob("out.*"):
        stale.unlink()
    out, err = io.StringIO(), io.StringIO()
    crash = None
    code: int | None = None
    before = _rss_mb()
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, DEADLINE_S)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv_for(kind, path, scratch))
    except TookTooLong as exc:
        crash = str(exc)
    except BaseException as exc:  # noqa: BLE001  (anything that escapes main() is a traceback for the user)
        import traceback

        crash = "".join(traceback.format_exception(exc))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        gc.unfreeze()  # `read` freezes and disables the cycle collector for the rest of its (short) process
        gc.enable()
    outcome = Outcome(kind, code, out.getvalue(), err.getvalue(), seconds=time.monotonic() - started,
                      rss_growth_mb=_rss_mb() - before, crash=crash)
    for produced in scratch.glob("out.*"):
        outcome.files[produced.name] = produced.read_bytes()
    return outcome


def _limit_memory() -> None:
    limit = SUBPROCESS_MEMORY_MB << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def read_in_subprocess(data: bytes, kind: str, scratch: Path, name: str = "input.pcapng",
                       timeout: float = 60) -> Outcome:
    """`python -m wirestack read` on `data`, with its address space limited to SUBPROCESS_MEMORY_MB: what a
    teacher runs, tshark included."""
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / name
    path.write_bytes(data)
    for stale in scratch.glob("out.*"):
        stale.unlink()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "wirestack", *argv_for(kind, path, scratch)], cwd=scratch,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=_limit_memory)
    crash = None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        crash = f"read took more than {timeout:g} s"
    outcome = Outcome(kind, proc.returncode, stdout.decode("utf-8", "surrogateescape"),
                      stderr.decode("utf-8", "surrogateescape"), seconds=time.monotonic() - started, crash=crash)
    if b"\xed" in stdout + stderr:  # surrogates encoded (they cannot be: a lone surrogate is not UTF-8)
        outcome.crash = outcome.crash or "output holds an encoded surrogate"
    for produced in scratch.glob("out.*"):
        outcome.files[produced.name] = produced.read_bytes()
    return outcome


class _Strict(HTMLParser):
    pass


def _raw_controls(text: str) -> list[str]:
    return sorted({repr(m.group(0)) for m in RAW_CONTROL.finditer(text)})


def check(o: Outcome) -> None:
    """Every property of one outcome; AssertionError with the outcome described."""
    where = o.describe()
    assert o.crash is None, f"an exception escaped main() or the read hung\n{where}"
    # (stdout holds the report, and the report draws the program's traceback: only stderr must have none)
    assert "Traceback (most recent call last)" not in o.stderr, f"a traceback\n{where}"
    assert o.seconds < DEADLINE_S, f"too slow\n{where}"
    assert o.rss_growth_mb < MAX_RSS_GROWTH_MB, f"too much memory\n{where}"
    err_lines = o.stderr.split("\n")[:-1] if o.stderr.endswith("\n") else o.stderr.split("\n")
    if o.code == 0:
        assert not o.stderr, f"exit 0 with something on stderr\n{where}"
    else:
        assert o.code == 2, f"an exit status other than 0 or 2\n{where}"
        assert len(err_lines) == 1 and err_lines[0].startswith("wirestack: "), f"not one line on stderr\n{where}"
    for label, text in (("stdout", o.stdout), ("stderr", o.stderr)):
        bad = _raw_controls(text)
        assert not bad, f"raw control characters {bad} on {label}\n{where}"
    if o.kind == "json" and o.code is not None and (o.code == 0 or o.stdout):
        json.loads(o.stdout)
    for name, blob in o.files.items():
        text = blob.decode("utf-8")  # UnicodeDecodeError: not UTF-8
        bad = _raw_controls(text)
        assert not bad, f"raw control characters {bad} in {name}\n{where}"
        if name.endswith(".svg"):
            ET.fromstring(blob)  # ParseError: not well-formed XML
        elif name.endswith(".html"):
            parser = _Strict()
            parser.feed(text)
            parser.close()
    if o.kind in ("svg", "html") and o.code == 0:
        assert f"out.{o.kind}" in o.files, f"exit 0 and no {o.kind} written\n{where}"


def save_failure(data: bytes, suffix: str = ".pcapng") -> Path:
    """Keep a failing input (the newest file is the one hypothesis shrank to, replayed last)."""
    FOUND.mkdir(parents=True, exist_ok=True)
    path = FOUND / f"{hashlib.sha256(data).hexdigest()[:12]}{suffix}"
    path.write_bytes(data)
    return path


def check_all(data: bytes, scratch: Path, kinds: tuple[str, ...] = KINDS, suffix: str = ".pcapng") -> None:
    """`read` of `data` in each output kind keeps every property; a failing input is saved first."""
    for kind in kinds:
        outcome = read_in_process(data, kind, scratch, "input" + suffix)
        try:
            check(outcome)
        except (AssertionError, ValueError, ET.ParseError) as exc:
            saved = save_failure(data, suffix)
            raise AssertionError(f"{type(exc).__name__}: {exc}\n(input saved as {saved})") from None
