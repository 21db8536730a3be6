"""Atomic file output: write a temporary file beside the target, then rename it over the target.

What a careless or hostile output path can and cannot do:

* The target is a regular file or does not exist yet. A directory, FIFO, device or socket is refused with an
  ``OutputError`` (exit 74: "an output could not be written ... not a regular file", the README's contract), and so
  is a symbolic link (renaming over it would replace the link, not write where it points) - checked before any work
  (:func:`check_output_target`) and again just before the rename. The thing found there is left exactly as it was.
* Missing parent directories are created; a path component that is a file is a ``UsageError`` (exit 2: the path
  given cannot name a file, as with ``--out`` naming a file); a directory that cannot be written (permission,
  read-only file system) is an ``OutputError`` naming the path and the OS error. A symlinked parent directory is
  followed: the user chose that path.
* The temporary file is created new (``O_CREAT|O_EXCL|O_NOFOLLOW``: never an existing file or a planted link), private
  (0600) while written, fsynced before the rename, and the directory is fsynced after it: a crash leaves the old file
  or the new one, never a mix.
* On any failure - an exception in the body, a full disk mid-write, Ctrl-C - the temporary file is removed. A full,
  over-quota or read-only disk (``ENOSPC``, ``EDQUOT``, ``EFBIG``, ``EROFS``) becomes an ``OutputError`` naming the
  target, whichever library was writing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from reports.errors import InputError, OutputError, UsageError

DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})
_TEMP_NAME_CHARS = 100  # of the target's name in the temporary file's (whose name must stay under NAME_MAX)
_KINDS = (
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISREG, "a regular file"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What a file system entry is, in words, from its ``st_mode`` (use ``lstat`` to see a symlink as one)."""
    return next((name for test, name in _KINDS if test(mode)), "an unknown kind of file")


def regular_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` if it is an existing regular file (a FIFO or device is refused without opening it), else
    ``InputError`` naming the file, ``what`` it should be and what it is."""
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise InputError(str(p), f"{what} must be an existing file", "not found") from None
    except OSError as exc:
        raise InputError(str(p), f"{what} must be a readable file", exc.strerror) from None
    if not stat.S_ISREG(mode):
        raise InputError(str(p), f"{what} must be a regular file", file_kind(mode))
    return p


def _os_reason(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def _refuse_existing(target: Path) -> None:
    """Raise unless ``target`` is absent or a regular file (not following a link at ``target`` itself)."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise UsageError(str(target), "output's parent must be a directory", "a path component is a file") from None
    except OSError as exc:
        raise OutputError(str(target), "output path must be accessible", _os_reason(exc)) from None
    if stat.S_ISREG(mode):
        return
    if stat.S_ISLNK(mode):
        raise OutputError(
            str(target),
            "output must not be a symbolic link (it would be replaced, not followed)",
            f"a link to {os.readlink(target)}",
        )
    if stat.S_ISDIR(mode):
        raise OutputError(str(target), "output must be a file path, not a directory", "a directory")
    raise OutputError(str(target), "output must be a regular file (or not exist yet)", file_kind(mode))


def check_output_target(target: str | os.PathLike[str]) -> Path:
    """Raise unless a regular file can be written at ``target``: ``OutputError`` for a directory, FIFO, device, socket
    or symbolic link at ``target`` and when the nearest existing parent directory is not writable; ``UsageError`` for
    a file where a parent directory should be. Creates nothing."""
    t = Path(target)
    _refuse_existing(t)
    parent = t.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(str(t), "output's parent must be a directory", f"{parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only(parent) else "permission denied"
        raise OutputError(str(t), "output directory must be writable", f"{parent}: {reason}")
    return t


def _read_only(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _make_parents(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(str(target), "output's parent must be a directory", "a path component is a file") from None
    except OSError as exc:
        raise OutputError(str(target), "output directory must be creatable", _os_reason(exc)) from None


def _new_temp(target: Path, suffix: str) -> Path:
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:_TEMP_NAME_CHARS]}.", suffix=suffix, dir=target.parent)
    except OSError as exc:
        raise OutputError(str(target), "output directory must be writable", _os_reason(exc)) from None
    os.close(fd)
    return Path(tmp)


def _commit(tmp: Path, target: Path, mode: int | None) -> None:
    """fsync + chmod the temporary file, check the target once more, rename, fsync the directory."""
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OutputError(str(target), "the temporary output must stay a regular file", str(tmp))
            os.fsync(fd)
            os.fchmod(fd, mode if mode is not None else 0o666 & ~_umask())
        finally:
            os.close(fd)
        _refuse_existing(target)  # something may have been put there while the output was written
        os.replace(tmp, target)
        fsync_directory(target.parent)
    except OSError as exc:
        raise OutputError(str(target), "output must be written completely", _os_reason(exc)) from exc


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new name in ``directory`` durable (a no-op on file systems that cannot sync directories)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems that cannot sync a directory
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None, mode: int | None = None) -> Iterator[Path]:
    """Yield a new temporary path in the target's directory; on success it atomically becomes ``target``.

    The result gets ``mode`` (default: 0o666 less the umask, like any newly created file; the temporary file itself
    is private while it is written). See the module docstring for what is refused and how failures are reported."""
    target = Path(target)
    check_output_target(target)
    _make_parents(target)
    tmp = _new_temp(target, suffix if suffix is not None else target.suffix + ".part")
    try:
        yield tmp
        _commit(tmp, target, mode)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
            raise OutputError(str(target), "output must be written completely", _os_reason(exc)) from exc
        raise


def _umask() -> int:
    """The process umask, read without changing it (os.umask would briefly widen it for every thread)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o077)  # fallback: narrow, never widen, while reading it
    os.umask(current)
    return current


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(target)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> Path:
    return write_bytes_atomic(target, text.encode("utf-8"))
