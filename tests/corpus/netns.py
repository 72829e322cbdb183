"""Run a command in a fresh network + mount + PID namespace: its own `lo` (up), its own /etc/resolv.conf and,
optionally, /etc/hosts (bind-mounted temporary files), optionally a peer and a tcpdump inside it first.

    done = run_in_netns(argv, "nameserver 127.0.0.53\\n", timeout=20)                    # no DNS server at all
    done = run_in_netns(argv, RESOLV, 20, peer=("dns", {"mode": "nxdomain"}), capture="/tmp/x.pcapng")

`unshare --net --mount --pid --fork --kill-child --mount-proc` (util-linux; needs root) starts this module's
`inside` driver as PID 1 of the new PID namespace. The driver brings `lo` up, bind-mounts the files, starts the
peer (waiting for its `ready PORT` line; "{port}" in argv becomes that port), starts tcpdump (waiting until it
really captures), runs the command with its own timeout, then stops tcpdump and the peer and exits with the
command's status. Nothing survives: when PID 1 of a PID namespace dies the kernel kills every process in it, and
`--kill-child` kills PID 1 when `unshare` dies (subprocess.run's timeout kills unshare); the network namespace
goes with its last process, the bind mounts with the mount namespace. The program's stdout and stderr are the
command's own; the driver itself writes only on failure, to stderr, lines starting with "netns:".
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NAMESERVER = "127.0.0.53"
RESOLV = f"nameserver {NAMESERVER}\noptions timeout:1 attempts:2\n"
HOSTS = "127.0.0.1 localhost\n"
HOSTS_DUAL = "127.0.0.1 localhost\n::1 localhost\n"  # "localhost" is both ::1 and 127.0.0.1
DRIVER_STATUS = 125  # the driver itself failed (not the command)


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None


def _env(env: dict[str, str] | None) -> dict[str, str]:
    base = dict(os.environ if env is None else env)
    rest = [p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT)]
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT), *rest])
    return base


def run_in_netns(argv: Sequence[str], resolv_conf_text: str = RESOLV, timeout: float = 30, *,
                 hosts_text: str | None = None, peer: tuple[str, dict[str, Any]] | None = None,
                 peer_host: str = NAMESERVER, peer_port: int = 53, capture: str | None = None,
                 cwd: str | os.PathLike[str] | None = None,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv in a private namespace (see the module's docstring); the CompletedProcess of the command (its
    status: the command's, DRIVER_STATUS when the driver failed). Raises subprocess.TimeoutExpired after
    `timeout` seconds, by which time everything in the namespace is dead."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise RuntimeError("unshare (util-linux) is not installed")
    with tempfile.TemporaryDirectory(prefix="corpus-netns-") as tmp:
        os.chmod(tmp, 0o755)
        resolv = os.path.join(tmp, "resolv.conf")
        Path(resolv).write_text(resolv_conf_text)
        hosts = None
        if hosts_text is not None:
            hosts = os.path.join(tmp, "hosts")
            Path(hosts).write_text(hosts_text)
        for name in (resolv, hosts):
            if name:
                os.chmod(name, 0o644)
        spec = {"argv": list(argv), "resolv": resolv, "hosts": hosts, "peer": list(peer) if peer else None,
                "peer_host": peer_host, "peer_port": peer_port, "capture": capture,
                "cwd": str(cwd or ROOT), "timeout": max(1.0, timeout - 5)}
        spec_path = os.path.join(tmp, "spec.json")
        Path(spec_path).write_text(json.dumps(spec))
        cmd = [unshare, "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
               sys.executable, "-m", "tests.corpus.netns", "inside", spec_path]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=_env(env),
                              stdin=subprocess.DEVNULL)


# -- inside the namespace ----------------------------------------------------------------------------------


def _lo_up() -> None:
    ip = shutil.which("ip")
    if ip:
        subprocess.run([ip, "link", "set", "lo", "up"], check=True, capture_output=True, timeout=10)
        return
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # SIOCGIFFLAGS, SIOCSIFFLAGS | IFF_UP
        req = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, req)[:18])[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))


def _bind_mount(source: str, target: str) -> None:
    subprocess.run(["mount", "--bind", source, target], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def _maybe(cm: Any) -> Iterator[Any]:
    if cm is None:
        yield None
    else:
        with cm as value:
            yield value


def inside(spec_path: str) -> int:
    from .capture import Tcpdump
    from .peers import process

    spec = json.loads(Path(spec_path).read_text())
    try:
        _lo_up()
        _bind_mount(spec["resolv"], "/etc/resolv.conf")
        if spec["hosts"]:
            _bind_mount(spec["hosts"], "/etc/hosts")
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"netns: could not set the namespace up: {exc}", file=sys.stderr)
        return DRIVER_STATUS
    peer = spec["peer"]
    try:
        with _maybe(process(peer[0], spec["peer_host"], spec["peer_port"], **peer[1]) if peer else None) as p:
            argv = [a.replace("{port}", str(p.port if p else "")) for a in spec["argv"]]
            with _maybe(Tcpdump(spec["capture"]) if spec["capture"] else None):
                try:
                    done = subprocess.run(argv, cwd=spec["cwd"], timeout=spec["timeout"])
                except subprocess.TimeoutExpired:
                    print(f"netns: the command ran longer than {spec['timeout']:.0f} s", file=sys.stderr)
                    return DRIVER_STATUS
            return done.returncode if done.returncode >= 0 else 128 - done.returncode
    except Exception as exc:  # noqa: BLE001 (the driver reports, whatever failed)
        print(f"netns: {type(exc).__name__}: {exc}", file=sys.stderr)
        return DRIVER_STATUS


if __name__ == "__main__":
    if sys.argv[1:2] == ["inside"] and len(sys.argv) == 3:
        sys.exit(inside(sys.argv[2]))
    print("usage: python -m tests.corpus.netns inside SPEC.json", file=sys.stderr)
    sys.exit(2)
