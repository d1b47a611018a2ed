"""The dispatcher: every subcommand is reachable, and argparse stays in haltingvt/commands/."""

from pathlib import Path

import pytest

import haltingvt
from haltingvt.cli import SUBCOMMANDS, build_parser, main


def test_every_subcommand_parses_help(capsys):
    parser = build_parser()
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
    assert main(["configs"]) == 0
    assert "minik_g03_b10" in capsys.readouterr().out.split()


def test_library_modules_hold_no_argparse():
    package = Path(haltingvt.__file__).parent
    offenders = [
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if "import argparse" in p.read_text() and p.parent.name != "commands" and p.name != "cli.py"
    ]
    assert offenders == []
