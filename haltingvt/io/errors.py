"""The errors of reading and writing weight files (shared by every layer that reads or writes them)."""

from __future__ import annotations

import os
from typing import Any

from .textsafe import escape


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model; the message says which file and keys.

    The message is made safe to print: control characters of a file name or a quoted value are shown
    escaped (``haltingvt.io.textsafe.escape``), so printing it cannot drive the terminal."""

    def __init__(self, message: object = "", *args: Any) -> None:
        super().__init__(escape(message), *args)


class IntegrityWarning(UserWarning):
    """A file of ours is loaded without a digest covering all of it (made by hand, or by an older haltingvt)."""


def error_text(err: BaseException, limit: int = 200) -> str:
    """A library error's message on one line (whitespace folded), at most ``limit`` characters."""
    return " ".join(str(err).split())[:limit]


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint could not be written (full disk, read-only folder ...); the previous file is intact.
    An OSError too: ``errno`` (e.g. ``errno.ENOSPC``), ``strerror`` and ``filename`` (the final path)."""

    def __init__(self, path: str | os.PathLike[str], err: BaseException) -> None:
        reason = getattr(err, "strerror", None) or error_text(err) or type(err).__name__
        super().__init__(f"{path}: cannot write: {reason} (the previous file, if any, is kept)")
        self.errno, self.strerror, self.filename = getattr(err, "errno", None), reason, str(path)

    def __str__(self) -> str:
        return str(self.args[0])
