"""After the program ran: the analysis in phases, the files, and interruptions answered at once. CLI edge.

    recording -> pairing (record.assemble) -> facts (report), and beside them the application layer (tshark)
              -> files

Interruptions (SIGINT, SIGTERM) while this runs:
- the first stops the analysis where it is and saves the recording unanalysed (`record.saved`) into the pcapng
  asked for — the program's frames and the probe's records, in under a second — which `wirestack read`
  analyses later; wirestack then exits 128 + the signal's number (130, 143), saying so in one line;
- a second, while that is saved, exits at once, removing the temporary file (nothing half-written is left).
If the annotated pcapng was already complete when the signal came, it stays; the file being written (JSON,
SVG, HTML) is dropped and a line says how to make it from the pcapng.

A phase that lasts longer than a second shows itself on stderr (on a terminal only), with rich's Live display.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..output import files
from ..output.files import OutputError, Target
from ..record.runner import Recording, Stop
from ..record.spool import Spool

if TYPE_CHECKING:
    from ..report import Report

SHOW_AFTER = 1.0  # seconds a phase runs before it is shown
BESIDE_OVER = 5000  # packets + calls above which the pcapng is written by a copy of this process (see _Aside)


@dataclass
class Outputs:
    """The files asked for, their folders held open from before the run (see `output.files`)."""

    pcap: Target | None = None
    json: Target | None = None
    pictures: list[tuple[Target, str]] = field(default_factory=list)  # (target, "svg" | "html")

    def close(self) -> None:
        for t in (self.pcap, self.json, *(t for t, _ in self.pictures)):
            if t is not None:
                t.close()


@dataclass
class Result:
    report: Report | None = None
    signum: int = 0  # the analysis was interrupted by this signal
    error: str | None = None  # the first output error, one line
    written: list[Path] = field(default_factory=list)


class Phases:
    """Names the phase under way; on a terminal, a phase that outlasts a second is shown (and cleared after)."""

    def __init__(self, err: TextIO, live: bool) -> None:
        self.err, self.live = err, live
        self.name, self.detail = "", ""
        self.started = time.monotonic()
        self.phase_started = self.started
        self._display: Any = None
        self.times: list[tuple[str, float, int]] = []

    @contextmanager
    def phase(self, name: str, detail: str = "") -> Iterator[None]:
        self.name, self.detail = name, detail
        self.phase_started = time.monotonic()
        try:
            yield
        finally:
            self.times.append((name, time.monotonic() - self.phase_started, _peak_mb()))
            self._refresh()

    def _refresh(self) -> None:
        if not self.live:
            return
        now = time.monotonic()
        if self._display is None and now - self.started >= SHOW_AFTER:
            from rich.console import Console
            from rich.live import Live

            self._display = Live(self._text(), console=Console(file=self.err, stderr=True), transient=True,
                                 refresh_per_second=4, get_renderable=self._text)
            self._display.start()

    def _text(self) -> Any:
        from rich.text import Text

        elapsed = time.monotonic() - self.phase_started
        return Text(f"wirestack: {self.name} {self.detail} ({elapsed:.1f} s; Ctrl-C saves the recording unanalysed "
                    "and quits)", style="dim")

    def tick(self) -> None:
        """Called from a timer thread: start the display once the analysis outlasts a second."""
        self._refresh()

    def close(self) -> None:
        if self._display is not None:
            self._display.stop()
            self._display = None
        if os.environ.get("WIRESTACK_PHASES"):  # phase timings, for benchmarks and profiling
            total = time.monotonic() - self.started
            self.err.write("wirestack phases: " + ", ".join(f"{n} {t:.3f}s ({m} MB)" for n, t, m in self.times)
                           + f"; total {total:.3f}s, peak {_peak_mb()} MB\n")


def _peak_mb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10


_saving = False


def _on_signal(signum: int, _frame: object) -> None:
    if _saving:  # a second signal while the recording is saved: go now, leaving nothing half-written
        for aside in _asides:
            _end_aside(aside.pid)
        files.abandon()
        os._exit(128 + signum)
    raise Stop(signum)


def answer_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


def preload(json: bool = False) -> None:
    """Import what the analysis needs (a tenth of a second): called while the program runs (see
    `record.runner.run_traced`'s `warm`), so the command does not wait for it afterwards."""
    from .. import report  # noqa: F401
    from ..output import annotate, renderers, text  # noqa: F401
    from ..record import assemble, tshark  # noqa: F401

    if json:
        from ..output import json as _json  # noqa: F401


def analyse(recording: Recording, outputs: Outputs, phases: Phases, with_app_layer: Callable[[Any], Any],
            force: bool, pending: int = 0) -> Result:
    """Analyse and write, answering signals as the module docstring says. `pending`: a signal that came while
    the capture drained (the program had ended): the recording is saved at once."""
    from ..output.annotate import blocks
    from ..output.renderers import by_name, render_bytes
    from ..record.assemble import assemble
    from ..record.runner import deferred_signal
    from ..report import explained, link_trace

    global _saving
    answer_signals()  # from now on a signal stops the analysis
    pending = pending or deferred_signal()  # one held since the caller looked (while these modules loaded, say)
    result = Result()
    ticker = _ticker(phases)
    pcap_done = False
    try:
        if pending:
            raise Stop(pending)
        n = f"{len(recording.frames):,} frames, {recording.loader.count:,} calls"
        with phases.phase("pairing", n):
            trace, alignment = assemble(recording)
        if outputs.pcap is not None:
            trace = replace(trace, capture=replace(trace.capture, file=str(outputs.pcap.path)))
        # tshark (a process of its own) labels the application layer while the facts are derived here: no fact
        # reads its labels, they are only shown, so the report takes the labelled packets afterwards
        labelling = _Background(with_app_layer, trace)
        # a large run's pcapng (which needs no facts) is written by a forked copy of this process as soon as the
        # labels are in, beside the facts and the JSON: on 2 cores, one phase less to wait for
        beside = outputs.pcap is not None and len(trace.packets) + len(trace.calls) > BESIDE_OVER and _room_to_fork()
        with phases.phase("facts", f"{len(trace.packets):,} packets, {len(trace.calls):,} calls"):
            base = link_trace(trace, alignment)
            if beside and outputs.pcap is not None and labelling.done():
                _Aside.start(outputs.pcap, partial(blocks, replace(base, trace=labelling.result())))
            report = explained(base)
        check_facts(report)
        with phases.phase("application layer", "(tshark)"):
            report = replace(report, trace=labelling.result())
        result.report = report
        from ..record.runner import pause_for_tests

        pause_for_tests("write")
        if beside and outputs.pcap is not None and not _asides:
            _Aside.start(outputs.pcap, partial(blocks, report))
        jobs: list[tuple[Target, str]] = []
        if outputs.pcap is not None and not _asides:  # written here: small, or the fork failed
            jobs.append((outputs.pcap, "pcapng"))
        if outputs.json is not None:
            jobs.append((outputs.json, "json"))
        jobs += outputs.pictures
        for target, kind in jobs:
            with phases.phase("writing", str(target.path)):
                try:
                    if kind == "pcapng":
                        target.write(blocks(report))
                        pcap_done = True
                    elif kind == "json":
                        from ..output.json import JsonRenderer

                        target.write(JsonRenderer().stream(report))
                    else:
                        target.write([render_bytes(by_name(kind), report)])
                    result.written.append(target.path)
                except OutputError as exc:
                    result.error = result.error or str(exc)
        for aside in list(_asides):
            with phases.phase("writing", str(aside.target.path)):
                try:
                    aside.wait()
                    pcap_done = True
                    result.written.append(aside.target.path)
                except OutputError as exc:
                    result.error = result.error or str(exc)
    except Stop as stop:
        for aside in list(_asides):
            if aside.settle():  # the pcapng written beside was complete: it stays
                pcap_done = True
                result.written.append(aside.target.path)
        _saving = True
        result.signum = stop.signum
        phases.live = False
        phases.close()
        if pcap_done:
            assert outputs.pcap is not None
            phases.err.write(f"wirestack: interrupted (signal {stop.signum}) while writing: {outputs.pcap.path} is "
                             f"complete; `wirestack read {outputs.pcap.path} --json FILE` makes the rest\n")
        elif outputs.pcap is not None:
            phases.err.write(f"wirestack: interrupted (signal {stop.signum}): saving the recording unanalysed to "
                             f"{outputs.pcap.path} ({len(recording.frames):,} frames seen); "
                             f"`wirestack read {outputs.pcap.path}` analyses it\n")
            phases.err.flush()
            try:
                save_unanalysed(recording, outputs.pcap)
                result.written.append(outputs.pcap.path)
            except OutputError as exc:
                result.error = str(exc)
        else:
            phases.err.write(f"wirestack: interrupted (signal {stop.signum}): nothing saved (--no-pcap)\n")
        _saving = False
    finally:
        for aside in list(_asides):
            aside.cancel()
        ticker.set()
        phases.close()
        outputs.close()
    return result


class _Aside:
    """A file written by a forked copy of this process while this one goes on (the facts, the JSON, the text):
    the pcapng of 10,000 refused connects takes 0.8 s, as long as the facts. The temporary file is made, named
    or removed here (`output.files`); the copy only fills it and exits. If this process is interrupted, the copy
    is killed and its file removed, unless it had finished. Every copy under way is in `_asides` from the
    moment it exists (signals are held across the fork), so an interruption finds it."""

    def __init__(self, target: Target, tmp: files.Temporary, pid: int, errors: int) -> None:
        self.target, self.tmp, self.pid, self.errors = target, tmp, pid, errors

    @classmethod
    def start(cls, target: Target, chunks: Callable[[], Iterator[bytes]]) -> None:
        """Fork the copy; if the system cannot fork, nothing is left and the caller writes the file itself."""
        import warnings

        tmp = target.begin()
        errors, w = os.pipe()
        for stream in (sys.stdout, sys.stderr):  # nothing buffered here is written twice
            stream.flush()
        with _signals_held() as held:  # a signal held meanwhile is answered once the copy is registered
            try:
                with warnings.catch_warnings():  # 3.12+ warns of fork beside the progress thread: no lock is taken
                    warnings.simplefilter("ignore", DeprecationWarning)
                    pid = os.fork()
            except OSError:
                os.close(errors)
                os.close(w)
                target.finish(tmp, OSError(0, "not forked"), quiet=True)
                return
            if pid == 0:
                _fill_and_exit(tmp.fd, chunks, w, held)
            os.close(w)
            _asides.append(cls(target, tmp, pid, errors))

    def wait(self) -> None:
        """Until the copy is done; then the file gets its name, or OutputError says why not."""
        os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)  # not reaped: a signal's Stop here, see settle
        if not self._reap():
            raise OutputError(f"cannot write {self.target.path}: its writer vanished")

    def settle(self) -> bool:
        """After an interruption: True if the copy had already written the whole file (which then stays);
        else it is killed and its file removed."""
        try:
            if self._reap():
                return True
        except OutputError:
            return False
        self.cancel()
        return False

    def _reap(self) -> bool:
        """If the copy has exited: reap it and name its file (True), or raise OutputError; False if it runs."""
        with _signals_held():  # reaped and accounted for at once, never one without the other
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if not done:
                return False
            self._ended(status)
            return True

    def _ended(self, status: int) -> None:
        _asides.remove(self)
        said = os.read(self.errors, 64)
        os.close(self.errors)
        code = os.waitstatus_to_exitcode(status)
        error = None
        if code:
            number = int(said) if said.isdigit() else 0
            error = OSError(number, os.strerror(number) if number else f"its writer ended with status {code}")
        self.target.finish(self.tmp, error)

    def cancel(self) -> None:
        _end_aside(self.pid)
        _asides.remove(self)
        os.close(self.errors)
        self.target.finish(self.tmp, OSError(0, "interrupted"), quiet=True)


