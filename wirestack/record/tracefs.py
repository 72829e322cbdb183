"""Recording the kernel's own tracepoints through tracefs, in a private instance (root only).

One instance, named `wirestack-PID-N`, removed afterwards (also when interrupted; stale ones of dead wirestack
processes are removed at start). It records
- connect/accept syscalls (entry and return), filtered in the kernel to processes named like the traced
  interpreter (`comm`), and afterwards to the traced processes' pids. Not the data syscalls (sendto,
  recvfrom...): their return is the call's own result, which the probe records, and a syscall tracepoint costs
  every call it fires on (~0.4 µs, measured) even when its filter then drops the event: a loop of sends would
  pay that per datagram;
- socket state changes, resets, error reports (not the ones clearing an error: error 0), retransmissions, drops
  and ICMP sends from any context (softirq work runs in whichever process is current), filtered afterwards to
  the traced flows.
Its timestamps are put on CLOCK_REALTIME by two sync markers written into the trace (see `parse`).
Nothing global is touched: no event is enabled outside the instance, and where tracefs is not mounted it is
mounted in a private mount namespace of wirestack's own (nothing to unmount, and no other run, concurrent or
not, sees it come or go). Instance names carry the pid and a
counter, so concurrent runs never share one. Removing an instance costs the kernel ~40 ms; the removal runs in a
background thread that the interpreter waits for at exit.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from sys import intern

from ..errors import KernelOff as KernelOff
from ..model import KernelEvent

MOUNT = Path("/sys/kernel/tracing")
SYS_EVENTS = ("syscalls/sys_enter_connect", "syscalls/sys_exit_connect", "syscalls/sys_enter_accept4",
              "syscalls/sys_exit_accept4", "syscalls/sys_enter_accept", "syscalls/sys_exit_accept")
NET_EVENTS = ("sched/sched_process_fork", "sock/inet_sock_set_state", "tcp/tcp_send_reset", "tcp/tcp_receive_reset",
              "sock/inet_sk_error_report", "tcp/tcp_retransmit_skb", "tcp/tcp_retransmit_synack",
              "skb/kfree_skb", "icmp/icmp_send")


_SERIAL = itertools.count(1)
BUFFER_KB = 2048  # per CPU: about 25,000 events each, which bounds the kernel layer's cost after the run


@dataclass
class Recorder:
    folder: Path
    offsets: list[int] = field(default_factory=list)  # unused: the clock is read off sync markers (kevents)

    @classmethod
    def start(cls, interpreter: str = "python3", keep_newest: bool = False) -> Recorder:
        """Set up the instance and start recording; syscalls only of processes whose `comm` is the basename of
        `interpreter` (as exec sets it). `keep_newest`: once the buffer is full, the oldest events make room
        (a shell session, whose inputs are reported one by one, wants its latest input's); by default the
        run's beginning is kept. Raises KernelOff."""
        if os.geteuid() != 0:
            raise KernelOff("kernel layer off: reading tracepoints needs root")
        if _outer_uid() != 0:
            raise KernelOff("kernel layer off: tracepoints need real root, and this run is root only inside its "
                            "private namespace")
        _ensure_mounted()
        _remove_stale()
        rec = cls(MOUNT / "instances" / f"wirestack-{os.getpid()}-{next(_SERIAL)}-{time.monotonic_ns() % 1_000_000}"
                                         f"-ns{_pid_namespace()}")
        folder = rec.folder
        comm = os.path.basename(interpreter)[:15].replace('"', "")
        try:
            folder.mkdir()
            # The instance keeps its default clock: switching it resets the ring buffer. Time is put on
            # CLOCK_REALTIME through sync markers instead (see `parse`). Its buffer grows from 1.4 to 2 MiB a
            # CPU (~15 ms, measured), and once full it keeps the oldest events (overwrite off): the beginning of a
            # run, where its first failure is, rather than its end. A larger buffer would hold more of a long
            # run, at ~40 µs an event after it (parsing, joining, JSON): 100,000 events cost 4 s.
            _write(folder / "buffer_size_kb", str(BUFFER_KB))
            _write(folder / "options" / "overwrite", "1" if keep_newest else "0")
            _write(folder / "options" / "record-tgid", "1")  # each line names its thread's process too
            missing = [e for e in SYS_EVENTS + NET_EVENTS if not (folder / "events" / e).is_dir()]
            if missing:
                raise KernelOff(f"kernel layer off: this kernel has no tracepoint {missing[0]}")
            for e in SYS_EVENTS:
                _write(folder / "events" / e / "filter", f'comm == "{comm}"')
            _write(folder / "events" / "skb" / "kfree_skb" / "filter", _drop_filter(folder))
            # a socket's error report with error 0 is the kernel clearing the error once it was read: one per
            # failed connect, telling nothing
            _write(folder / "events" / "sock" / "inet_sk_error_report" / "filter", "error != 0")
            for e in SYS_EVENTS + NET_EVENTS:
                _write(folder / "events" / e / "enable", "1")
            _mark(folder)
        except OSError as exc:
            rec.remove()
            raise KernelOff(f"kernel layer off: tracefs refused ({exc.strerror})") from None
        except KernelOff:
            rec.remove()
            raise
        return rec

    def stop(self) -> tuple[str, list[str]]:
        """Stop, read the buffer, remove the instance (in the background): (text, notes); the clock offset
        is read off the sync markers in the text (see `parse`). Raises KernelOff when it cannot be read."""
        notes = []
        text = ""
        try:
            try:
                try:
                    _mark(self.folder)
                except OSError:  # EBADF: the buffer is full (overwrite off); the first marker serves alone
                    pass
                _write(self.folder / "tracing_on", "0")
                text = (self.folder / "trace").read_text(errors="replace")
                lost = _overruns(self.folder)
            except OSError as exc:
                raise KernelOff(f"kernel layer off: its tracefs instance could not be read at the end of the run "
                                f"({exc.strerror}): removed by another program?") from None
            if lost:
                notes.append(f"the kernel's trace buffer ({BUFFER_KB >> 10} MiB a CPU) filled up: the {lost:,} kernel "
                             "events after that were not recorded, so the kernel layer covers the run's beginning")
        finally:
            threading.Thread(target=self.remove, name="wirestack-tracefs-cleanup").start()
        return text, notes

    def remove(self) -> None:
        _remove_instance(self.folder)


# kfree_skb reasons kept out in the kernel: a drop is only told when it joins a reset or an ICMP error (the
# segment that found no socket, see kevents), which these never do; a full receive buffer would otherwise put
# one event per datagram into the trace in a burst.
QUIET_DROPS = ("NOT_SPECIFIED", "SOCKET_RCVBUFF", "SOCKET_FILTER", "PROTO_MEM")


def _drop_filter(folder: Path) -> str:
    """`reason != N && ...` for QUIET_DROPS, with this kernel's numbers (read off the event's format)."""
    text = (folder / "events" / "skb" / "kfree_skb" / "format").read_text()
    numbers = [m.group(1) for name in QUIET_DROPS if (m := re.search(r'\{\s*(\d+),\s*"' + name + r'"\s*\}', text))]
    return " && ".join(f"reason != {n}" for n in numbers) or "0"  # "0": clears the filter


def _outer_uid() -> int:
    """The uid that our uid 0 stands for in the initial namespace (0 unless we are in a user namespace)."""
    try:
        for line in Path("/proc/self/uid_map").read_text().splitlines():
            inside, outside, _count = (int(x) for x in line.split())
            if inside == 0:
                return outside
    except (OSError, ValueError):
        pass
    return 0


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


SYNC = "wirestack-sync"


def _mark(folder: Path) -> None:
    """A marker in the trace holding CLOCK_REALTIME: the trace clock's reading of it gives the offset. The file
    is opened first (opening costs ~50 µs) and the realtime taken just before the write; the write itself is
    the trace clock's moment."""
    fd = os.open(folder / "trace_marker", os.O_WRONLY)
    try:
        os.write(fd, f"{SYNC} {time.time_ns()}".encode())
    finally:
        os.close(fd)


_private = False


def _ensure_mounted() -> None:
    """tracefs at MOUNT, mounted in a private mount namespace of this thread (unshare CLONE_NEWNS, everything
    made private first so that nothing propagates back), also when the system has it mounted: then nobody
    unmounting the system's tracefs during the run takes this run's instance out of reach (seen when tests ran
    side by side). The namespace, and the mount with it, end with wirestack's process; no other process sees
    it."""
    global _private
    if _private and (MOUNT / "instances").is_dir():
        return
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    ms_rec, ms_private, clone_newns = 0x4000, 1 << 18, 0x00020000
    ok = libc.unshare(clone_newns) == 0 and libc.mount(b"none", b"/", None, ms_rec | ms_private, None) == 0 and \
        libc.mount(b"nodev", str(MOUNT).encode(), b"tracefs", 0, None) == 0
    if not ok and (MOUNT / "instances").is_dir():
        return  # the system's own mount, then (and someone unmounting it would end this run's kernel layer)
    if not ok or not (MOUNT / "instances").is_dir():
        raise KernelOff("kernel layer off: tracefs is not mounted and could not be mounted at " + str(MOUNT))
    _private = True


def _overruns(folder: Path) -> int:
    """Events lost: overwritten (overrun) or, with overwrite off, not written to a full buffer (dropped)."""
    total = 0
    for stats in (folder / "per_cpu").glob("cpu*/stats"):
        for line in stats.read_text().splitlines():
            if line.startswith(("overrun:", "dropped events:")):
                total += int(line.rsplit(None, 1)[1])
    return total


def _remove_instance(folder: Path) -> None:
    if not folder.is_dir():
        return
    try:
        _write(folder / "tracing_on", "0")
    except OSError:
        pass
    for _ in range(50):  # rmdir fails with EBUSY while a reader holds the buffer open
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
    shutil.rmtree(folder, ignore_errors=True)


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def _remove_stale() -> None:
    """Instances left by a wirestack process that no longer exists (killed with SIGKILL). Only those made in
    this PID namespace: from another one (a wirestack run inside a PID namespace, or seen from one), a pid says
    nothing, and removing a live run's instance would end its kernel layer (seen when runs went side by side)."""
    ours = f"ns{_pid_namespace()}"
    for folder in (MOUNT / "instances").glob("wirestack-*"):
        parts = folder.name.split("-")
        try:
            pid = int(parts[1])
        except (IndexError, ValueError):
            continue
        if parts[-1] != ours:
            continue
        if not Path(f"/proc/{pid}").exists():
            _remove_instance(folder)


def instances() -> list[str]:
    """Names of wirestack's instances that exist now (tests check none survive)."""
    folder = MOUNT / "instances"
    return sorted(p.name for p in folder.glob("wirestack-*")) if folder.is_dir() else []


_LINE = re.compile(r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*(?P<tgid>[\d-]+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
                   r"(?P<flags>\S+)\s+(?P<sec>\d+)\.(?P<usec>\d{6}):\s(?P<body>.*)$")
_ENTER = re.compile(r"^sys_(?P<name>\w+)\((?P<args>.*)\)$")
_EXIT = re.compile(r"^sys_(?P<name>\w+) -> (?P<ret>0x[0-9a-f]+)$")
_EVENT = re.compile(r"^(?P<name>\w+): (?P<rest>.*)$")
_ICMP = re.compile(r"type=(?P<type>\d+), code=(?P<code>\d+)\. From (?P<src>\S+):(?P<sport>\d+) to "
                   r"(?P<dst>\S+):(?P<dport>\d+) ulen=(?P<ulen>\d+) skbaddr=(?P<skbaddr>\S+)")
_FIELD = re.compile(r"(\w+)=(\S+)")
_SYNC = re.compile(r"tracing_mark_write: wirestack-sync (\d+)")


def parse(text: str, offset_ns: int = 0) -> list[KernelEvent]:
    """tracefs `trace` text to events (ids 1..N in file order), times moved onto CLOCK_REALTIME by the sync
    markers wirestack writes into the trace (each holds the realtime clock when written; the trace clock stamps
    it too), else by `offset_ns` (trace clock minus realtime). Pure. The pid a line shows is the kernel's thread
    id."""
    out: list[KernelEvent] = []
    syncs = []
    lines = text.splitlines()
    for line in lines:
        if "wirestack-sync" in line and (m := _LINE.match(line)) and (s := _SYNC.search(m["body"])):
            syncs.append(int(m["sec"]) * 1_000_000_000 + int(m["usec"]) * 1000 - int(s.group(1)))
    if syncs:
        offset_ns = sum(syncs) // len(syncs)
    for line in lines:
        if line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        t = int(m["sec"]) * 1_000_000_000 + int(m["usec"]) * 1000 - offset_ns
        tid, body = int(m["pid"]), m["body"]
        tgid = m["tgid"]
        pid = int(tgid) if tgid and tgid.isdigit() else 0
        n = len(out) + 1
        if e := _ENTER.match(body):
            fields = dict(kv.split(": ", 1) for kv in e["args"].split(", ") if ": " in kv)
            out.append(KernelEvent(n, t, f"sys_enter_{e['name']}", tid, fields, pid))
        elif x := _EXIT.match(body):
            ret = int(x["ret"], 16)
            out.append(KernelEvent(n, t, f"sys_exit_{x['name']}", tid,
                                   {"ret": str(ret - (1 << 64) if ret >= 1 << 63 else ret)}, pid))
        elif ev := _EVENT.match(body):
            name, rest = ev["name"], ev["rest"]
            if name == "tracing_mark_write":
                continue
            if name == "icmp_send" and (i := _ICMP.search(rest)):
                fields = i.groupdict()
            else:
                # names and most values repeat from event to event (addresses, states, reasons): one string each
                fields = {intern(k): intern(v) if len(v) < 24 else v
                          for k, v in _FIELD.findall(rest.replace("reason: ", "reason="))}
            out.append(KernelEvent(n, t, intern(name), tid, fields, pid))
    return out
