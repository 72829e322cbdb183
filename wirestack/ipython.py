"""IPython and Jupyter: the classic experiment in a notebook cell.

    %load_ext wirestack.ipython          (or %load_ext wirestack)
    %%wire                               run the cell traced; its report below it
    import socket
    socket.create_connection(("127.0.0.1", 9))

    %wire_save session.pcapng            every %%wire cell's packets so far, annotated, in one pcapng

In Jupyter the report is the HTML page `--html` writes (the same renderer: text coloured by layer, then the ladder),
inline; in a terminal IPython it is the text report, coloured. `wire` in the namespace holds the last cell's
(`wire.report`, `.packets`, `.calls`, `wire.save(path)`).

The kernel is the traced program: it cannot be moved into a private namespace (the notebook server must reach
it), so it needs a capture it may open itself, chosen on the first %%wire: a raw socket in a capture process of
its own (root or CAP_NET_RAW; `capture.CaptureWorker`, which never shares the kernel's GIL), or dumpcap (a member
of the wireshark group; see `record.dumpcap`). `%%wire --capture dumpcap` forces the latter. The probe is
installed in the kernel on the first %%wire and records every thread's socket calls; a cell's are those made
while it ran. IPython's own frames (and this module's) are left out of stacks, as the runner's are.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .record.capture import CaptureError, CaptureWorker, Frames
from .record.source import can_capture_raw, describe, dumpcap_usable

KERNEL_OFF = "kernel layer off: the notebook extension records no kernel layer"


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magic_function(_cell, magic_kind="cell", magic_name="wire")
    ipython.register_magic_function(_save, magic_kind="line", magic_name="wire_save")
    _state.shell = ipython


def unload_ipython_extension(ipython: Any) -> None:
    _state.stop()


@dataclass
class Cell:
    """One %%wire cell's recording."""

    n: int
    source: str
    started_ns: int
    records: list[Any] = field(default_factory=list)
    frames: Frames = field(default_factory=Frames)
    dropped: int = 0


