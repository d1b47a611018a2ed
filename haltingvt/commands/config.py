"""``haltingvt config NAME``: print the resolved config (after ``_base_`` and overrides) as YAML."""

from __future__ import annotations

import argparse

import yaml

from ..config import load_config
from .options import add_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config name (see `haltingvt configs`) or YAML path")
    add_overrides(parser, "model.num_classes=8 data.format=folders")


class _Dumper(yaml.SafeDumper):
    """Sections and keys one per line, short lists of numbers/names inline: [1.0, 0.5]."""


def _list(dumper: yaml.SafeDumper, value: list) -> yaml.Node:
    inline = all(not isinstance(v, (list, dict)) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=inline)


_Dumper.add_representer(list, _list)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.set)
    print(yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, default_flow_style=False), end="")
    return 0
