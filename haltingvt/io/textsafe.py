"""Text read from files (class names, paths, model names, error messages that quote them), made safe to show.

A class name, a file name or a config value may hold terminal escape sequences (ESC [ ... m recolours or
clears the terminal, ESC ] 52 writes the clipboard), a carriage return that overwrites the line shown, a
NUL, or a bidirectional override that shows text in another order than it is stored. Two functions:

* :func:`escape` for display: every such character shown as an escape (``\\x1b``, ``\\r``, ``\\u202e``),
  the bytes of a non-UTF-8 file name (surrogate escapes) as ``\\xNN``; printable text is left as it is.
  Messages and text reports pass what they quote through it; JSON outputs keep the real strings (JSON
  escapes control characters itself).
* :func:`unsafe_char` for refusal: the first character that cannot be meant in a name (a control
  character, Unicode category Cc; a bidirectional control; a line or paragraph separator; a lone
  surrogate), or None.

This module imports nothing from haltingvt (every other module may use it).
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable

__all__ = ["escape", "escape_lines", "unsafe_char", "describe_char", "safe_path", "warning_lines"]

#: Bidirectional controls (Unicode category Cf): embeddings, overrides, isolates and marks. They reorder
#: what a terminal shows ("Trojan Source").
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
#: Characters that end a line in some terminals and editors without being a control character.
LINE_BREAKS = frozenset("\u2028\u2029")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _needs_escape(ch: str) -> bool:
    if ch in BIDI_CONTROLS or ch in LINE_BREAKS:
        return True
    return unicodedata.category(ch) in ("Cc", "Cs")


def _escaped(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a non-UTF-8 file name (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def escape(text: object) -> str:
    """``text`` (str() of it) with control characters, bidirectional controls, line/paragraph separators
    and surrogates written as escapes; everything else unchanged. Idempotent on its own output apart from
    backslashes, which are kept as they are (Windows paths stay readable)."""
    text = text if isinstance(text, str) else str(text)
    if text.isprintable() and text.isascii():  # the common case, fast
        return text
    return "".join(_escaped(ch) if _needs_escape(ch) else ch for ch in text)


def safe_path(path: str | os.PathLike[str] | bytes) -> str:
    """A file path for a message: decoded as the operating system does, then :func:`escape`d."""
    return escape(os.fsdecode(path))


def unsafe_char(text: str) -> str | None:
    """The first character of ``text`` that cannot be meant in a name: a control character (Cc: C0, DEL,
    C1 -- ESC, NUL, CR, LF, TAB ...), a bidirectional control, U+2028/U+2029, or a surrogate; else None."""
    if text.isprintable() and text.isascii():
        return None
    for ch in text:
        if _needs_escape(ch):
            return ch
    return None


def describe_char(ch: str) -> str:
    """``U+001B`` plus the character's Unicode name when it has one (``U+202E RIGHT-TO-LEFT OVERRIDE``)."""
    name = unicodedata.name(ch, "")
    short = {"\x00": "NUL", "\x1b": "ESC", "\r": "CR", "\n": "LF", "\t": "TAB", "\x7f": "DEL"}.get(ch, name)
    return f"U+{ord(ch):04X}" + (f" {short}" if short else "")


def fold_lines(text: object) -> str:
    """``text`` on one line: its lines stripped, the empty ones dropped, the rest joined by single spaces."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def escape_lines(text: object) -> str:
    """A multi-line report (lines split at ``\\n`` only) with each line :func:`escape`d: the report keeps
    its lines, a CR, ESC or newline-like character inside one of them is shown escaped."""
    return "\n".join(escape(line) for line in str(text).split("\n"))


def warning_lines(caught: Iterable[object]) -> list[str]:
    """The messages of recorded warnings (``warnings.catch_warnings(record=True)``), each on one escaped
    line, each message once (a file read twice warns twice)."""
    lines: list[str] = []
    for warning in caught:
        line = escape(getattr(warning, "message", warning))
        if line not in lines:
            lines.append(line)
    return lines