class Session:
    """The kernel's probe and capture, shared by every %%wire cell."""

    def __init__(self) -> None:
        self.shell: Any = None
        self.probe: Any = None
        self.capture: Any = None  # a CaptureWorker, or an open DumpcapCapture
        self.how = ""
        self.linktype = 1
        self.cells: list[Cell] = []
        self.last: Any = None  # the last cell's Report
        self._shared: list[Any] = []  # code objects, source lines, sockets: described once for every cell
        self._target: list[Any] | None = None
        self._lock = threading.Lock()

    # -- starting, once --------------------------------------------------------------------------------------------

    def start(self, want: str = "auto", interface: str = "lo") -> None:
        if self.probe is not None:
            return
        self.capture, self.how = _open_capture(want, interface)
        from .record.probe import Probe

        probe = Probe(self._sink)
        probe.hide_files(*_runner_files())
        probe.install()
        self.probe = probe

    def stop(self) -> None:
        if self.probe is not None:
            self.probe.uninstall()
            self.probe = None
        capture, self.capture = self.capture, None
        if isinstance(capture, CaptureWorker):
            capture.kill()
        elif capture is not None:
            capture.close()

    def _sink(self, items: list[Any]) -> None:
        from .record.items import DESCRIPTIONS

        with self._lock:
            target = self._target
            for item in items:
                if isinstance(item, tuple) and item and item[0] in DESCRIPTIONS:
                    self._shared.append(item)
                elif target is not None:
                    target.append(item)

    # -- one cell ----------------------------------------------------------------------------------------------------

    def run(self, cell: str) -> Any:
        """Run `cell` traced (IPython's own run_cell: its display, its traceback); return its Report."""
        from .record.probe import exception_dict

        assert self.probe is not None and self.shell is not None
        rec = Cell(len(self.cells) + 1, cell, time.time_ns())
        self.probe.flush()  # what is pending came before the cell
        if isinstance(self.capture, CaptureWorker):
            self.capture.forget(rec.started_ns)
        with self._lock:
            self._target = rec.records
        try:
            result = self.shell.run_cell(cell, store_history=False)
        finally:
            self.probe.flush()
            with self._lock:
                self._target = None
        error = getattr(result, "error_in_exec", None)
        if isinstance(error, BaseException):
            rec.records.append({"kind": "exception", **exception_dict(error, self.probe, self.probe.is_hidden)})
        notes = self._drain(rec)
        self.cells.append(rec)
        self.last = self._report(f"wire [{rec.n}]", cell, rec.records, rec.frames, rec.dropped, rec.started_ns, notes)
        return self.last

    def _drain(self, rec: Cell) -> list[str]:
        try:
            if isinstance(self.capture, CaptureWorker):
                frames, rec.dropped = self.capture.drain()
                self.linktype = self.capture.linktype
            else:
                before = self.capture.dropped
                self.capture.drain()
                frames, rec.dropped = self.capture.take(), self.capture.dropped - before
                self.linktype = self.capture.linktype
        except CaptureError as exc:
            return [f"the capture could not be drained: {exc}"]
        keep = [i for i, t in enumerate(frames.times) if t >= rec.started_ns]
        rec.frames = Frames([frames.times[i] for i in keep], [frames.lengths[i] for i in keep],
                            [frames.data[i] for i in keep])
        return []

    def _report(self, title: str, source: str, records: list[Any], frames: Frames, dropped: int, started: int,
                notes: list[str]) -> Any:
        from .record.assemble import build_trace
        from .record.loader import Loader
        from .record.runner import Client, Recording
        from .record.tshark import with_app_layer
        from .report import build_report

        loader = Loader()
        with self._lock:
            loader.feed(list(self._shared))
        loader.feed(records)
        all_notes = ([] if self.how == describe_raw() else [self.how]) + notes
        recording = Recording(Client(title, source, "<cell>"), "lo", frames, self.linktype, len(frames), dropped,
                              loader, started, None, os.getpid(), kernel_off=KERNEL_OFF, notes=all_notes,
                              python=".".join(map(str, sys.version_info[:3])), frameless=self.probe.frameless)
        return build_report(with_app_layer(build_trace(recording)))

    def session_report(self, file: str) -> Any:
        """Every cell's calls and packets so far, in one report (the cells' exceptions left out: none ended it)."""
        records = [r for c in self.cells for r in c.records
                   if not (isinstance(r, dict) and r.get("kind") == "exception")]
        frames = Frames()
        for c in self.cells:
            frames.times += c.frames.times
            frames.lengths += c.frames.lengths
            frames.data += c.frames.data
        started = self.cells[0].started_ns if self.cells else time.time_ns()
        source = "\n".join(c.source.rstrip("\n") for c in self.cells)
        report = self._report("wire session", source, records, frames, sum(c.dropped for c in self.cells), started,
                              [])
        trace = report.trace
        return replace(report, trace=replace(trace, capture=replace(trace.capture, file=file)))


def describe_raw() -> str:
    from .record.capture import Capture

    return describe(Capture("lo"))


def _open_capture(want: str, interface: str) -> tuple[Any, str]:
    """A capture the kernel may open itself (see the module's notes)."""
    from .record.source import WANTS

    if want not in WANTS or want == "netns":
        raise CaptureError("%%wire --capture: raw or dumpcap (a notebook kernel cannot move into a private "
                           "namespace: the notebook server must reach it)")
    if want == "raw" or (want == "auto" and can_capture_raw()):
        import signal

        from .record.capture import Capture

        # The worker starts with SIGINT ignored (a Python child keeps an inherited SIG_IGN): Jupyter's "interrupt"
        # signals the kernel's whole process group, and must stop the cell, not the capture.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            worker = CaptureWorker(interface).start()
        finally:
            signal.signal(signal.SIGINT, previous)
        return worker, describe(Capture(interface))
    path = dumpcap_usable()
    if path is None:
        raise CaptureError(f"this kernel cannot capture on {interface}: it needs root or CAP_NET_RAW, or Wireshark's "
                           "dumpcap with capture rights for your group (Debian: dpkg-reconfigure wireshark-common, "
                           "then join the wireshark group and restart the kernel)")
    from .record.dumpcap import DumpcapCapture

    capture = DumpcapCapture(interface, path=path).open()
    return capture, describe(capture)


def _runner_files() -> list[str]:
    """This module's file and IPython's and ipykernel's: their frames are the runner's, left out of stacks."""
    import IPython

    files = [__file__]
    folders = [os.path.dirname(IPython.__file__)]
    kernel = sys.modules.get("ipykernel")
    if kernel is not None and getattr(kernel, "__file__", None):
        folders.append(os.path.dirname(str(kernel.__file__)))
    for folder in folders:
        for path, _dirs, names in os.walk(folder):
            files += [os.path.join(path, n) for n in names if n.endswith(".py")]
    return files


