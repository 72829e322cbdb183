"""The fuzzer: `wirestack read` over hostile inputs, text, JSON, SVG and HTML. Every input must exit 0, or 2
with one line on stderr; never a traceback, never a raw control character, well-formed SVG, parseable JSON,
bounded time and memory (see harness.check). A failing input is saved under tests/fuzz/found/ (the newest file
is the shrunk one): add it to tests/fuzz/regressions/, which test_regressions.py replays.

Bounded by default (a few examples a test, about a minute in all); `WIRESTACK_FUZZ_EXAMPLES=N` for more.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirestack.formats import reader
from wirestack.output.annotate import blocks
from wirestack.output.sanitize import clean
from wirestack.report import build_report

from .harness import KINDS, check, check_all, fuzz_settings, read_in_process, read_in_subprocess, save_failure
from .strategies import (
    block_mutated_file,
    bomb,
    bomb_file,
    chunked_exact,
    hostile_text,
    mutated_doc_file,
    payload_file,
    timestamp_file,
    with_trace,
)

pytestmark = pytest.mark.fuzz


@fuzz_settings(60)
@given(data=mutated_doc_file(), kind=st.sampled_from(KINDS))
def test_hostile_archive_documents(data: bytes, kind: str, scratch: Path, without_tshark: None) -> None:
    check_all(data, scratch, (kind,))


@fuzz_settings(40)
@given(data=timestamp_file(), kind=st.sampled_from(KINDS))
def test_timestamps_out_of_range(data: bytes, kind: str, scratch: Path, without_tshark: None) -> None:
    check_all(data, scratch, (kind,))


@fuzz_settings(60)
@given(data=block_mutated_file(), kind=st.sampled_from(KINDS))
def test_damaged_blocks(data: bytes, kind: str, scratch: Path, without_tshark: None) -> None:
    check_all(data, scratch, (kind,))


@fuzz_settings(15)
@given(data=payload_file(), kind=st.sampled_from(KINDS))
def test_hostile_payloads_labelled_by_tshark(data: bytes, kind: str, scratch: Path) -> None:
    check_all(data, scratch, (kind,), suffix=".pcap")


@fuzz_settings(12)
@given(name=hostile_text(4), exists=st.booleans(), kind=st.sampled_from(KINDS))
def test_hostile_file_names(name: str, exists: bool, kind: str, scratch: Path, without_tshark: None) -> None:
    """The file's own name is data too: in the title, the notes and every error line."""
    # as bytes on disk: a lone surrogate becomes bytes that are not UTF-8, which Python's argv then holds as
    # surrogate escapes (as when a student names a file so)
    raw = name.replace("/", "_").replace("\0", "_").encode("utf-8", "surrogatepass")[:200] or b"_"
    fname = os.fsdecode(raw)
    folder = scratch / "names"
    folder.mkdir(exist_ok=True)
    from .strategies import seed_bytes

    data = seed_bytes("names.pcapng")
    try:
        outcome = read_in_process(data if exists else None, kind, folder, fname + ".pcapng")
    except (OSError, UnicodeEncodeError):
        return  # a name the file system refuses (too long, a lone surrogate): nothing to read
    check(outcome)


@fuzz_settings(8, slow=True)
@given(data=st.one_of(mutated_doc_file(), timestamp_file(), block_mutated_file(), payload_file()),
       kind=st.sampled_from(KINDS))
def test_as_a_teacher_runs_it(data: bytes, kind: str, scratch: Path) -> None:
    """A subset through the real command, tshark included, under a memory limit."""
    outcome = read_in_subprocess(data, kind, scratch / "sub")
    try:
        check(outcome)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n(input saved as {save_failure(data)})") from None


@pytest.mark.parametrize("kind", ["space", "dicts", "lists", "strings", "ints"])
@pytest.mark.parametrize("mib", [63, 200, 1100])
def test_zlib_bombs_stay_under_the_memory_limit(kind: str, mib: int, scratch: Path) -> None:
    """A small file whose trace inflates to `mib` MiB of whitespace or of empty containers (each a Python object
    once parsed): `read` says the trace is damaged and shows the wire, within SUBPROCESS_MEMORY_MB."""
    data = with_trace("smtp.pcapng", chunked_exact(bomb(kind, mib)))
    assert len(data) < (mib << 20) // 100  # a small file
    outcome = read_in_subprocess(data, "text", scratch / "bomb")
    check(outcome)
    from wirestack.formats.archive import max_inflated

    if (mib << 20) > max_inflated(len(data)) or kind in ("dicts", "lists", "ints"):  # too large, or not notes
        assert "cannot be read" in outcome.stdout, outcome.describe()


