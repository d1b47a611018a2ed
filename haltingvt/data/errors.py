"""Exceptions of the data pipeline."""

from __future__ import annotations

from ..config import ConfigError


class DataError(ValueError):
    """A video, frame folder or frame cannot be read; the message names the path."""


class ListFormatError(DataError, ConfigError):
    """A malformed annotation or class-name file; the message names ``file:line``.

    Also a :class:`~haltingvt.config.ConfigError`, because the file is named by the config
    and the command line reports it as one line like any other config problem.
    """
