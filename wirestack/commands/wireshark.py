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
    """Copy the dissector into the personal plugin folder (created as needed, owned by the user)."""
    owner = user if user is not None else invoking_user()
    folder = plugin_folder(owner)
    home = _home(owner)
    missing = []
    at = folder
    while not at.exists() and at != home and at != at.parent:
        missing.append(at)
        at = at.parent
    try:
        for path in reversed(missing):
            path.mkdir()
            if owner:
                os.chown(path, *owner)
    except OSError as exc:
        raise WiresharkError(f"cannot create {folder}: {exc.strerror}") from None
    target = folder / LUA
    try:
        write(target, [lua_path().read_bytes()], force=True)
    except OutputError as exc:
        raise WiresharkError(str(exc)) from None
    os.chmod(target, 0o644)
    return target


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
