"""Writing output files the careful way: as the invoking user, mode 0600, never through a planted symlink."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

DEFAULT_DIR = "captures"


class OutputError(Exception):
    """An output file cannot be written; the message is one line for the user."""


def invoking_user() -> tuple[int, int] | None:
    """(uid, gid) of the user who ran sudo, when we are root under sudo."""
    if os.geteuid() != 0:
        return None
    try:
        return int(os.environ["SUDO_UID"]), int(os.environ["SUDO_GID"])
    except (KeyError, ValueError):
        return None


def default_path(title: str, now: float | None = None, folder: str = DEFAULT_DIR) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return Path(folder) / f"{title}-{stamp}.pcapng"


def _ensure_folder(folder: Path) -> None:
    if folder.is_dir():
        return
    owner = invoking_user()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if owner:
            os.chown(folder, *owner)
    except OSError as exc:
        raise OutputError(f"cannot create folder {folder}: {exc.strerror}") from None


def check_writable(path: Path, force: bool) -> None:
    """Fail early, before anything runs, if `path` cannot be written."""
    if path.exists() and not force:
        raise OutputError(f"{path} exists: choose another name or add --force")
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {path}: folder {parent} is not writable")


def write(path: Path, chunks: Iterable[bytes], force: bool = False, create_folder: bool = False) -> None:
    """Write `chunks` to `path`: mode 0600, owned by the sudo user, refusing symlinks and (without
    `force`) existing files. A partial file is removed if writing fails."""
    if create_folder:
        _ensure_folder(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise OutputError(f"{path} exists: choose another name or add --force") from None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        owner = invoking_user()
        if owner:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb", closefd=False) as out:
            for chunk in chunks:
                out.write(chunk)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        hint = ": free some space or write elsewhere (-w/--json)" if exc.errno == 28 else ""  # ENOSPC
        raise OutputError(f"cannot write {path}: {exc.strerror}{hint} (nothing was left half-written)") from None
    os.close(fd)
