"""pytest plugin: the wire beside the traceback of a failing test.

    pytest --wirestack                          # capture on loopback while the suite runs
    pytest --wirestack --wirestack-keep=all     # also keep a pcapng of every passing test that made socket calls

Registered through the `pytest11` entry point as `wirestack.testing.pytest_plugin` (the module's own name, so that
`-p wirestack.testing.pytest_plugin` loads it whether the entry point is installed or not, and never twice). Without
`--wirestack` it is inert: importing it loads nothing of wirestack, no hook does any work, no process starts and
no socket method is wrapped; the `wire` fixture skips.

With `--wirestack`, for the whole session (not per test, which would cost a process start per test):
- one capture worker process (`capture.CaptureWorker`): started in `pytest_configure`, so it is live before the
  first test; at each test's start it is told to forget older frames (`forget NS`, no round trip), and a test's
  packets are fetched only when they are needed (`drain`: a marker datagram on loopback, queued behind every
  packet the kernel has produced so far, so a drain returns everything up to the moment it was asked for);
- one probe (`probe.Probe`) installed in this process, whose records go to the running test's own list: a test's
  slice is the calls recorded between its setup and its teardown, from any thread of this process.

A test's packets are needed when it fails (the report section), when it uses `wire`, or with
`--wirestack-keep=all`. A passing test without `wire` costs the probe's wrappers and one pipe write.

A failing phase (setup, call or teardown) gets a `wirestack` section in its report when the network is involved:
an exception of the chain was raised by a socket call of the test, a socket call of the test failed (other than
EAGAIN/EINPROGRESS waits), or a frame of the traceback has packets below it. The section is the CLI's report
(`render.render_text`) of that test, and the path of its pcapng (`DIR/NODEID.pcapng`, `-setup`/`-teardown`
added for those phases), where DIR is `captures/pytest` under the rootdir unless `--wirestack-dir` says.

Limits: capture is on `lo` only (the drain marker is a loopback datagram); calls made in forked children and
other processes are not recorded (their packets are left out, as `wirestack run` leaves out untraced children);
packets the kernel sends after a test's last drain (a delayed ACK, TIME_WAIT) are not in its file.

It is long because a pytest plugin is one module by pytest's convention: options, the session's capture, the `wire`
fixture, the reports.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..model import Call, Packet
    from ..record.capture import CaptureWorker, Frames
    from ..record.probe import Probe
    from ..report import Report

KEEP = ("failed", "all", "none")
DEFAULT_DIR = Path("captures") / "pytest"
INTERFACE = "lo"
FORGET_NS = 250_000_000  # the capture worker drops frames older than the running test at most this often
_WAITS = {11, 114, 115}  # EAGAIN, EALREADY, EINPROGRESS: a non-blocking socket waiting, not failing
NAMESPACE_HINT = ("run pytest as root (sudo), or without root through the namespace mode, "
                  "`wirestack run -m pytest --wirestack ...`")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wirestack", "wirestack: the packets beside the traceback of a failing test")
    group.addoption("--wirestack", action="store_true", default=False,
                    help="capture loopback and record socket calls; a failing network test gets a wirestack "
                         "section and a pcapng (needs root or CAP_NET_RAW)")
    group.addoption("--wirestack-dir", metavar="DIR", default=None,
                    help="where per-test pcapng files go (default: captures/pytest under the rootdir)")
    group.addoption("--wirestack-keep", choices=KEEP, default="failed",
                    help="which tests keep a pcapng: failed (default: failing network tests), all (also every "
                         "passing test that made socket calls), none")


_SESSION = pytest.StashKey["WireSession"]()


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("wirestack", False):
        return
    session = WireSession(config)
    session.start()  # a pytest.UsageError (one line, no traceback) when capture is not permitted
    config.stash[_SESSION] = session
    config.add_cleanup(session.stop)
    config.pluginmanager.register(session, "wirestack-session")


@pytest.fixture
def wire(request: pytest.FixtureRequest) -> Wire:
    """The test's own packets and socket calls, for explicit assertions. Accessing `packets`, `calls` or
    `report`, or calling `find`/`saw`/`sync`, is a sync point: everything the kernel put on the wire up to
    that moment is drained from the capture first."""
    session = request.config.stash.get(_SESSION, None)
    if session is None:
        pytest.skip("the wire fixture needs `pytest --wirestack` (packet capture is off)")
    run = session.current
    if run is None:
        raise RuntimeError("wirestack: the wire fixture was requested outside a running test")
    return Wire(session, run)


# -- one test's recording ------------------------------------------------------------------------------------------


@dataclass
class Recording:
    """What one test recorded: its calls (from the probe) and frames (from the capture worker's drains)."""

    nodeid: str
    started_ns: int
    records: list[Any] = field(default_factory=list)
    frames: Frames | None = None
    dropped: int = 0
    finished: bool = False
    written: list[Path] = field(default_factory=list)
    cache: tuple[tuple[int, int], Report] | None = None


class WireSession:
    """The session's capture worker and probe, and the hooks that slice them per test."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.keep: str = config.getoption("wirestack_keep")
        chosen = config.getoption("wirestack_dir")
        self.folder = (config.invocation_params.dir / chosen) if chosen else config.rootpath / DEFAULT_DIR
        self.current: Recording | None = None
        self._target: list[Any] = []
        self._shared: list[Any] = []  # code objects and pseudo-file lines, described once per session
        self._worker: CaptureWorker | None = None
        self._probe: Probe | None = None
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._hidden: frozenset[str] = frozenset()
        self._forgot = 0

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        import socket

        from ..record.capture import CaptureError, CaptureWorker
        from ..record.probe import Probe

        try:
            socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
        except PermissionError:
            raise pytest.UsageError(f"wirestack: capturing on {INTERFACE} needs root or CAP_NET_RAW: "
                                    f"{NAMESPACE_HINT}") from None
        except OSError as exc:
            raise pytest.UsageError(f"wirestack: cannot capture on {INTERFACE}: {exc.strerror}") from None
        try:
            self._worker = CaptureWorker(INTERFACE).start()
        except CaptureError as exc:
            raise pytest.UsageError(f"wirestack: {exc}") from None
        self._hidden = frozenset(_runner_files())
        probe = Probe(self._sink)
        probe.hide_files(*self._hidden)
        probe.install()
        self._probe = probe

    def stop(self) -> None:
        if self._probe is not None:
            self._probe.uninstall()
            self._probe = None
        if self._worker is not None:
            self._worker.kill()
            self._worker = None

    def _sink(self, items: list[Any]) -> None:
        # The probe describes each code object, pseudo-file and socket once, in whichever test first meets it:
        # those descriptions are the session's, every test's trace needs them.
        from ..record.items import DESCRIPTIONS

        for item in items:
            if isinstance(item, tuple) and item[0] in DESCRIPTIONS:
                self._shared.append(item)
            else:
                self._target.append(item)

    # -- hooks -----------------------------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object,
                                                                                                      object]:
        self._begin(item)
        try:
            return (yield)
        finally:
            self._end()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]
                                  ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        rep = yield
        run = self.current
        if rep.failed and call.excinfo is not None and run is not None and os.getpid() == self._pid:
            try:
                section = self._failure(run, call.when, call.excinfo.value)
            except Exception as exc:  # a bug of ours must not hide the test's own failure
                section = f"wirestack could not build this report: {type(exc).__name__}: {exc}\n"
            if section:
                rep.sections.append(("wirestack", section))
        return rep

    def _begin(self, item: pytest.Item) -> None:
        assert self._probe is not None and self._worker is not None
        with self._lock:
            self._probe.flush()  # what is pending belongs to the previous test (or to collection)
            run = Recording(item.nodeid, time.time_ns())
            self._target = run.records
            self.current = run
        # The worker's `forget` only bounds its memory: a drain is cut to the test's window here (see `sync`). So it
        # is sent at most every FORGET_NS, not per test: each write wakes the worker, which costs the test time.
        if run.started_ns - self._forgot >= FORGET_NS:
            self._forgot = run.started_ns
            try:
                self._worker.forget(run.started_ns)
            except Exception:
                pass  # reported when the packets are needed

    def _end(self) -> None:
        run = self.current
        if run is None:
            return
        try:
            if self.keep == "all" and not run.written and os.getpid() == self._pid and self._probe is not None:
                self._probe.flush()
                if not any(is_call(r) for r in run.records):
                    return  # no socket call: no file, and no drain
                report = self.sync(run)
                if report.trace.calls:
                    from ..output.files import OutputError

                    try:
                        self._write(run, report, "call")
                    except OutputError as exc:
                        warnings.warn(pytest.PytestWarning(f"wirestack: {exc}"), stacklevel=1)
        finally:
            with self._lock:
                run.finished = True
                self.current = None
                self._target = []

    # -- packets on demand -----------------------------------------------------------------------------------------

    def sync(self, run: Recording, exception: BaseException | None = None) -> Report:
        """The test's report from everything recorded up to now (drained from the capture first)."""
        from dataclasses import replace

        from ..record.assemble import assemble
        from ..record.capture import CaptureError
        from ..record.loader import Loader
        from ..record.probe import exception_dict
        from ..record.runner import Client
        from ..record.runner import Recording as RunRecording
        from ..report import build_report

        assert self._probe is not None and self._worker is not None
        notes: list[str] = []
        with self._lock:
            if not run.finished:
                self._probe.flush()
                try:
                    frames, dropped = self._worker.drain()
                except CaptureError as exc:
                    notes.append(f"the capture could not be drained: {exc}")
                else:
                    run.dropped += dropped
                    frames = _since(frames, run.started_ns)
                    if run.frames is None:
                        run.frames = frames
                    else:
                        run.frames.times += frames.times
                        run.frames.lengths += frames.lengths
                        run.frames.data += frames.data
            key = (len(run.records), len(run.frames) if run.frames is not None else 0)
            if exception is None and not notes and run.cache is not None and run.cache[0] == key:
                return run.cache[1]
            records = self._shared + list(run.records)
            if exception is not None:
                records.append({"kind": "exception", **exception_dict(exception, self._probe, self._skip)})
            from ..record.capture import Frames

            frames, seen = Frames(), 0
            if run.frames is not None:
                seen = len(run.frames)
                frames = candidates(run.frames, ports_of(records), self._worker.linktype)
            loader = Loader()
            loader.feed(records)
            recording = RunRecording(Client("pytest", run.nodeid), INTERFACE, frames, self._worker.linktype, seen,
                                     run.dropped, loader, run.started_ns, None, self._pid, notes=notes,
                                     kernel_off="kernel layer off: pytest --wirestack records no kernel layer")
            trace, alignment = assemble(recording)
            trace = replace(trace, capture=replace(trace.capture, seen=seen))  # every frame read, as the CLI counts
            report = build_report(trace, alignment)
            if exception is None and not notes:
                run.cache = (key, report)
            return report

    def _skip(self, frame: Any) -> bool:
        """Frames of pytest, pluggy and this plugin are the runner's, not the test's."""
        assert self._probe is not None
        return frame.f_code.co_filename in self._hidden or self._probe.is_hidden(frame)

    def _failure(self, run: Recording, when: str, exc: BaseException) -> str | None:
        report = self.sync(run, exc)
        if not involves_network(report):
            return None
        from dataclasses import replace

        from ..output.files import OutputError
        from ..output.text import render_text

        tw = self.config.get_terminal_writer()
        path, where = None, "not kept (--wirestack-keep=none)"
        if self.keep != "none":
            try:
                path = self._write(run, report, when)
                where = _shown(path, self.config.invocation_params.dir)
            except OutputError as exc:
                where = f"not written: {exc}"
        if path is not None:
            trace = report.trace
            report = replace(report, trace=replace(trace, capture=replace(trace.capture, file=str(path))))
        tty = sys.__stdout__ is not None and sys.__stdout__.isatty()
        text = render_text(report, width=tw.fullwidth if tty else 100, color=tw.hasmarkup)  # as the CLI does
        return text + f"pcapng: {where}\n"

    def _write(self, run: Recording, report: Report, when: str) -> Path:
        """Write the test's pcapng (raises `files.OutputError`)."""
        from dataclasses import replace

        from ..output.annotate import blocks
        from ..output.files import write

        path = self.folder / (file_stem(run.nodeid) + ("" if when == "call" else f"-{when}") + ".pcapng")
        trace = report.trace
        report = replace(report, trace=replace(trace, capture=replace(trace.capture, file=str(path))))
        _make_folder(path.parent)
        write(path, blocks(report), force=True)
        run.written.append(path)
        return path


def _since(frames: Frames, start_ns: int) -> Frames:
    """The frames stamped at or after `start_ns` (the worker may still hold older ones: see FORGET_NS)."""
    if all(t >= start_ns for t in frames.times):
        return frames
    from ..record.capture import Frames

    keep = [i for i, t in enumerate(frames.times) if t >= start_ns]
    return Frames([frames.times[i] for i in keep], [frames.lengths[i] for i in keep], [frames.data[i] for i in keep])


def is_call(record: Any) -> bool:
    """A probe call item (a tuple, see `probe.Probe.flush`) or a call record (a dict)."""
    if isinstance(record, tuple):
        return bool(record) and record[0] in ("call", "data")
    return isinstance(record, dict) and record.get("kind") == "call"


def ports_of(records: list[Any]) -> frozenset[int]:
    """Every port the recorded calls name as a local or remote end (a data call's local end is its socket's
    "local" description)."""
    from ..record import items as layout

    local, remote = layout.CALL.index("local"), layout.CALL.index("remote")
    data_remote, address = layout.DATA.index("remote"), layout.LOCAL.index("address")
    ports = set()
    for r in records:
        if isinstance(r, tuple) and r and r[0] == "call":
            ends: tuple[Any, ...] = (r[local], r[remote])
        elif isinstance(r, tuple) and r and r[0] == "data":
            ends = (r[data_remote],)
        elif isinstance(r, tuple) and r and r[0] == "local":
            ends = (r[address],)
        elif isinstance(r, dict):
            ends = (r.get("local"), r.get("remote"))
        else:
            continue
        for end in ends:
            if isinstance(end, (list, tuple)) and len(end) >= 2 and isinstance(end[1], int) and end[1]:
                ports.add(end[1])
    return frozenset(ports)


def candidates(frames: Frames, ports: frozenset[int], linktype: int) -> Frames:
    """The frames that may belong to the test's flows, before any decoding. Loopback carries everyone's traffic:
    on this shared machine one short test's window held 14,685 frames; decoding and pairing that many took 0.73 s,
    this check 0.04 s. A TCP or UDP frame is left out only when neither of its ports is one the test's calls
    used: the pairing would leave it out anyway (a flow matches on both ends). ICMP, fragments, other framing:
    kept."""
    from ..core.dissect import LINKTYPE_ETHERNET
    from ..record.capture import Frames

    if linktype != LINKTYPE_ETHERNET:
        return frames
    keep = [i for i, d in enumerate(frames.data) if _may_belong(d, ports)]
    if len(keep) == len(frames):
        return frames
    return Frames([frames.times[i] for i in keep], [frames.lengths[i] for i in keep], [frames.data[i] for i in keep])


def _may_belong(frame: bytes, ports: frozenset[int]) -> bool:
    if len(frame) < 14:
        return True
    ethertype = frame[12:14]
    if ethertype == b"\x08\x00" and len(frame) >= 34:
        if int.from_bytes(frame[20:22], "big") & 0x1FFF:  # a fragment after the first: no ports in it
            return True
        proto, off = frame[23], 14 + (frame[14] & 0x0F) * 4
    elif ethertype == b"\x86\xdd" and len(frame) >= 54:
        proto, off = frame[20], 54
    else:
        return True
    if proto not in (6, 17) or len(frame) < off + 4:
        return True
    return int.from_bytes(frame[off : off + 2], "big") in ports or int.from_bytes(frame[off + 2 : off + 4],
                                                                                  "big") in ports


def involves_network(report: Report) -> bool:
    """Does this failure involve the network? True when an exception of its chain was raised by a socket call
    recorded during the test, when a socket call of the test failed (other than the waits of non-blocking
    sockets), or when a frame of its traceback has packets below it."""
    from ..core.chains import linked

    trace, alignment = report.trace, report.alignment
    chained = linked(trace.exception) if trace.exception is not None else []
    if any(e.call is not None for e in chained):
        return True
    if any(c.failed and c.errno not in _WAITS and c.op != "spawn" for c in trace.calls):
        return True
    return any(alignment.packets_below(f.instance) for e in chained for f in e.frames)


# -- the fixture's object ------------------------------------------------------------------------------------------

_PACKET_KEYS = ("id", "proto", "src", "sport", "dst", "dport", "flags", "seq", "ack", "payload", "icmp")


class Wire:
    """The packets of the test's own flows and the socket calls it made (any thread of this process), as
    `wirestack.Packet` and `wirestack.Call` records. Packet ids are frame numbers of the test's pcapng."""

    def __init__(self, session: WireSession, run: Recording) -> None:
        self._session = session
        self._run = run
        self._report: Report | None = None

    def sync(self) -> Report:
        """Drain the capture up to now and return the test's report (the model the CLI renders)."""
        self._report = self._session.sync(self._run)
        return self._report

    @property
    def report(self) -> Report:
        return self.sync()

    @property
    def packets(self) -> tuple[Packet, ...]:
        """The test's packets up to now, in capture order (a sync point)."""
        return self.sync().trace.packets

    @property
    def calls(self) -> tuple[Call, ...]:
        """The test's socket calls up to now, in start order (a sync point)."""
        return self.sync().trace.calls

    def find(self, **criteria: Any) -> list[Packet]:
        """Packets whose fields equal the criteria: proto, src, sport, dst, dport, flags (the same letters in
        any order, "" for none), seq, ack, payload, icmp, id; `port` matches sport or dport; `contains` is a
        bytes string the payload contains."""
        unknown = set(criteria) - {*_PACKET_KEYS, "port", "contains"}
        if unknown:
            raise TypeError(f"wire.find() got unknown criteria {sorted(unknown)}; use {', '.join(_PACKET_KEYS)}, "
                            "port or contains")
        return [p for p in self.packets if packet_matches(p, criteria)]

    def saw(self, **criteria: Any) -> bool:
        """Was a packet matching the criteria (see `find`) captured? e.g. `wire.saw(flags="RA", sport=port)`."""
        return bool(self.find(**criteria))

    def __repr__(self) -> str:
        """The packets as of the last sync (pytest shows this in a failed `assert wire.saw(...)`)."""
        if self._report is None:
            return "<wire: not synced yet>"
        packets = self._report.trace.packets
        shown = "; ".join(packet_summary(p) for p in packets[:8]) + ("; …" if len(packets) > 8 else "")
        return f"<wire: {len(packets)} packets{': ' if packets else ''}{shown}>"


def packet_summary(p: Packet) -> str:
    """'#1 TCP 127.0.0.1:41000 → 127.0.0.1:25 S len=0'"""
    from ..explain.wording import endpoint

    flow = f"{endpoint(p.src, p.sport)} → {endpoint(p.dst, p.dport)}" if p.sport or p.dport else f"{p.src} → {p.dst}"
    flags = f" {p.flags or '.'}" if p.proto == "TCP" else (f" type {p.icmp[0]} code {p.icmp[1]}" if p.icmp else "")
    return f"#{p.id} {p.proto} {flow}{flags} len={len(p.payload)}"


def packet_matches(p: Packet, criteria: dict[str, Any]) -> bool:
    """Does `p` meet every criterion of `Wire.find`? Pure."""
    for key, want in criteria.items():
        if key == "flags":
            if set(p.flags) != set(want) or len(p.flags) != len(want):
                return False
        elif key == "port":
            if want not in (p.sport, p.dport):
                return False
        elif key == "contains":
            if bytes(want) not in p.payload:
                return False
        elif key == "proto":
            if p.proto.upper() != str(want).upper():
                return False
        elif getattr(p, key) != want:
            return False
    return True


# -- files -----------------------------------------------------------------------------------------------------------


def file_stem(nodeid: str) -> str:
    """A file name for a test: 'tests/test_net.py::test_refused[a b]' -> 'tests_test_net.py--test_refused-a_b-'.
    Long ids are cut and get a hash, so that two tests never share a name."""
    stem = re.sub(r"[^\w.\-]", "_", nodeid.replace("::", "--").replace("[", "-").replace("]", "-"))
    if len(stem) > 150:
        import hashlib

        stem = stem[:130] + "-" + hashlib.sha1(nodeid.encode()).hexdigest()[:12]
    return stem


def _make_folder(folder: Path) -> None:
    """Create `folder` and its missing parents; under sudo each new folder belongs to the invoking user."""
    from ..output.files import OutputError, invoking_user

    missing = []
    f = folder
    while not f.is_dir():
        missing.append(f)
        if f.parent == f:
            break
        f = f.parent
    owner = invoking_user()
    for f in reversed(missing):
        try:
            f.mkdir(exist_ok=True)
            if owner:
                os.chown(f, *owner)
        except OSError as exc:
            raise OutputError(f"cannot create folder {f}: {exc.strerror}") from None


def _shown(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _runner_files() -> set[str]:
    """Source files of pytest, pluggy and this plugin: their frames are the runner's, left out of stacks."""
    files = {__file__, os.path.abspath(__file__)}
    for name in ("_pytest", "pluggy", "pytest"):
        module = sys.modules.get(name)
        for folder in getattr(module, "__path__", ()):
            for dirpath, _dirs, names in os.walk(folder):
                files.update(os.path.join(dirpath, n) for n in names if n.endswith(".py"))
    import runpy

    files.update((runpy.__file__, "<frozen runpy>"))
    return files
