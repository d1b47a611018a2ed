"""One training per work dir: ``<work_dir>/train.lock``.

A second ``haltingvt train`` into a work dir that a running training uses would interleave its checkpoints,
logs and summary with the first's. The first run holds an exclusive ``flock`` on ``train.lock`` (which also
names it: PID, host, start time, command); a second run cannot take it and stops with one line naming the
holder (:class:`WorkDirBusyError`, exit 2). The kernel drops the lock when its process dies, kill -9
included, so the file a killed run leaves behind is taken over by the next run; a finished run removes it.

Taking the lock checks, after ``flock``, that the file locked is still the one at the path (a finishing
run removes its file while holding the lock; a run that opened the old file just before must not go on
with a lock on a file nobody else sees). Where the file system has no ``flock`` (some network mounts),
the file's PID and host decide: a lock of a process still alive on this host, or of another host, is
respected; that of a process gone from this host is taken over (created with ``O_EXCL`` and read back).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..io.atomic import pid_alive

try:
    import fcntl
except ImportError:  # not POSIX: the PID/host fallback alone
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "train.lock"
#: Without flock, a lock file that has no readable content for this long is a leftover (its writer was killed).
STALE_EMPTY_SECONDS = 60.0


class WorkDirBusyError(ConfigError):
    """Another training runs in this work dir (a ConfigError of ``train.work_dir``: the command exits 2)."""


def _holder_text(info: dict[str, Any] | None) -> str:
    if not info:
        return "a process that has not written its name yet"
    return f"PID {info.get('pid')} on {info.get('host')}, started {info.get('started')}" + (
        f": {info['command']}" if info.get("command") else ""
    )


class WorkDirLock:
    """The lock of one work dir; :meth:`acquire` then :meth:`release` (also a context manager)."""

    def __init__(self, work_dir: str | os.PathLike) -> None:
        self.work_dir = Path(work_dir)
        self.path = self.work_dir / LOCK_NAME
        self.fd: int | None = None
        self.previous: dict[str, Any] | None = None  # what a stale lock file said (for the log)

    def _info(self) -> bytes:
        return json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv)[:300],
            }
        ).encode()

    @staticmethod
    def _read(fd: int) -> dict[str, Any] | None:
        try:
            data = os.pread(fd, 65536, 0)
            info = json.loads(data.decode("utf-8", "replace")) if data.strip() else None
            return info if isinstance(info, dict) else None
        except (OSError, ValueError):
            return None

    def _busy(self, info: dict[str, Any] | None) -> WorkDirBusyError:
        return WorkDirBusyError(
            f"{self.work_dir}: another training is running in this work dir ({_holder_text(info)}; lock file "
            f"{self.path}): wait for it to end or choose another train.work_dir (--work-dir)",
            "train.work_dir",
        )

    def acquire(self) -> WorkDirLock:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return self._acquire_by_pid()
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = self._read(fd)
                os.close(fd)
                raise self._busy(info) from None
            except OSError as err:
                empty = os.fstat(fd).st_size == 0
                os.close(fd)
                if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    if empty:  # the file our open() just made (or an empty leftover): the PID rule needs content
                        self.path.unlink(missing_ok=True)
                    return self._acquire_by_pid()
                raise
            # The re-check: the file locked is still the one at the path.
            try:
                st, here = os.fstat(fd), os.stat(self.path)
                same = (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino)
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            self.previous = self._read(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, self._info(), 0)
            self.fd = fd
            return self
        raise self._busy(None)

    def _acquire_by_pid(self) -> WorkDirLock:
        """No flock here: O_EXCL creation; a lock file of a process gone from this host is replaced."""
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            except FileExistsError:
                try:
                    fd = os.open(self.path, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                info, age = self._read(fd), time.time() - os.fstat(fd).st_mtime
                os.close(fd)
                # no content yet: another run is writing it (or was killed right after creating it, long ago)
                unreadable_and_young = info is None and age < STALE_EMPTY_SECONDS
                if unreadable_and_young or (
                    info is not None and (info.get("host") != socket.gethostname() or pid_alive(info.get("pid")))
                ):
                    raise self._busy(info) from None
                # stale: move it aside under a name of our own, so that two runs cannot both remove it
                aside = self.path.with_name(f"{LOCK_NAME}.stale.{os.getpid()}")
                try:
                    os.rename(self.path, aside)
                    os.unlink(aside)
                except FileNotFoundError:
                    pass
                self.previous = info
                continue
            os.write(fd, self._info())
            os.close(fd)
            fd = os.open(self.path, os.O_RDONLY)  # read back: ours?
            info = self._read(fd)
            os.close(fd)
            if not info or info.get("pid") != os.getpid() or info.get("host") != socket.gethostname():
                raise self._busy(info)
            self.fd = -1
            return self
        raise self._busy(None)

    def release(self) -> None:
        """Remove the lock file (while still holding the lock), then let the lock go."""
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = None

    def __enter__(self) -> WorkDirLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