_state = Session()


# -- the magics -----------------------------------------------------------------------------------------------------


def _options(line: str) -> tuple[str, str]:
    words = line.split()
    want, interface = "auto", "lo"
    for i, w in enumerate(words):
        if w == "--capture" and i + 1 < len(words):
            want = words[i + 1]
        if w in ("-i", "--interface") and i + 1 < len(words):
            interface = words[i + 1]
    return want, interface


def _cell(line: str, cell: str) -> None:
    from IPython import display as shown

    display: Any = shown.display
    try:
        _state.start(*_options(line))
    except CaptureError as exc:
        print(f"wirestack: {exc}", file=sys.stderr)
        return
    report = _state.run(cell)
    shell = _state.shell
    if shell is not None:
        shell.user_ns["wire"] = Wire(report)
    display(Shown(report))


def _save(line: str) -> None:
    from .output.annotate import blocks
    from .output.files import OutputError, write

    path = line.strip()
    if not path:
        print("wirestack: %wire_save FILE", file=sys.stderr)
        return
    if not _state.cells:
        print("wirestack: no %%wire cell has run yet: nothing to save", file=sys.stderr)
        return
    report = _state.session_report(path)
    try:
        write(Path(path), blocks(report), force=True)
    except OutputError as exc:
        print(f"wirestack: {exc}", file=sys.stderr)
        return
    print(f"wirestack: wrote {path} ({len(_state.cells)} cells, {len(report.trace.packets)} packets)")


class Shown:
    """A report as IPython displays it: the HTML report with its ladder in Jupyter, the text report in a
    terminal (coloured there)."""

    def __init__(self, report: Any) -> None:
        self.report = report

    def _repr_html_(self) -> str:
        return inline_html(self.report)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        if _in_jupyter():  # rich, which draws the text report, would display it there instead of returning it
            t = self.report.trace
            printer.text(f"wirestack {t.title}: {len(t.packets)} packets, {len(t.calls)} calls (see the HTML report)")
            return
        printer.text(self.text(color=_colour()))

    def text(self, color: bool = False) -> str:
        import shutil

        from .output.text import TextRenderer

        width = max(40, min(1000, shutil.get_terminal_size((100, 24)).columns))
        return TextRenderer(width, color).render(self.report).rstrip("\n")

    def __repr__(self) -> str:
        return self.text()


def inline_html(report: Any) -> str:
    """The `--html` page's body, to sit inside a notebook: its page-wide style moved onto a wrapper of its own."""
    from .output.picture import HtmlRenderer

    page = HtmlRenderer().render(report)
    body = page.split("<body>", 1)[-1].rsplit("</body>", 1)[0]
    body = body.replace('<pre class="report">', '<pre class="report" style="line-height: 1.35">')
    return ('<div class="wirestack" style="font-family: monospace; font-size: 13px; color: #222222; '
            f'background: #ffffff; padding: 0.5em">{body}</div>')


def _in_jupyter() -> bool:
    """A kernel behind a notebook (ipykernel's shell), not a terminal IPython."""
    return type(_state.shell).__name__ == "ZMQInteractiveShell"


def _colour() -> bool:
    out = sys.stdout
    return bool(getattr(out, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ


class Wire:
    """The last %%wire cell: `report`, `packets`, `calls`, `save(path)`."""

    def __init__(self, report: Any) -> None:
        self.report = report

    @property
    def packets(self) -> tuple[Any, ...]:
        return tuple(self.report.trace.packets)

    @property
    def calls(self) -> tuple[Any, ...]:
        return tuple(self.report.trace.calls)

    def save(self, path: str | os.PathLike[str]) -> str:
        from .output.annotate import blocks
        from .output.files import write

        name = os.fspath(path)
        trace = self.report.trace
        report = replace(self.report, trace=replace(trace, capture=replace(trace.capture, file=name)))
        write(Path(name), blocks(report), force=True)
        return name

    def __repr__(self) -> str:
        return (f"<wire: {len(self.packets)} packets, {len(self.calls)} calls; wire.report, wire.packets, "
                "wire.calls, wire.save(path)>")


__all__ = ["Session", "Shown", "Wire", "inline_html", "load_ipython_extension", "unload_ipython_extension"]
