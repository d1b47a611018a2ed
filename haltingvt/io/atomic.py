"""Atomic writes: a file (temporary file, fsync, rename) and a folder (written beside, then swapped in whole).

A crash or kill at any instant leaves the previous file or folder, never a mix; leftovers of interrupted
writes whose writer is gone are removed by the next write. A failure is a :class:`CheckpointWriteError`.
"""

from __future__ import annotations

import ctypes
import errno
import io
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from .errors import CheckpointWriteError

# mkstemp names of atomic_write: ".<target name>.p<writer's process id>.<random>.tmp"
_TMP_NAME = re.compile(r"^\.(?P<target>.+)\.p(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.tmp$")
_writing: set[str] = set()  # temporary files this process is writing now


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files that an interrupted :func:`atomic_write` left in ``folder``: those of our
    naming pattern whose writer process is gone (or is this process, not writing it now)."""
    removed = []
    for tmp in folder.glob(".*.tmp"):
        match = _TMP_NAME.match(tmp.name)
        if match is None or str(tmp) in _writing:
            continue
        pid = int(match["pid"])
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
                continue  # its writer is still running
            except ProcessLookupError:
                pass
            except OSError:  # PermissionError: alive, someone else's
                continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[io.BufferedWriter], Any]) -> Path:
    """Write ``path`` atomically: ``write(f)`` to a temporary file in the same folder, fsync, then rename.

    A crash leaves the previous file intact; the next write in that folder removes the temporary file an
    interrupted one left behind. The file gets the mode other tools give (0o666 minus the umask), not
    mkstemp's 0o600. A failure (e.g. a full disk) raises CheckpointWriteError naming the file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.p{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise CheckpointWriteError(path, err) from None
    _writing.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise CheckpointWriteError(path, err) from None
        raise
    finally:
        _writing.discard(tmp)
    return path


# ----------------------------------------------------------------------------- writing a folder whole
# mkdtemp names of atomic_write_folder beside its target: ".<target name>.p<writer's process id>.<random>.new";
# a target renamed away (where the atomic exchange is unavailable) becomes "....old".
_TMP_DIR_NAME = re.compile(r"^\.(?P<target>.+)\.p(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.(?P<kind>new|old)$")
_RENAME_EXCHANGE, _AT_FDCWD = 2, -100
_renameat2: Any = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap the two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``): True when done, False where the
    system or file system does not offer it; another failure raises OSError."""
    global _renameat2
    if _renameat2 is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (AttributeError, OSError, TypeError):
            _renameat2 = False
    if _renameat2 is False:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(b))


def pid_alive(pid: object) -> bool:
    """Whether process ``pid`` runs on this host (this process and other users' processes count); False for
    anything that is not a positive integer."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, someone else's
        return True
    return True


def _leftovers(folder: Path) -> list[tuple[Path, str]]:
    """(path, 'new' or 'old') of what interrupted writes of ``folder`` by processes now gone left beside it."""
    out: list[tuple[Path, str]] = []
    try:
        entries = list(folder.parent.iterdir())
    except OSError:
        return out
    for entry in entries:
        match = _TMP_DIR_NAME.match(entry.name)
        if (
            match is not None
            and match["target"] == folder.name
            and not pid_alive(int(match["pid"]))
            and entry.is_dir()
            and not entry.is_symlink()
        ):
            out.append((entry, match["kind"]))

    def age(entry: tuple[Path, str]) -> float:
        try:
            return entry[0].stat().st_mtime
        except OSError:
            return 0.0

    return sorted(out, key=age)


def interrupted_save(folder: str | os.PathLike[str]) -> Path | None:
    """The previous ``folder`` that an interrupted :func:`atomic_write_folder` renamed away and did not put
    back (only where the atomic exchange is unavailable), when ``folder`` is missing; else None."""
    folder = Path(folder)
    if folder.exists():
        return None
    old = [p for p, kind in _leftovers(folder) if kind == "old"]
    return old[-1] if old else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        view, done = memoryview(data), 0
        while done < len(view):
            done += os.write(fd, view[done : done + (1 << 22)])
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_tree(src: Path, dst: Path) -> None:
    """Another file of the previous folder (.git, .gitattributes, notes ...) into the new one: hard links
    (copies where links fail), symbolic links kept as links; the previous folder is left as it is."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b, follow_symlinks=False)
        except OSError:
            shutil.copy2(a, b, follow_symlinks=False)

    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=link)
    else:
        link(str(src), str(dst))


def atomic_write_folder(folder: str | os.PathLike[str], files: Mapping[str, bytes]) -> Path:
    """Write ``files`` (name -> bytes, in that order) as the folder ``folder``, whole or not at all.

    The files go into a new folder beside the target (``.<name>.p<pid>.<random>.new``), fsynced, which is
    then swapped with the target in one step (Linux ``renameat2(RENAME_EXCHANGE)``; renamed in where the
    target does not exist), and the previous folder is removed. A kill at any instant leaves the previous
    folder or the new one, never a mix. Other entries of the previous folder (``.git`` of a Hub clone ...)
    are carried into the new one as hard links. Where the exchange is unavailable the target is renamed
    away first, and for an instant only that previous folder exists (under the ``.old`` name): the next
    write of ``folder`` puts it back before anything else, and loading the missing folder names it.
    Leftovers of interrupted writes (their process gone) are removed at the next write. A failure raises
    CheckpointWriteError naming the folder; the previous folder is then intact.
    """
    folder = Path(folder)
    if folder.is_symlink():  # write where the link points; the link stays
        folder = Path(os.path.realpath(folder))
    tmp: Path | None = None
    old: Path | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        for path, kind in _leftovers(folder):
            if kind == "old" and not folder.exists():
                os.rename(path, folder)  # the previous folder, renamed away by an interrupted write
            else:
                shutil.rmtree(path, ignore_errors=True)
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder")
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.p{os.getpid()}.", suffix=".new", dir=folder.parent))
        os.chmod(tmp, 0o777 & ~_umask())
        if folder.exists():
            for entry in folder.iterdir():
                if entry.name not in files and not _TMP_NAME.match(entry.name):
                    _link_tree(entry, tmp / entry.name)
        for name, data in files.items():
            _write_new_file(tmp / name, data)
        _fsync_dir(tmp)
        if not folder.exists():
            os.rename(tmp, folder)
        elif _exchange(tmp, folder):
            pass  # tmp now holds the previous folder
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.p{os.getpid()}.", suffix=".old", dir=folder.parent))
            os.rename(folder, old)  # replaces the empty folder just made
            os.rename(tmp, folder)
            tmp, old = old, None
        _fsync_dir(folder.parent)
    except BaseException as err:
        if old is not None and old.exists() and not folder.exists():
            os.rename(old, folder)  # the previous folder back
        for made in (tmp, old):
            if made is not None and made.exists() and not (folder.exists() and made.samefile(folder)):
                shutil.rmtree(made, ignore_errors=True)
        if isinstance(err, OSError):
            raise CheckpointWriteError(folder, err) from None
        raise
    shutil.rmtree(tmp, ignore_errors=True)  # the previous folder
    return folder
