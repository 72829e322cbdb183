"""wirestack's errors: one base, each error's message one line for the user (the CLI prints it and exits 2).

    WirestackError
    ├── UsageError          the command line asks for something impossible        (cli)
    ├── ProgramError        the program cannot start (no such interpreter, too old) (record.runner)
    ├── CaptureError        the capture cannot start or drain (no privilege, no such interface)
    │                                                                               (record.capture, record.dumpcap)
    ├── NamespaceError      the private user+network namespace cannot be made     (record.netns)
    ├── KernelOff           the kernel layer cannot be recorded (a note, the run goes on) (record.tracefs)
    ├── PeerError           a scenario's local peer cannot start                   (labs.peers)
    ├── NetworkError        a lab topology cannot be built                         (labs.network)
    ├── ReadError           a file is no capture at all                            (formats.reader)
    ├── ArchiveError        a capture's embedded trace cannot be read (the wire alone is shown) (formats.archive)
    ├── OutputError         an output file cannot be written (nothing half-written is left) (output.files)
    └── WiresharkError      the Wireshark plugin cannot be installed or Wireshark opened (commands.wireshark)

Not errors but signals: `record.runner.Stop` (a BaseException, raised by SIGINT/SIGTERM handlers) and
`record.runner.Interrupted` (a run stopped by a signal, carrying what it recorded).
"""

from __future__ import annotations


class WirestackError(Exception):
    """Anything wirestack refuses or cannot do; `str(error)` is one line for the user."""


class UsageError(WirestackError):
    pass


class ProgramError(WirestackError):
    pass


class CaptureError(WirestackError):
    pass


class NamespaceError(WirestackError):
    pass


class KernelOff(WirestackError):
    pass


class PeerError(WirestackError):
    pass


class NetworkError(WirestackError):
    pass


class ReadError(WirestackError):
    pass


class ArchiveError(WirestackError):
    pass


class OutputError(WirestackError):
    pass


class WiresharkError(WirestackError):
    pass