_asides: list[_Aside] = []  # copies writing a file, ended with wirestack on a second signal


@contextmanager
def _signals_held() -> Iterator[set[Any]]:
    """SIGINT and SIGTERM held (not lost) inside; yields the mask to restore."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield held
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _room_to_fork() -> bool:
    """Memory for a copy: it shares this process's pages but copies those it touches (reading the report
    touches most of them), so fork only while the memory available is more than twice this process's."""
    try:
        with open("/proc/self/statm") as f:
            resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, ValueError, IndexError, StopIteration):
        return False
    return available > 2 * resident


def _end_aside(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _fill_and_exit(fd: int, chunks: Callable[[], Iterator[bytes]], errors: int, mask: set[Any]) -> None:
    """In the copy: fill the file, say which errno stopped it (if any), exit without running anything else."""
    code = 3
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the group: the parent answers
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        from ..record.runner import pause_for_tests

        pause_for_tests("aside")
        files.fill(fd, chunks())
        code = 0
    except OSError as exc:
        os.write(errors, str(exc.errno or 0).encode())
        code = 1
    finally:
        os._exit(code)


class FactsDisagree(Exception):
    """WIRESTACK_CHECK_FACTS is set and two facts (or a fact and its packet) disagree: a bug in a rule."""


def check_facts(report: Report) -> None:
    """With WIRESTACK_CHECK_FACTS set (the test suite sets it for every run it makes), a report whose facts
    disagree about a packet is an error instead of a report."""
    if os.environ.get("WIRESTACK_CHECK_FACTS"):
        from ..explain import disagreements

        found = disagreements(report.trace, report.facts)
        if found:
            raise FactsDisagree("; ".join(found[:5]))


def save_unanalysed(recording: Recording, target: Target) -> None:
    """The program's frames (by its ports) and the probe's records, as a pcapng `wirestack read` analyses."""
    from ..formats import archive, pcapng
    from ..record.saved import own_frames, recording_doc

    keep = own_frames(recording)
    f = recording.frames
    values = archive.recording_values(recording_doc(recording), ((f.times[i], f.data[i]) for i in keep), len(keep))
    snaplen = max((len(f.data[i]) for i in keep), default=0)

    def chunks() -> Iterator[bytes]:
        yield pcapng.section_header("wirestack (recording saved unanalysed)", values)
        yield pcapng.interface_description(recording.linktype, max(snaplen, 65535), recording.interface or "capture")
        epb = pcapng.enhanced_packet
        for i in range(0, len(keep), 4096):
            yield b"".join(epb(f.times[j], f.data[j], f.lengths[j]) for j in keep[i:i + 4096])

    target.write(chunks())


class _Background:
    """`fn(arg)` in a daemon thread; `result()` waits for it (and re-raises what it raised)."""

    def __init__(self, fn: Callable[[Any], Any], arg: Any) -> None:
        import threading

        self._value: Any = arg
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, arg), name="wirestack-tshark", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[Any], Any], arg: Any) -> None:
        try:
            self._value = fn(arg)
        except BaseException as exc:  # handed to the caller
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> Any:
        while self._thread.is_alive():  # in short waits: a signal is answered meanwhile
            self._thread.join(0.1)
        if self._error is not None:
            raise self._error
        return self._value


def _ticker(phases: Phases) -> Any:
    """A daemon thread that lets a long phase show itself; returns the event that stops it."""
    import threading

    done = threading.Event()

    def run() -> None:
        while not done.wait(0.25):
            phases.tick()

    if phases.live:
        threading.Thread(target=run, name="wirestack-progress", daemon=True).start()
    return done


def spool_for(outputs: Outputs) -> Spool | None:
    return Spool(outputs.pcap.path) if outputs.pcap is not None else None


def show(report: Report, out: TextIO, width: int | None, color: bool, all_: bool) -> None:
    from ..output.text import TextRenderer

    out.write(TextRenderer(width or 100, color, all_).render(report))
    out.flush()


__all__ = ["Outputs", "Phases", "Result", "analyse", "answer_signals", "save_unanalysed", "show", "spool_for"]
