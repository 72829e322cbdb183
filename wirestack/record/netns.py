"""No sudo needed: run wirestack itself inside a new user + network namespace, with its own loopback.

Everything wirestack's scenarios do happens on loopback, and a process that owns a user namespace is root
*there*: it may open AF_PACKET sockets on the namespace's own `lo` (verified on this machine, see DESIGN.md).
So when wirestack lacks the privilege to capture (or `--netns` asks for it), it starts itself again in a child
that has called unshare(CLONE_NEWUSER | CLONE_NEWNET): uid 0 inside maps to the invoking user outside, so the
files it writes belong to that user, in the same folder, with the same names and modes. The child brings `lo`
up first. Nothing outlives the run: the namespace goes with its last process, and the child is killed if this
process dies (PR_SET_PDEATHSIG). The kernel layer is off there (tracefs belongs to the initial namespace).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import socket
import struct
import sys

from ..errors import NamespaceError as NamespaceError

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
PR_SET_PDEATHSIG = 1
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
INSIDE = "WIRESTACK_IN_NETNS"

REFUSED = ("the kernel refused a private user + network namespace (look at kernel.unprivileged_userns_clone, "
           "user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns): run wirestack with sudo "
           "instead")


def inside() -> bool:
    return os.environ.get(INSIDE) == "1"


def can_capture() -> bool:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
        return True
    except PermissionError:
        return False


def _maps(uid: int, gid: int) -> list[tuple[str, str]]:
    if uid == 0:  # real root keeps every uid and gid (files can still be handed to the sudo user)
        return [("uid_map", "0 0 4294967295"), ("gid_map", "0 0 4294967295")]
    return [("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")]


def run_inside(argv: list[str]) -> int:
    """Run `wirestack ARGV` in a new namespace; return its exit status (128+N for death by signal N).

    The child unshares, then waits while this process writes its uid/gid maps (a process may not give itself
    a map of more than its own id), then execs wirestack, which is root inside."""
    uid, gid = os.getuid(), os.getgid()
    env = {**os.environ, INSIDE: "1"}
    cmd = [sys.executable, "-m", "wirestack", *argv]
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only async-signal-safe-ish work until exec
        try:
            os.close(ready_r)
            os.close(go_w)
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
                os.write(ready_w, b"e")
                os._exit(111)
            os.write(ready_w, b"k")
            if os.read(go_r, 1) != b"k":
                os._exit(111)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            os.execve(sys.executable, cmd, env)
        finally:
            os._exit(111)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"k":
            os.waitpid(pid, 0)
            raise NamespaceError(f"cannot capture without root, and {REFUSED}")
        try:
            for name, text in _maps(uid, gid):
                with open(f"/proc/{pid}/{name}", "w") as f:
                    f.write(text)
        except OSError as exc:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise NamespaceError(f"cannot map our user into the private namespace ({exc.strerror}): "
                                 "run wirestack with sudo instead") from None
        os.write(go_w, b"k")
    finally:
        os.close(ready_r)
        os.close(go_w)
    # Ctrl-C reaches the child from the terminal (same process group) and it saves what it has; SIGTERM sent
    # to us is passed on. We wait for it either way.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, _frame: os.kill(pid, signum))
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        signal.signal(signal.SIGINT, previous)
    code = os.waitstatus_to_exitcode(status)
    if code == 111:
        raise NamespaceError(f"cannot start wirestack in the private namespace: {REFUSED}")
    return 128 - code if code < 0 else code


def loopback_up() -> None:
    """Inside the new namespace `lo` exists but is down: bring it up (as `ip link set lo up` would)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        if not flags & IFF_UP:
            try:
                fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))
            except OSError as exc:
                name = errno.errorcode.get(exc.errno or 0, "?")
                raise NamespaceError(f"cannot bring up lo in the private namespace: {name}") from None
