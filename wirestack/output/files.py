"""Writing output files the careful way. The IO edge for every file wirestack writes.

- Only regular files: an existing FIFO, device, socket, directory or symlink at the target is refused with one
  line (a FIFO would block, and under sudo a device would be chmod-ed or unlinked).
- Never half-written: the data goes to a temporary file created (O_EXCL) in the target's folder, which then
  takes the target's name in one step (a link when the target must not exist yet, a rename under --force). On
  any error the temporary file, and only it, is removed: what wirestack did not create it never changes,
  truncates, chmods, chowns or unlinks.
- Mode 0600, owned by the invoking user under sudo (fchown on the file wirestack itself just created).
- The folder is opened once, when the target is checked, before the traced program runs; the file is created
  relative to that open folder, so swapping the folder for a symlink meanwhile changes nothing.
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OutputError as OutputError

DEFAULT_DIR = "captures"


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
            os.chown(folder, *owner, follow_symlinks=False)
    except OSError as exc:
        raise OutputError(f"cannot create folder {folder}: {exc.strerror}") from None


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _existing(path: Path, force: bool, dir_fd: int | None = None) -> bool:
    """Whether `path` exists; raises OutputError when it may not be replaced."""
    try:
        st = os.lstat(path.name if dir_fd is not None else path, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"cannot write {path}: it is {_kind(st.st_mode)}; wirestack writes only regular files")
    if not force:
        raise OutputError(f"{path} exists: choose another name or add --force")
    return True


def check_writable(path: Path, force: bool) -> None:
    """Fail early, before anything runs, if `path` cannot be written."""
    _existing(path, force)
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {path}: folder {parent} is not writable")


@dataclass
class Target:
    """An output file to be: its folder held open from the check until it is written."""

    path: Path
    force: bool = False
    create_folder: bool = False
    _dir: int | None = field(default=None, repr=False)

    def open_folder(self) -> Target:
        """Check the target and hold its folder open (creating it when asked)."""
        if self.create_folder:
            _ensure_folder(self.path.parent)
        check_writable(self.path, self.force)
        try:
            self._dir = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None
        return self

    def close(self) -> None:
        if self._dir is not None:
            os.close(self._dir)
            self._dir = None

    def write(self, chunks: Iterable[bytes]) -> None:
        if self._dir is None:
            self.open_folder()
        assert self._dir is not None
        try:
            _write_in(self._dir, self.path, chunks, self.force)
        finally:
            self.close()

    def begin(self) -> Temporary:
        """The temporary file to fill elsewhere (`fill`, in another process), then `finish`."""
        if self._dir is None:
            self.open_folder()
        assert self._dir is not None
        tmp = Temporary(self._dir, self.path)
        _current.append(tmp)
        return tmp

    def finish(self, tmp: Temporary, error: OSError | None, quiet: bool = False) -> None:
        """Give the filled file its name, or (`error`: what filling it met) remove it and raise OutputError
        (`quiet`: remove it, raise nothing)."""
        try:
            if error is not None:
                raise error
            tmp.commit(self.force)
        except OSError as exc:
            tmp.discard()
            if not quiet:
                raise write_error(self.path, exc) from None
        except BaseException:
            tmp.discard()
            raise
        finally:
            _current.remove(tmp)
            self.close()


class Temporary:
    """A file being written: created O_EXCL in the open folder, removed unless `commit` gave it its name."""

    def __init__(self, dir_fd: int, path: Path) -> None:
        self.dir_fd, self.path = dir_fd, path
        self.name = f".{path.name[:100]}.{secrets.token_hex(4)}.wirestack-tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self.fd = os.open(self.name, flags, 0o600, dir_fd=dir_fd)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror}") from None
        owner = invoking_user()
        if owner:
            os.fchown(self.fd, *owner)

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.name, dir_fd=self.dir_fd)
        except OSError:
            pass

    def commit(self, force: bool) -> None:
        os.close(self.fd)
        self.fd = -1
        if force:
            _existing(self.path, True, self.dir_fd)  # still a regular file (or gone): replace it in one step
            os.rename(self.name, self.path.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        else:
            try:  # link fails if the name was taken meanwhile: never replace what was not ours
                os.link(self.name, self.path.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd,
                        follow_symlinks=False)
            except FileExistsError:
                raise OutputError(f"{self.path} exists: choose another name or add --force") from None
            except OSError:  # a file system without hard links (vfat, some FUSE): check, then rename
                if _existing(self.path, False, self.dir_fd):
                    return
                os.rename(self.name, self.path.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
                return
            os.unlink(self.name, dir_fd=self.dir_fd)


# a temporary file being written, removed by `abandon` when wirestack must exit at once (a second signal)
_current: list[Temporary] = []


def abandon() -> None:
    """Remove the temporary file being written, if any (before an immediate exit)."""
    for tmp in list(_current):
        tmp.discard()


def _write_in(dir_fd: int, path: Path, chunks: Iterable[bytes], force: bool) -> None:
    tmp = Temporary(dir_fd, path)
    _current.append(tmp)
    try:
        fill(tmp.fd, chunks)
        tmp.commit(force)
    except OSError as exc:
        tmp.discard()
        raise write_error(path, exc) from None
    except BaseException:
        tmp.discard()
        raise
    finally:
        _current.remove(tmp)


def fill(fd: int, chunks: Iterable[bytes]) -> None:
    """Write `chunks` to the open file `fd` (a `Temporary`'s), in large buffers."""
    with os.fdopen(os.dup(fd), "wb", buffering=1 << 20) as out:
        for chunk in chunks:
            out.write(chunk)


def write_error(path: Path, exc: OSError) -> OutputError:
    hint = ": free some space or write elsewhere (-w/--json)" if exc.errno == 28 else ""  # ENOSPC
    return OutputError(f"cannot write {path}: {exc.strerror}{hint} (nothing was left half-written)")


def write(path: Path, chunks: Iterable[bytes], force: bool = False, create_folder: bool = False) -> None:
    """Write `chunks` to `path` (see the module docstring)."""
    Target(path, force, create_folder).write(chunks)
