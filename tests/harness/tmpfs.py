"""Small tmpfs mounts for the harnesses' full-disk and read-only cases (root only; Linux).

One place for the mount commands that ``bad_inputs`` and ``fault_injection`` both need. ``mount`` raises
``subprocess.CalledProcessError`` when the system refuses (a container without the right); ``can_mount``
asks without raising.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path


def mount(path: Path, size: str, *, read_only: bool = False) -> None:
    """Mount a fresh tmpfs of ``size`` (``"1M"``, ``"300k"``) on the existing folder ``path``."""
    options = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True, capture_output=True)


def resize(path: Path, size: str) -> None:
    """Give the tmpfs on ``path`` a new size (its files stay)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True, capture_output=True)


def unmount(path: Path) -> None:
    """Unmount ``path``; quietly does nothing when nothing is mounted there."""
    subprocess.run(["umount", str(path)], check=False, capture_output=True)


def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root, and a system that allows it)."""
    if os.geteuid() != 0:
        return False
    probe = Path(tempfile.mkdtemp(prefix="tmpfs_probe_"))
    try:
        mount(probe, "64k")
    except (OSError, subprocess.CalledProcessError):
        return False
    else:
        unmount(probe)
        return True
    finally:
        probe.rmdir()
