"""Wireshark integration: the Lua post-dissector shipped in the package, installing it, opening a capture.

The dissector (`wirestack/data/wirestack.lua`) turns the key=value tail of wirestack's packet comments into the
fields wirestack.call, .op, .role, .errno, .errname, .socket, .thread and .frame. Wireshark loads Lua plugins
from the user's personal plugin folder, `~/.local/lib/wireshark/plugins` on Linux and macOS
(`tshark -G folders`: "Personal Lua Plugins"); under sudo that of the invoking user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

from ..errors import WiresharkError as WiresharkError
from ..output.files import OutputError, invoking_user, write

DATA = Path(__file__).resolve().parent.parent / "data"
LUA = "wirestack.lua"
PERSONAL_LUA = Path(".local") / "lib" / "wireshark" / "plugins"


def lua_path() -> Path:
    return DATA / LUA


def _home(user: tuple[int, int] | None) -> Path:
    if user is not None:
        try:
            return Path(pwd.getpwuid(user[0]).pw_dir)
        except KeyError:
            raise WiresharkError(f"user {user[0]} has no home folder to install into") from None
    return Path.home()


def plugin_folder(user: tuple[int, int] | None = None) -> Path:
    """The personal Lua plugin folder of `user` (default: the invoking user under sudo, else this one)."""
    return _home(user if user is not None else invoking_user()) / PERSONAL_LUA


def install(user: tuple[int, int] | None = None) -> Path:
    """Copy the dissector into the personal plugin folder of `user` (default: the invoking user under sudo).

    Under sudo the work is done by a child that has become that user (uid, gid and groups) before it touches
    the home folder: a symlink there leads only where the user could write anyway, and what is created is the
    user's own. Root never creates, follows or chowns anything in another user's home."""
    owner = user if user is not None else invoking_user()
    folder = plugin_folder(owner)
    if owner is not None and os.geteuid() == 0 and owner[0] != 0:
        return _as_user(owner, folder)
    return _install_into(folder, lua_path().read_bytes())


def _install_into(folder: Path, data: bytes) -> Path:
    try:
        folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise WiresharkError(f"cannot create {folder}: {exc.strerror}") from None
    target = folder / LUA
    try:
        write(target, [data], force=True)
        os.chmod(target, 0o644, follow_symlinks=False)
    except OutputError as exc:
        raise WiresharkError(str(exc)) from None
    except OSError as exc:
        raise WiresharkError(f"cannot install {target}: {exc.strerror}") from None
    return target


def _as_user(owner: tuple[int, int], folder: Path) -> Path:
    """`_install_into(folder, ...)` in a forked child running as `owner`; its answer comes back through a pipe."""
    try:
        groups = os.getgrouplist(pwd.getpwuid(owner[0]).pw_name, owner[1])
    except KeyError:
        groups = [owner[1]]
    data = lua_path().read_bytes()  # read as root: the package's own file
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become the user, then install; never return into the caller's code
        os.close(r)
        status = 1
        try:
            os.setgroups(groups)
            os.setgid(owner[1])
            os.setuid(owner[0])
            answer = "ok\0" + str(_install_into(folder, data))
            status = 0
        except WiresharkError as exc:
            answer = "error\0" + str(exc)
        except BaseException as exc:  # noqa: BLE001  (the child must always answer and exit)
            answer = f"error\0cannot install into {folder}: {exc}"
        try:
            os.write(w, answer.encode("utf-8", "replace")[:4000])
        finally:
            os._exit(status)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        answer_bytes = pipe.read(4096)
    os.waitpid(pid, 0)
    kind, _, text = answer_bytes.decode("utf-8", "replace").partition("\0")
    if kind != "ok":
        raise WiresharkError(text or f"cannot install into {folder}")
    return Path(text)


def find_wireshark() -> str | None:
    return shutil.which("wireshark")


def open_capture(path: Path, wireshark: str | None = None) -> subprocess.Popen[bytes]:
    """Start Wireshark on `path` (with the dissector loaded), detached; under sudo as the invoking user."""
    program = wireshark or find_wireshark()
    if program is None:
        raise WiresharkError("Wireshark is not installed (apt-get install wireshark): open the file with it later")
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise WiresharkError(f"no display to open Wireshark on (DISPLAY is not set): open {path} on a desktop")
    kwargs: dict[str, object] = {}
    user = invoking_user()
    if user is not None:
        kwargs = {"user": user[0], "group": user[1], "env": {**os.environ, "HOME": str(_home(user))}}
    try:
        proc: subprocess.Popen[bytes] = subprocess.Popen([program, "-X", f"lua_script:{lua_path()}", "-r", str(path)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, **kwargs)  # type: ignore[call-overload]
    except OSError as exc:
        raise WiresharkError(f"cannot start {program}: {exc.strerror}") from None
    return proc
