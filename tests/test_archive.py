"""The trace inside the pcapng: it round-trips exactly, survives tshark/editcap, and stays out of their way."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from builders import SEED_STACK, call, refused
from test_pcapng import _trace

from wirestack.formats import archive, reader
from wirestack.model import ExceptionInfo, Fault, Frame, KernelEvent, Process
from wirestack.output.annotate import blocks
from wirestack.output.json import to_json
from wirestack.output.text import render_text
from wirestack.report import build_report

TSHARK = shutil.which("tshark")


def _file(tmp_path: Path, trace=None) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / "t.pcapng"
    path.write_bytes(b"".join(blocks(build_report(trace or _trace()))))
    return path


def test_trace_round_trips_through_the_file_exactly(tmp_path: Path) -> None:
    trace = _trace()
    context = ExceptionInfo("OSError", "inner", (Frame("/x/a.py", 3, "f", "x()", 9),),
                            Fault("errno", "OSError", "inner", 104, "ECONNRESET"))
    member = ExceptionInfo("ssl.SSLError", "bad", (), Fault("openssl", "ssl.SSLError", "bad", 1, "SSL_ERROR_SSL",
                                                            "SSL", "WRONG_VERSION_NUMBER"))
    trace = replace(trace, exception=replace(trace.exception, context=context, group=(member,)), notes=("a note",),
                    exit_code=1, defines={"errno:111": "errno.h: #define ECONNREFUSED 111"}, started_ns=5,
                    kernel=(KernelEvent(1, 7, "tcp_send_reset", 0, {"reason": "NO_SOCKET"}),),
                    processes=(Process(100, True, ("python", "x.py"), 1, "main"),), python="3.11.7",
                    packets=tuple(replace(p, app="SMTP 250 OK" if p.id == 2 else "") for p in trace.packets))
    back = reader.recorded_trace(reader.load(_file(tmp_path, trace)))
    assert back == trace
    assert [p.raw for p in back.packets] == [p.raw for p in trace.packets]
    report = build_report(trace)
    assert to_json(build_report(back)) == to_json(report)
    assert render_text(build_report(back)) == render_text(report)


def test_a_large_trace_is_split_into_chunks(tmp_path: Path) -> None:
    import hashlib

    blob = [hashlib.sha256(str(i).encode()).hexdigest() * 2 for i in range(2000)]  # compresses poorly
    calls = tuple(call(i + 1, "send", i, i + 1, args={"blob": blob[i]}) for i in range(1, 2000))
    trace = replace(_trace(), calls=(*_trace().calls, *calls))
    values = archive.option_values(trace)
    assert len(values) > 1 and all(len(v) <= 65535 for v in values)
    back = reader.recorded_trace(reader.load(_file(tmp_path, trace)))
    assert back is not None and back.calls == trace.calls


def test_damaged_or_foreign_archives_fail_with_one_line() -> None:
    good = [v[4:] for v in archive.option_values(_trace())]
    with pytest.raises(archive.ArchiveError, match="damaged"):
        archive.decode([good[0][:-5] + b"xxxxx"])
    with pytest.raises(archive.ArchiveError, match="format 7"):
        archive.decode([good[0][:4] + bytes([7]) + good[0][5:]])
    assert not archive.is_ours(good[0], 12345)


def test_filtered_file_says_its_packets_changed(tmp_path: Path) -> None:
    assert TSHARK
    src = _file(tmp_path)
    out = tmp_path / "only-syn.pcapng"
    subprocess.run([TSHARK, "-r", str(src), "-Y", "tcp.flags.reset == 0", "-w", str(out)], check=True,
                   capture_output=True)
    back = reader.recorded_trace(reader.load(out))
    assert back is not None and len(back.packets) == 1
    assert "holds 1 of the 2 packets the run recorded (it was filtered or edited" in back.notes[-1]


@pytest.mark.parametrize("tool", ["editcap", "tshark"])
def test_wireshark_tools_keep_the_trace_when_they_save(tool: str, tmp_path: Path) -> None:
    exe = shutil.which(tool)
    assert exe, f"{tool} is required (scripts/bootstrap installs tshark)"
    src, out = _file(tmp_path), tmp_path / "saved.pcapng"
    cmd = [exe, str(src), str(out)] if tool == "editcap" else [exe, "-r", str(src), "-w", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    assert reader.recorded_trace(reader.load(out)) == _trace()


def test_tshark_and_capinfos_see_only_the_packets(tmp_path: Path) -> None:
    assert TSHARK
    path = _file(tmp_path)
    done = subprocess.run([TSHARK, "-r", str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and len(done.stdout.strip().splitlines()) == 2  # no extra "PCAPNG" frame
    assert [ln for ln in done.stderr.splitlines() if not ln.startswith("Running as user")] == []
    capinfos = shutil.which("capinfos")
    assert capinfos
    info = subprocess.run([capinfos, str(path)], capture_output=True, text=True)
    assert info.returncode == 0 and "Number of packets:   2" in info.stdout
    assert [ln for ln in info.stderr.splitlines() if not ln.startswith("Running as user")] == []


def test_every_field_of_the_model_is_stored() -> None:
    """A field added to Trace, Call, ExceptionInfo or KernelEvent must be stored too: this fails until it is."""
    import dataclasses

    from wirestack.model import Call, Trace

    c = replace(call(3, "connect", 0, 5, errno=111, stack=SEED_STACK, args={"address": ["::1", 25], "n": {"a": 1}},
                     result=[1, "x"]), family="AF_INET6", pid=42, tid=43)
    event = KernelEvent(1, 7, "tcp_send_reset", 43, {"reason": "NO_SOCKET"}, 42)
    trace = replace(_trace(), calls=(c,), exception=refused(3), kernel=(event,))
    doc = archive._trace_doc(trace)
    stored = set(doc) - {"frames"}
    assert stored == {f.name for f in dataclasses.fields(Trace)} - {"packets"}
    assert len(doc["calls"][0]) == len(dataclasses.fields(Call))
    assert set(doc["exception"]) == {f.name for f in dataclasses.fields(ExceptionInfo)}
    assert len(doc["kernel"][0]) == len(dataclasses.fields(KernelEvent))
    assert archive.trace_from_doc(doc, trace.packets) == trace


def test_a_damaged_trace_falls_back_to_the_wire_with_a_note(tmp_path: Path) -> None:
    from wirestack.commands.read import load

    data = bytearray(_file(tmp_path).read_bytes())
    at = data.index(archive.MAGIC) + 9  # inside the compressed data of the first chunk
    data[at : at + 8] = b"\xff" * 8
    (tmp_path / "bad.pcapng").write_bytes(bytes(data))
    loaded = load(tmp_path / "bad.pcapng", decode_app=False)
    assert not loaded.report.trace.traced and not loaded.report.trace.calls
    assert loaded.report.trace.notes[0].startswith("the file carries a wirestack trace that cannot be read (the "
                                                   "trace is damaged")
    assert len(loaded.report.trace.packets) == 2
