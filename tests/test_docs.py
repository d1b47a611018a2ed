"""The README and docs/ name only commands, flags, configs and config keys that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from haltingvt.cli import SUBCOMMANDS, build_parser
from haltingvt.config import SCHEMA, available_configs

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(?:bash|sh|shell)\n(.*?)```", re.S)
KEY = re.compile(r"(?<![\w./-])(model|init|loss|data|train|test)\.([a-z][a-z0-9_]*)\b(?!\.py|/)")
FILE_SUFFIXES = {"txt", "log", "json", "csv", "pth", "pkl", "yaml", "safetensors", "png", "gif", "mp4", "jpg", "py"}


def _commands(page: Path) -> list[tuple[int, list[str]]]:
    """Every shell line of the page's fenced bash blocks as (line number, words), comments dropped."""
    text = page.read_text()
    out = []
    for block in FENCE.finditer(text):
        first = text.count("\n", 0, block.start(1)) + 1
        pending, start = "", first
        for i, line in enumerate(block.group(1).splitlines()):
            if not pending:
                start = first + i
            if line.rstrip().endswith("\\"):  # a command continued on the next line
                pending += line.rstrip()[:-1] + " "
                continue
            words = shlex.split(pending + line, comments=True)
            pending = ""
            if words:
                out.append((start, words))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_haltingvt_commands_parse(page):
    """Each `haltingvt ...` / `python -m haltingvt.cli ...` line parses with the real parser; configs exist."""
    shipped = set(available_configs())
    checked = 0
    for line, words in _commands(page):
        if words[0] == "torchrun":
            words = words[words.index("haltingvt.cli") + 1 :] if "haltingvt.cli" in words else []
        elif words[0] == "haltingvt":
            words = words[1:]
        else:
            continue
        if not words or words[0] not in SUBCOMMANDS:
            assert not words or words[0] in ("--help", "--version"), f"{page.name}:{line}: unknown command {words}"
            continue
        try:
            args = build_parser([words[0]]).parse_args(words)
        except SystemExit:
            pytest.fail(f"{page.name}:{line}: `haltingvt {' '.join(words)}` does not parse")
        config = getattr(args, "config", None)
        if config and not config.endswith((".yaml", ".yml")):
            assert config in shipped, f"{page.name}:{line}: config '{config}' is not shipped"
        for item in getattr(args, "set", None) or []:
            section, _, rest = item.partition(".")
            assert rest.split("=")[0] in SCHEMA.get(section, {}), f"{page.name}:{line}: no config key {item}"
        checked += 1
    if page.name in ("README.md", "guide.md", "data.md"):
        assert checked > 0


def _script(words: list[str]) -> tuple[str, Path, list[str]] | None:
    """(the name as written, the repository file, the words after it) of a `python X.py ...` or
    `python -m package.module ...` line that runs this repository's own code; None for other lines. The CLI's
    modules (`python -m haltingvt.cli`) and installed tools (`python -m pip`) are not scripts of this kind."""
    if Path(words[0]).name not in ("python", "python3") or len(words) < 2:
        return None
    if words[1].endswith(".py"):
        return words[1], ROOT / words[1], words[2:]
    if words[1] != "-m" or len(words) < 3:
        return None
    module = words[2]
    package = module.split(".")[0]
    if package == "haltingvt" or not (ROOT / package).is_dir():
        return None
    path = ROOT / Path(*module.split("."))
    return module, (path / "__main__.py" if path.is_dir() else path.with_suffix(".py")), words[3:]


def _inline_commands(page: Path) -> list[tuple[int, list[str]]]:
    """Commands written in running text as `python ...` code spans, as (line number, words)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), page.read_text())  # fenced blocks: _commands
    out = []
    for number, text_line in enumerate(text.splitlines(), start=1):
        for code in re.findall(r"`(python[^`]*)`", text_line):
            out.append((number, shlex.split(code)))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_scripts_and_flags_exist(page):
    """`python benchmarks/X.py --flag` and `python -m benchmarks.X --flag` lines (in bash blocks or running text)
    name a script (a module of the repository) that exists and flags that it defines."""
    for line, words in _commands(page) + _inline_commands(page):
        found = _script(words)
        if found is None:
            continue
        name, script, rest = found
        assert script.is_file(), f"{page.name}:{line}: {name} does not exist"
        source = script.read_text()
        for flag in (w.split("=")[0] for w in rest if w.startswith("--")):
            assert f'"{flag}"' in source, f"{page.name}:{line}: {name} has no option {flag}"


def test_script_lines_are_recognised():
    """The parsing behind test_scripts_and_flags_exist: both spellings of a repository script are checked."""
    assert _script(["python", "-m", "benchmarks.bench_compact", "--device", "cuda"]) == (
        "benchmarks.bench_compact",
        ROOT / "benchmarks" / "bench_compact.py",
        ["--device", "cuda"],
    )
    assert _script(["python", "-m", "tests.harness.bad_inputs"])[1] == ROOT / "tests" / "harness" / "bad_inputs.py"
    assert (
        _script([".venv/bin/python", "experiments/motion_recipes.py", "--report"])[1]
        == ROOT / "experiments" / "motion_recipes.py"
    )
    assert _script(["python", "-m", "haltingvt.cli", "train"]) is None
    assert _script(["python", "-m", "pip", "install", "-e", "."]) is None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_config_keys_named_exist(page):
    """Every `section.key` written in backquotes is a key of the config schema."""
    text = page.read_text()
    unknown = set()
    for code in re.findall(r"`([^`\n]+)`", text):
        for section, key in KEY.findall(code):
            if key not in SCHEMA[section] and key not in FILE_SUFFIXES:
                unknown.add(f"{section}.{key}")
    assert not unknown, f"{page.name}: unknown config keys {sorted(unknown)}"
