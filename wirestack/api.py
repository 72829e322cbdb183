"""The Python API: trace a block of your own program.

    import wirestack
    with wirestack.trace() as t:
        smtplib.SMTP("127.0.0.1", 2525)
    print(wirestack.render_text(t.report))
    t.save("refused.pcapng")

The probe records this process's socket calls while the block runs; the capture runs in a separate process
(it must not share this program's GIL), started before the block and drained after it. Capturing needs root
or CAP_NET_RAW, as for the command line. An exception leaving the block is recorded, then propagates.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from .record.assemble import assemble
from .record.capture import CaptureWorker
from .record.loader import Loader
from .record.probe import Probe, exception_dict
from .record.runner import Client, Recording
from .report import Report, build_report


class Tracing:
    def __init__(self, interface: str = "lo", title: str = "trace") -> None:
        self.interface = interface
        self.title = title
        self.report: Report | None = None
        self._records: list[Any] = []
        self._worker: CaptureWorker | None = None
        self._probe: Probe | None = None
        self._started = 0

    def __enter__(self) -> Tracing:
        self._worker = CaptureWorker(self.interface).start()  # raises CaptureError with a one-line reason
        self._started = time.time_ns()
        self._probe = Probe(self._records.extend)
        self._probe.install()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        probe, worker = self._probe, self._worker
        assert probe is not None and worker is not None
        probe.flush()
        probe.uninstall()
        if ev is not None:
            self._records.append({"kind": "exception", **exception_dict(ev, probe, probe.is_hidden)})
        capture = worker.finish()  # closing its stdin tells it to drain and hand over the frames
        loader = Loader()
        loader.feed(self._records)
        recording = Recording(Client(self.title, "with wirestack.trace(): ..."), capture.interface, capture.frames,
                              capture.linktype, len(capture.frames), capture.dropped, loader, self._started, None,
                              os.getpid(), kernel_off="kernel layer off: wirestack.trace() records no kernel layer")
        self.report = build_report(*assemble(recording))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the capture as pcapng, each packet annotated with the call and frames that caused it."""
        from dataclasses import replace

        from .output.annotate import blocks
        from .output.files import write

        if self.report is None:
            raise RuntimeError("save() comes after the with-block")
        trace = self.report.trace
        report = replace(self.report, trace=replace(trace, capture=replace(trace.capture, file=str(path))))
        write(Path(path), blocks(report), force=True)


def trace(interface: str = "lo") -> Tracing:
    """Record socket calls and capture packets while a with-block runs; see `Tracing`."""
    return Tracing(interface)
