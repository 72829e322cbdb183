"""tcpdump on loopback, for runs of the corpus outside wirestack (the witness's own captures).

    with Tcpdump("run.pcapng"):       # returns once tcpdump is really capturing
        subprocess.run(...)
    # run.pcapng: every packet of the run, none of the probes

Being "really capturing" is proven, not assumed: after tcpdump says it is listening, probe datagrams go to a
UDP socket of ours until one shows in the file. On the way out a last probe shows the capture has caught up
before tcpdump is stopped; then the probes are filtered out with tshark, which also writes pcapng.
`--immediate-mode` matters: without it packets wait in the kernel's ring for up to a second and the last ones
are lost when tcpdump stops.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from types import TracebackType

START_TIMEOUT = 10.0
PROBE = b"corpus-capture-probe"


class CaptureError(Exception):
    pass


class Tcpdump:
    def __init__(self, path: str, interface: str = "lo", snaplen: int = 262144) -> None:
        self.path = path
        self.raw = path + ".raw.pcap"
        self.interface = interface
        self.snaplen = snaplen
        self.proc: subprocess.Popen[bytes] | None = None
        self.probe: socket.socket | None = None
        self.stderr = b""

    def _size(self) -> int:
        try:
            return os.path.getsize(self.raw)
        except OSError:
            return 0

    def _probe_until_seen(self, limit: float) -> None:
        """Send probes to our own socket until the file grows."""
        assert self.probe is not None
        before = self._size()
        port = self.probe.getsockname()[1]
        end = time.monotonic() + limit
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            while time.monotonic() < end:
                tx.sendto(PROBE, ("127.0.0.1", port))
                for _ in range(10):
                    time.sleep(0.01)
                    if self._size() > before:
                        return
        raise CaptureError(f"tcpdump wrote no probe within {limit:.0f} s")

    def start(self) -> Tcpdump:
        exe = shutil.which("tcpdump")
        if exe is None:
            raise CaptureError("tcpdump is not installed")
        self.probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.probe.bind(("127.0.0.1", 0))
        self.proc = subprocess.Popen([exe, "-i", self.interface, "-n", "-U", "--immediate-mode", "-Z", "root",
                                      "-s", str(self.snaplen), "-w", self.raw], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        assert self.proc.stderr is not None
        end = time.monotonic() + START_TIMEOUT
        while b"listening on" not in self.stderr:
            if time.monotonic() > end or self.proc.poll() is not None:
                self.stop()
                raise CaptureError(f"tcpdump did not start: {self.stderr.decode(errors='replace').strip()}")
            r, _, _ = select.select([self.proc.stderr], [], [], 0.05)
            if r:
                self.stderr += os.read(self.proc.stderr.fileno(), 4096)
        try:
            self._probe_until_seen(START_TIMEOUT)
        except CaptureError:
            self.stop()
            raise
        return self

    def stop(self) -> str:
        """Stop tcpdump once it has caught up, write `path` without the probes; the path."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(CaptureError):
                self._probe_until_seen(3.0)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        port = self.probe.getsockname()[1] if self.probe is not None else None
        if self.probe is not None:
            self.probe.close()
            self.probe = None
        if os.path.exists(self.raw) and port is not None:
            tshark = shutil.which("tshark") or "tshark"
            subprocess.run([tshark, "-r", self.raw, "-Y", f"!(udp.port == {port})", "-F", "pcapng", "-w",
                            self.path], check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
            os.unlink(self.raw)
        return self.path

    def __enter__(self) -> Tcpdump:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