@fuzz_settings(4, slow=True)
@given(data=bomb_file())
def test_bombs_in_process_json(data: bytes, scratch: Path, without_tshark: None) -> None:
    check_all(data, scratch, ("json",))


# -- the annotated pcapng wirestack writes: its comments cannot be forged by the data ---------------------------

MARK = " [wirestack "


def lua_fields(comment: str) -> list[tuple[str, str]]:
    """The key=value pairs the Lua dissector (wirestack/data/wirestack.lua) reads from a comment: after the
    last marker, bare values up to a space or bracket, quoted values with backslash escapes."""
    at = comment.rfind(MARK)
    if at < 0:
        return []
    tail, out, i = comment[at + len(MARK):], [], 0
    while i < len(tail):
        m = re.compile(r" *").match(tail, i)
        assert m is not None
        i = m.end()
        if i >= len(tail) or tail[i] == "]":
            break
        eq = tail.find("=", i)
        if eq < 0:
            break
        key = tail[i:eq]
        if tail[eq + 1 : eq + 2] == '"':
            j, buf = eq + 2, []
            while j < len(tail) and tail[j] != '"':
                if tail[j] == "\\":
                    buf.append(tail[j + 1 : j + 2])
                    j += 2
                else:
                    buf.append(tail[j])
                    j += 1
            value, i = "".join(buf), j + 1
        else:
            e = min([x for x in (tail.find(" ", eq + 1), tail.find("]", eq + 1)) if x >= 0] or [len(tail)])
            value, i = tail[eq + 1 : e], e
        out.append((key, value))
    return out


def _comments(data: bytes) -> list[list[str]]:
    from .strategies import split_blocks

    out = []
    for kind, body in split_blocks(data):
        if kind == 6:
            cap = int.from_bytes(body[12:16], "little")
            pos, found = 20 + cap + (-cap % 4), []
            while pos + 4 <= len(body):
                code, length = int.from_bytes(body[pos : pos + 2], "little"), int.from_bytes(body[pos + 2 : pos + 4],
                                                                                              "little")
                if code == 0:
                    break
                if code == 1:
                    found.append(body[pos + 4 : pos + 4 + length].decode("utf-8", "replace"))
                pos += 4 + length + (-length % 4)
            out.append(found)
    return out


@fuzz_settings(40)
@given(data=mutated_doc_file())
def test_annotated_comments_cannot_be_forged(data: bytes) -> None:
    """Whatever the names in a trace, each comment of the pcapng wirestack writes from it carries exactly the
    call, op, errno and socket of the call it is paired with, as the Lua dissector parses them."""
    cf = reader.parse(data)
    try:
        trace = reader.recorded_trace(cf)
    except Exception:  # noqa: BLE001  (a damaged trace is the read tests' business)
        return
    if trace is None:
        return
    report = build_report(trace)
    written = b"".join(blocks(report))
    calls = {c.id: c for c in trace.calls}
    for packet, comments in zip(trace.packets, _comments(written), strict=True):
        pairs = [x for x in report.alignment.pairs_of(packet.id) if x.call is not None and x.call in calls]
        ours = [c for c in comments if not c.startswith("kernel: ") and "no call of the program" not in c]
        assert len(ours) == len(pairs), (ours, pairs)
        for comment, pair in zip(ours, pairs, strict=True):
            got = lua_fields(comment)
            call = calls[pair.call]  # type: ignore[index]
            assert [v for k, v in got if k == "call"] == [str(call.id)], (comment, call.id)
            assert [v for k, v in got if k == "op"] == [clean(call.op, 400)], (comment, call.op)
            errnos = [v for k, v in got if k == "errno"]
            assert len(errnos) <= 1
            assert all(k in ("call", "op", "role", "namespace", "error", "errno", "errname", "socket", "thread",
                             "frame") for k, _ in got), got
