"""``haltingvt configs``: list the shipped configs."""

from __future__ import annotations

import argparse

from ..config import available_configs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No arguments."""


def run(args: argparse.Namespace) -> int:
    print("\n".join(available_configs()))
    return 0
