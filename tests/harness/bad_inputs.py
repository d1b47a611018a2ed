"""Catalogue of user mistakes and bad inputs, run against the ``haltingvt`` command line.

Every case is a command line (run in this process through ``haltingvt.cli.main``, or in a shell when a
pipe or a special file system is part of the case) and its expected outcome:

* ``error`` cases must exit non-zero (with the status of docs/reliability.md's table where ``rc`` is given:
  1 for the operating system's refusals, 2 for mistakes in the input) with ONE error line that names the key,
  file or ``file:line`` (given as substrings the line must contain), and never a traceback; a ``check`` of
  an error case looks at what the failed run left (no checkpoint of an untrained model ...);
* ``works`` cases must exit 0 and pass a check of the result (the problem they guard against was a
  silently wrong result).

    python -m tests.harness.bad_inputs              # all cases, a table and the totals
    python -m tests.harness.bad_inputs -k resume    # the cases whose id contains "resume"

Outcomes: ``ok``; ``traceback`` (an exception escaped, or "Traceback" was printed); ``silent`` (exit 0
where an error was due, or the check of a ``works`` case failed); ``unclear`` (an error, but not one line
naming what it must name); ``skipped`` (the case needs root for a mount).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tests.harness import tmpfs

ROOT = Path(__file__).resolve().parents[2]  # the repository root: {py} runs with it on PYTHONPATH

#: A tiny, fast training run on the built-in synthetic clips (2 optimizer steps per epoch).
TINY = [
    "data.synthetic_num_train=16",
    "data.synthetic_num_val=8",
    "data.synthetic_num_test=8",
    "train.batch_size=8",
    "train.epochs=1",
    "test.batch_size=8",
    "train.log_interval=1",
]


@dataclass
class Case:
    """One command line and what it must give. ``{tmp}``, ``{data}``, ``{ckpt}``, ``{work}`` in ``argv``
    are replaced by the scratch folder, exported synthetic frame folders, a trained checkpoint and a fresh
    work dir. ``shell``: run ``argv[0]`` through bash (``{py}`` = this interpreter with the repo on the path)."""

    id: str
    argv: list[str]
    kind: str = "error"  # error | works
    names: tuple[str, ...] = ()  # substrings the error line must contain (error cases)
    check: Callable[[Ctx, str, str], str | None] | None = None  # works cases: problem text or None
    setup: Callable[[Ctx], None] | None = None
    shell: bool = False
    needs_root: bool = False
    issue: str = ""  # what the issue reported
    rc: int | None = None  # the exit status an error case must give (None: any but 0)


@dataclass
class Ctx:
    tmp: Path
    data: Path
    ckpt: Path
    work: Path
    extra: dict = field(default_factory=dict)

    def fill(self, text: str) -> str:
        return (
            text.replace("{tmp}", str(self.tmp))
            .replace("{data}", str(self.data))
            .replace("{ckpt}", str(self.ckpt))
            .replace("{work}", str(self.work))
            .replace("{py}", f"PYTHONPATH={ROOT} {sys.executable}")
        )


# ----------------------------------------------------------------------------------------- helpers
def train_argv(*overrides: str, cfg: str = "demo_synthetic") -> list[str]:
    return ["train", cfg, "--no-progress", "--set", *TINY, "train.work_dir={work}", *overrides]


def set_case(id: str, override: str, names: tuple[str, ...], issue: str = "") -> Case:
    """A wrong ``--set`` value: an error naming the key (and the value) before any work starts (exit 2)."""
    return Case(id, train_argv(override), names=names, issue=issue, rc=2)


def file_case(id: str, files: dict[str, str], names: tuple[str, ...], issue: str = "", main: str | None = None) -> Case:
    """A config file mistake: ``files`` (name -> text) are written to the scratch folder and the first (or
    ``main``) is trained; an error naming the file (exit 2)."""
    first = main or next(iter(files))

    def setup(ctx: Ctx) -> None:
        for name, text in files.items():
            write(ctx.tmp / name, text)

    return Case(id, train_argv(cfg="{tmp}/" + first), names=names, setup=setup, issue=issue, rc=2)


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _list_with(ctx: Ctx, name: str, transform: Callable[[bytes], bytes]) -> Path:
    src = (ctx.data / "val_rawframes.txt").read_bytes()
    return write(ctx.tmp / name, transform(src))


def _non_utf8(src: bytes) -> bytes:
    lines = src.splitlines(keepends=True)
    lines[1] = lines[1].replace(b"val/", b"val/\xff\xfe")
    return b"".join(lines)


def _metrics(out: str) -> dict:
    start = out.find("{")
    return json.loads(out[start:]) if start >= 0 else {}


def _check_bom(ctx: Ctx, out: str, err: str) -> str | None:
    m = _metrics(out)
    if m.get("num_evaluated") != m.get("num_evaluated_expected", 4) or m.get("unreadable"):
        return f"BOM list: evaluated {m.get('num_evaluated')} of 4, unreadable {m.get('unreadable')}"
    return None


def _check_two_sets_eval(ctx: Ctx, out: str, err: str) -> str | None:
    m = _metrics(out)
    if m.get("views") != 3 or m.get("early_exit") is not True:
        return f"repeated --set: views={m.get('views')} early_exit={m.get('early_exit')} (want 3, true)"
    return None


def _check_two_sets_train(ctx: Ctx, out: str, err: str) -> str | None:
    import yaml

    cfg = yaml.safe_load((ctx.work / "config.yaml").read_text())
    got = (cfg["train"]["ckpt_interval"], cfg["test"]["execution"])
    return (
        None
        if got == (1, "masked")
        else f"repeated --set: train.ckpt_interval, test.execution = {got} (want 1, masked)"
    )


def _parser_keeps_sets(command: str, positional: list[str]) -> Callable[[Ctx, str, str], str | None]:
    def check(ctx: Ctx, out: str, err: str) -> str | None:
        from haltingvt.cli import build_parser

        args = build_parser().parse_args([command, *positional, "--set", "a.b=1", "--set", "c.d=2"])
        return None if list(args.set) == ["a.b=1", "c.d=2"] else f"{command}: --set a.b=1 --set c.d=2 gives {args.set}"

    return check


def _lr_rows(work: Path) -> list[tuple[int, float]]:
    with open(work / "train_log.csv", newline="") as f:
        return [(int(r["epoch"]), float(r["lr"])) for r in csv.DictReader(f)]


def _setup_resume(ctx: Ctx) -> None:
    """A finished 1-epoch run in the work dir to resume from (lr 2e-3, constant after warm-up)."""
    run_cli(ctx, train_argv("train.lr=2e-3", "train.warmup_epochs=0"))


def _check_resume_lr(ctx: Ctx, out: str, err: str) -> str | None:
    rows = [lr for epoch, lr in _lr_rows(ctx.work) if epoch == 2]
    if not rows:
        return "no epoch-2 rows in train_log.csv"
    # cosine over 2 epochs of 2 steps from the new base lr 1e-4: every epoch-2 lr is below 1e-4
    if max(rows) > 1e-4 * 1.0001:
        return f"resume with train.lr=1e-4: epoch-2 lr {rows} (the old lr 2e-3 was kept)"
    if "train.lr" not in out + err:
        return "resume with a new train.lr: the changed setting is not listed"
    return None


def _setup_gap(ctx: Ctx) -> None:
    folder = ctx.tmp / "gap_clip"
    shutil.copytree(ctx.data / "test" / sorted(os.listdir(ctx.data / "test"))[0], folder)
    names = sorted(os.listdir(folder))
    for i, name in enumerate(names):  # 8 frames -> 16 frames with img_00005.jpg missing
        shutil.copy(folder / name, folder / f"img_{len(names) + i + 1:05}.jpg")
    (folder / "img_00005.jpg").unlink()


def _setup_vis_names(ctx: Ctx) -> None:
    src = ctx.data / "test" / sorted(os.listdir(ctx.data / "test"))[0]
    # unbalanced mathtext ($ ... ^{ without its }) and bytes that are not UTF-8
    shutil.copytree(src, ctx.tmp / "vis" / "a $x^{2$ clip", dirs_exist_ok=True)
    shutil.copytree(src, ctx.tmp / "vis" / os.fsdecode(b"b \xff\xfe clip"), dirs_exist_ok=True)


def _check_vis(ctx: Ctx, out: str, err: str) -> str | None:
    doc = ctx.tmp / "visout" / "predictions.json"
    if not doc.exists():
        return "predictions.json not written"
    results = json.loads(doc.read_text())["results"]
    bad = [r for r in results if r.get("error")]
    return f"{len(bad)} input(s) failed: {[r['error'] for r in bad]}" if bad else None


def _setup_empty_eval(ctx: Ctx) -> None:
    write(ctx.tmp / "none.txt", "nowhere/clip_a 8 0\nnowhere/clip_b 8 1\n")


def _setup_ro(ctx: Ctx) -> None:
    ro = ctx.tmp / "ro"
    ro.mkdir()
    tmpfs.mount(ro, "1M", read_only=True)
    ctx.extra.setdefault("mounts", []).append(ro)


def _setup_full(ctx: Ctx) -> None:
    full = ctx.tmp / "full"
    full.mkdir()
    tmpfs.mount(full, "1M")
    ctx.extra.setdefault("mounts", []).append(full)


def _train_list(ctx: Ctx, name: str, line: Callable[[int, list[str]], str]) -> Path:
    """The exported train list with each line rewritten by ``line(i, fields)``."""
    rows = (ctx.data / "train_rawframes.txt").read_text().splitlines()
    return write(ctx.tmp / name, "".join(line(i, r.split()) + "\n" for i, r in enumerate(rows)))


def _no_checkpoint(ctx: Ctx, out: str, err: str) -> str | None:
    written = sorted(p.name for p in ctx.work.glob("*.pth")) if ctx.work.exists() else []
    return f"checkpoints of the untrained model written: {written}" if written else None


def _check_skip_warning(ctx: Ctx, out: str, err: str) -> str | None:
    if "more than train.max_skip_ratio" not in err:
        return "no warning about the skipped samples on stderr"
    return _check_best_written(ctx, out, err)


def _check_section_merge(ctx: Ctx, out: str, err: str) -> str | None:
    import yaml

    train = yaml.safe_load((ctx.work / "config.yaml").read_text())["train"]
    got = (train["ckpt_interval"], train["epochs"], train["weight_decay"], train["optimizer"])
    return (
        None
        if got == (1, 1, 0.05, "adamw")
        else (
            f"--set 'train={{ckpt_interval: 1}}': ckpt_interval, epochs, weight_decay, optimizer = {got} "
            "(want 1, 1, 0.05, adamw: the rest of the section kept)"
        )
    )


def _setup_busy(ctx: Ctx) -> None:
    from haltingvt.engine.lock import WorkDirLock

    lock = WorkDirLock(ctx.work).acquire()  # another training holds the work dir
    ctx.extra.setdefault("undo", []).append(lock.release)


def _setup_stale_lock(ctx: Ctx) -> None:
    import socket

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write(
        ctx.work / "train.lock",
        json.dumps(
            {"pid": int(dead.stdout), "host": socket.gethostname(), "started": "earlier", "command": "a killed run"}
        ),
    )


def _check_stale_lock(ctx: Ctx, out: str, err: str) -> str | None:
    if (ctx.work / "train.lock").exists():
        return "train.lock left behind by a finished run"
    return _check_best_written(ctx, out, err)


def _setup_enospc(ctx: Ctx) -> None:
    """A full disk without root: the checkpoint writer fails with ENOSPC as on a full tmpfs."""
    import errno

    import haltingvt.engine.checkpoint as ckpt_mod
    from haltingvt.io.errors import CheckpointWriteError

    real = ckpt_mod.save_checkpoint

    def full(path, payload):
        raise CheckpointWriteError(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    ckpt_mod.save_checkpoint = full
    ctx.extra.setdefault("undo", []).append(lambda: setattr(ckpt_mod, "save_checkpoint", real))


def _chain(n: int) -> dict[str, str]:
    return {f"chain{i}.yaml": f"_base_: chain{i + 1}.yaml\n" for i in range(n)} | {
        f"chain{n}.yaml": "_base_: demo_synthetic\n"
    }


def _check_best_written(ctx: Ctx, out: str, err: str) -> str | None:
    summary = json.loads((ctx.work / "summary.json").read_text())
    missing = [
        p for p in (summary["checkpoints"]["latest"], summary["checkpoints"]["best"]) if p and not Path(p).exists()
    ]
    return f"summary.json names missing files {missing}" if missing else None


# ----------------------------------------------------------------------------------------- the cases
RAW = ["--set", "data.format=rawframes", "data.data_root={data}"]

CASES: list[Case] = [
    # ---- config values given with --set (issue: 15 of 31 gave tracebacks)
    set_case("set-keep_rate-string", "model.keep_rate=1.0,0.5", ("model.keep_rate", "1.0,0.5")),
    set_case("set-keep_rate-length", "model.keep_rate=[1.0]", ("model.keep_rate",)),
    set_case("set-keep_rate-range", "model.keep_rate=[1.0,1.5]", ("model.keep_rate", "1.5")),
    set_case("set-keep_rate-zero", "model.keep_rate=[1.0,0]", ("model.keep_rate",)),
    set_case("set-keep_rate-null", "model.keep_rate=null", ("model.keep_rate",)),
    set_case("set-depth-abc", "model.depth=abc", ("model.depth", "abc")),
    set_case("set-depth-zero", "model.depth=0", ("model.depth",)),
    set_case("set-depth-float", "model.depth=2.5", ("model.depth", "2.5")),
    set_case("set-divid_depth-ge-depth", "model.divid_depth=6", ("model.divid_depth",)),
    set_case("set-heads-not-divisor", "model.num_heads=5", ("model.num_heads",)),
    set_case("set-img-not-multiple", "model.img_size=30", ("model.img_size",)),
    set_case("set-num_classes-zero", "model.num_classes=0", ("model.num_classes",)),
    set_case("set-halting-maybe", "model.halting=maybe", ("model.halting", "maybe")),
    set_case("set-eps-range", "model.eps=2", ("model.eps",)),
    set_case("set-init_scheme-enum", "model.init_scheme=foo", ("model.init_scheme", "foo")),
    set_case("set-drop_path-negative", "model.drop_path_rate=-0.1", ("model.drop_path_rate",)),
    set_case("set-halt_scale-nan", "model.halt_scale=.nan", ("model.halt_scale",)),
    set_case("set-epochs-two", "train.epochs=two", ("train.epochs", "two")),
    set_case("set-epochs-zero", "train.epochs=0", ("train.epochs",), "exits 0 having done nothing"),
    set_case("set-epochs-negative", "train.epochs=-1", ("train.epochs",), "exits 0 having done nothing"),
    set_case("set-lr-negative", "train.lr=-1e-3", ("train.lr",)),
    set_case("set-lr-text", "train.lr=fast", ("train.lr", "fast")),
    set_case("set-lr-inf", "train.lr=.inf", ("train.lr", "inf")),
    set_case("set-batch_size-zero", "train.batch_size=0", ("train.batch_size",)),
    set_case("set-batch_size-float", "train.batch_size=2.5", ("train.batch_size",)),
    set_case("set-optimizer-enum", "train.optimizer=sgd", ("train.optimizer", "sgd")),
    set_case("set-amp-enum", "train.amp=fp32", ("train.amp", "fp32")),
    set_case("set-accum-zero", "train.accum_steps=0", ("train.accum_steps",)),
    set_case("set-warmup-negative", "train.warmup_epochs=-1", ("train.warmup_epochs",)),
    set_case("set-grad_clip-negative", "train.grad_clip=-1", ("train.grad_clip",)),
    set_case("set-log_interval-zero", "train.log_interval=0", ("train.log_interval",)),
    set_case("set-val_interval-negative", "train.val_interval=-1", ("train.val_interval",)),
    set_case("set-work_dir-list", "train.work_dir=[a,b]", ("train.work_dir",)),
    set_case("set-seed-text", "train.seed=abc", ("train.seed", "abc")),
    set_case("set-format-enum", "data.format=avi", ("data.format", "avi")),
    set_case("set-clip_len-zero", "data.clip_len=0", ("data.clip_len",)),
    set_case("set-train_scale-length", "data.train_scale=[256]", ("data.train_scale",)),
    set_case("set-train_scale-reversed", "data.train_scale=[320,256]", ("data.train_scale",)),
    set_case("set-test_num_crops-2", "data.test_num_crops=2", ("data.test_num_crops",)),
    set_case("set-num_workers-negative", "data.num_workers=-1", ("data.num_workers",)),
    set_case("set-randaugment-number", "data.randaugment=5", ("data.randaugment",)),
    set_case("set-filename_tmpl-number", "data.filename_tmpl=3", ("data.filename_tmpl",)),
    set_case("set-short_video-enum", "data.short_video=wrap", ("data.short_video", "wrap")),
    set_case(
        "set-synthetic_classes-unknown",
        "data.synthetic_classes=[move_right,nosuch]",
        ("data.synthetic_classes", "nosuch"),
    ),
    set_case("set-label_smoothing-range", "loss.label_smoothing=1.5", ("loss.label_smoothing",)),
    set_case("set-ponder-negative", "loss.ponder_token_scale=-1", ("loss.ponder_token_scale",)),
    set_case("set-motion_loss-number", "loss.motion_loss=2", ("loss.motion_loss",)),
    set_case("set-test-batch-zero", "test.batch_size=0", ("test.batch_size",)),
    set_case("set-execution-enum", "test.execution=fast", ("test.execution", "fast")),
    set_case("set-early_exit-number", "test.early_exit=3", ("test.early_exit",)),
    set_case("set-pretrained-number", "init.pretrained=5", ("init.pretrained",)),
    set_case("set-section-scalar", "model=3", ("model",)),
    set_case("set-no-equals", "train.lr", ("train.lr",)),
    set_case("set-unknown-key", "train.lrr=1", ("train.lrr",)),
    set_case("set-unknown-section", "foo.bar=1", ("foo",)),
    set_case("set-empty-key", "train.=1", ("train.",)),
    set_case("set-yaml-error", "model.keep_rate=[1.0,", ("model.keep_rate",)),
    # ---- config files
    Case(
        "config-missing-path",
        train_argv(cfg="{tmp}/some/dir/demo_synthetic.yaml"),
        names=("some/dir/demo_synthetic.yaml",),
        issue="falls back to the shipped config of the same name",
    ),
    Case("config-unknown-name", train_argv(cfg="no_such_config"), names=("no_such_config",)),
    Case(
        "config-yaml-error",
        train_argv(cfg="{tmp}/bad.yaml"),
        names=("bad.yaml",),
        setup=lambda c: write(c.tmp / "bad.yaml", "model: {depth: [1, 2\n"),
    ),
    Case(
        "config-file-bad-value",
        train_argv(cfg="{tmp}/badval.yaml"),
        names=("train.epochs", "badval.yaml"),
        setup=lambda c: write(c.tmp / "badval.yaml", "_base_: demo_synthetic\ntrain:\n  epochs: two\n"),
    ),
    Case(
        "config-file-top-list",
        train_argv(cfg="{tmp}/list.yaml"),
        names=("list.yaml",),
        setup=lambda c: write(c.tmp / "list.yaml", "- a\n- b\n"),
    ),
    Case(
        "config-missing-base",
        train_argv(cfg="{tmp}/orphan.yaml"),
        names=("nosuch_base",),
        setup=lambda c: write(c.tmp / "orphan.yaml", "_base_: nosuch_base.yaml\n"),
    ),
    Case(
        "config-non-utf8",
        train_argv(cfg="{tmp}/latin1.yaml"),
        names=("latin1.yaml",),
        setup=lambda c: write(c.tmp / "latin1.yaml", b"_base_: demo_synthetic\n# caf\xe9\n"),
    ),
    # ---- repeated --set must keep every override
    # (the checked keys come first: if only the last --set is kept, the run stays tiny and the check fails)
    Case(
        "repeated-set-train",
        [
            "train",
            "demo_synthetic",
            "--no-progress",
            "--set",
            "train.ckpt_interval=1",
            "--set",
            "test.execution=masked",
            "--set",
            *TINY,
            "train.work_dir={work}",
        ],
        kind="works",
        check=_check_two_sets_train,
        issue="the first --set is dropped",
    ),
    Case(
        "repeated-set-eval",
        [
            "eval",
            "demo_synthetic",
            "{ckpt}",
            "--split",
            "val",
            "--json",
            "--device",
            "cpu",
            "--set",
            "data.test_num_crops=3",
            "--set",
            "test.early_exit=true",
            *RAW,
            "data.val_list={data}/val_rawframes.txt",
            *TINY,
        ],
        kind="works",
        check=_check_two_sets_eval,
        issue="the first --set is dropped",
    ),
    *[
        Case(f"repeated-set-parser-{cmd}", ["configs"], kind="works", check=_parser_keeps_sets(cmd, pos))
        for cmd, pos in (
            ("train", ["x"]),
            ("eval", ["x", "y"]),
            ("demo", []),
            ("predict", ["c", "v"]),
            ("flops", ["x"]),
        )
    ],
    # ---- training runs
    Case("train-completes-best", train_argv(), kind="works", check=_check_best_written),
    Case(
        "resume-new-lr",
        train_argv("train.lr=1e-4", "train.epochs=2", "train.warmup_epochs=0") + ["--resume"],
        kind="works",
        setup=_setup_resume,
        check=_check_resume_lr,
        issue="--resume keeps the old lr while the banner prints the new one",
    ),
    Case(
        "resume-arch-change",
        train_argv("train.lr=2e-3", "train.warmup_epochs=0", "train.epochs=2", "model.depth=5") + ["--resume"],
        setup=_setup_resume,
        names=("model.depth",),
    ),
    Case(
        "resume-batch-change",
        train_argv("train.lr=2e-3", "train.warmup_epochs=0", "train.epochs=2", "train.batch_size=4") + ["--resume"],
        setup=_setup_resume,
        names=("train.batch_size",),
    ),
    Case("resume-missing-path", train_argv() + ["--resume", "{tmp}/nope.pth"], names=("nope.pth",)),
    # ---- NaN/inf: exit 1 with one line, no bad checkpoint, a resume with a lower lr finishes
    Case(
        "nan-huge-lr",
        train_argv("train.lr=1e4", "train.warmup_epochs=0", "train.ckpt_interval=1"),
        names=("train.lr", "--resume"),
        rc=1,
    ),
    Case(
        "nan-then-resume-lower-lr",
        train_argv("train.lr=1e-3", "train.warmup_epochs=0") + ["--resume"],
        kind="works",
        setup=lambda c: run_cli(c, train_argv("train.lr=1e4", "train.warmup_epochs=0", "train.ckpt_interval=1")),
        check=_check_best_written,
        issue="the NaN message's advice (lower train.lr and resume) could not work",
    ),
    # ---- list and class-name files
    Case(
        "list-bom",
        [
            "eval",
            "demo_synthetic",
            "{ckpt}",
            "--split",
            "val",
            "--json",
            "--device",
            "cpu",
            *RAW,
            "data.val_list={tmp}/bom.txt",
            *TINY,
        ],
        kind="works",
        setup=lambda c: _list_with(c, "bom.txt", lambda b: b"\xef\xbb\xbf" + b),
        check=_check_bom,
        issue="a UTF-8 BOM mangles the first list path",
    ),
    Case(
        "list-non-utf8",
        [
            "eval",
            "demo_synthetic",
            "{ckpt}",
            "--split",
            "val",
            "--device",
            "cpu",
            *RAW,
            "data.val_list={tmp}/latin.txt",
            *TINY,
        ],
        setup=lambda c: _list_with(c, "latin.txt", _non_utf8),
        names=("latin.txt:2",),
    ),
    Case(
        "list-bad-label",
        [
            "eval",
            "demo_synthetic",
            "{ckpt}",
            "--split",
            "val",
            "--device",
            "cpu",
            *RAW,
            "data.val_list={tmp}/badlabel.txt",
            *TINY,
        ],
        setup=lambda c: _list_with(c, "badlabel.txt", lambda b: b.replace(b" 8 1", b" 8 x", 1)),
        names=("badlabel.txt:2",),
    ),
    Case(
        "list-missing",
        [
            "eval",
            "demo_synthetic",
            "{ckpt}",
            "--split",
            "val",
            "--device",
            "cpu",
            *RAW,
            "data.val_list={tmp}/nolist.txt",
            *TINY,
        ],
        names=("nolist.txt",),
    ),
    Case(
        "classes-non-utf8",
        ["predict", "{ckpt}", "{data}/test", "--classes", "{tmp}/classes.txt", "--device", "cpu"],
        setup=lambda c: write(c.tmp / "classes.txt", b"a\nb\xe9\n" + b"c\n" * 6),
        names=("classes.txt:2",),
    ),
    Case(
        "classes-bom",
        [
            "predict",
            "{ckpt}",
            "--json",
            "--topk",
            "8",
            "--classes",
            "{tmp}/bomclasses.txt",
            "--device",
            "cpu",
            "--workers",
            "0",
            "{data}/test/" + "__FIRST__",
        ],
        kind="works",
        setup=lambda c: write(
            c.tmp / "bomclasses.txt", b"\xef\xbb\xbf" + "".join(f"name{i}\n" for i in range(8)).encode()
        ),
        check=lambda c, out, err: (
            None if "\\ufeff" not in out and "\ufeff" not in out and '"name0"' in out else "BOM kept in a class name"
        ),
    ),
    Case(
        "data-classes-non-utf8",
        [
            "eval",
            "demo_synthetic",
            "{ckpt}",
            "--split",
            "val",
            "--device",
            "cpu",
            *RAW,
            "data.val_list={data}/val_rawframes.txt",
            "data.classes={tmp}/cls2.txt",
            *TINY,
        ],
        setup=lambda c: write(c.tmp / "cls2.txt", b"a\nb\xe9\n" + b"c\n" * 6),
        names=("cls2.txt:2",),
    ),
    Case(
        "eval-zero-readable",
        [
            "eval",
            "demo_synthetic",
            "{ckpt}",
            "--split",
            "val",
            "--device",
            "cpu",
            *RAW,
            "data.val_list={tmp}/none.txt",
            *TINY,
        ],
        setup=_setup_empty_eval,
        names=("0 of 2",),
        issue="exits 0 with NaN top-1",
    ),
    # ---- predict
    Case(
        "predict-frame-gap",
        ["predict", "{ckpt}", "{tmp}/gap_clip", "--device", "cpu", "--workers", "0"],
        setup=_setup_gap,
        names=("img_00005.jpg",),
        issue="silently uses only the frames before the gap",
    ),
    Case(
        "predict-vis-mathtext",
        [
            "predict",
            "{ckpt}",
            "{tmp}/vis/a $x^{2$ clip",
            "--save-vis",
            "{tmp}/visout",
            "--device",
            "cpu",
            "--workers",
            "0",
        ],
        kind="works",
        setup=_setup_vis_names,
        check=_check_vis,
        issue="matplotlib mathtext aborts the run",
    ),
    Case(
        "predict-vis-non-utf8",
        ['{py} -m haltingvt.cli predict {ckpt} "{tmp}/vis/"b*clip --save-vis {tmp}/visout --device cpu --workers 0'],
        kind="works",
        shell=True,
        setup=_setup_vis_names,
        check=_check_vis,
        issue="non-UTF-8 file name aborts the run",
    ),
    # ---- the file system and the terminal
    Case(
        "read-only-work-dir",
        train_argv("train.work_dir={tmp}/ro/run"),
        setup=_setup_ro,
        needs_root=True,
        names=("ro/run", "Read-only"),
        rc=1,
    ),
    Case(
        "disk-full",
        train_argv("train.work_dir={tmp}/full/run"),
        setup=_setup_full,
        needs_root=True,
        names=("full/run", "No space left"),
        rc=1,
        issue="exit 2 where the README says 1",
    ),
    # the reader quits early: a quiet end (exit 0 or 141, the status of a SIGPIPE death, as other tools), no error
    Case(
        "broken-pipe",
        [
            "{py} -m haltingvt.cli flops demo_synthetic --json | head -c 10 >/dev/null; a=${PIPESTATUS[0]}; "
            '{py} -m haltingvt.cli configs | head -c 1 >/dev/null; b=${PIPESTATUS[0]}; echo "$a $b"'
        ],
        kind="works",
        shell=True,
        check=lambda c, out, err: (
            None
            if err.strip() == "" and set(out.split()) <= {"0", "141"}
            else f"statuses {out.split()}, stderr {err.strip()[-200:]!r}"
        ),
    ),
]

# ---- issue 22: config files and --set values that ended in tracebacks or were silently dropped or ignored
ISSUE22_CONFIG: list[Case] = [
    file_case(
        "config-duplicate-section",
        {"dup_section.yaml": "_base_: demo_synthetic\ntrain:\n  lr: 0.1\nmodel:\n  depth: 4\ntrain:\n  epochs: 1\n"},
        ("dup_section.yaml:6", "duplicate key 'train'", "line 2"),
        "a second train: block drops the first",
    ),
    file_case(
        "config-duplicate-key",
        {"dup_key.yaml": "_base_: demo_synthetic\ntrain:\n  lr: 0.1\n  lr: 0.2\n"},
        ("dup_key.yaml:4", "duplicate key 'lr'"),
        "a repeated key drops the first",
    ),
    file_case(
        "config-duplicate-flow",
        {"dup_flow.yaml": "_base_: demo_synthetic\nmodel: {depth: 4, depth: 5}\n"},
        ("dup_flow.yaml:2", "'depth'"),
    ),
    file_case(
        "config-base-cycle",
        {"cyc_a.yaml": "_base_: cyc_b.yaml\n", "cyc_b.yaml": "_base_: cyc_a.yaml\n"},
        ("cyc_a.yaml", "cyc_b.yaml", "cycle"),
        "RecursionError",
    ),
    file_case(
        "config-base-self", {"cyc_self.yaml": "_base_: cyc_self.yaml\n"}, ("cyc_self.yaml", "cycle"), "RecursionError"
    ),
    file_case(
        "config-base-chain-900",
        _chain(900),
        ("chain", "_base_ chain longer than 32"),
        "RecursionError",
        main="chain0.yaml",
    ),
    file_case("config-base-not-a-name", {"base_list.yaml": "_base_: [demo_synthetic]\n"}, ("base_list.yaml", "_base_")),
    file_case(
        "config-deep-nesting",
        {"deep.yaml": "_base_: demo_synthetic\nmodel:\n  keep_rate: " + "[" * 900 + "]" * 900 + "\n"},
        ("deep.yaml:3", "nested deeper"),
        "RecursionError",
    ),
    file_case(
        "config-huge-int",
        {"hugeint.yaml": "_base_: demo_synthetic\ntrain:\n  epochs: " + "1" * 5000 + "\n"},
        ("hugeint.yaml:3", "too long"),
        "ValueError: Exceeds the limit for integer string conversion",
    ),
    file_case(
        "config-int-beyond-float",
        {"bigint.yaml": "_base_: demo_synthetic\ntrain:\n  lr: 1" + "0" * 400 + "\n"},
        ("bigint.yaml", "train.lr"),
    ),
    file_case(
        "config-name-dict",
        {"name_dict.yaml": "_base_: demo_synthetic\nname: {a: 1}\n"},
        ("name_dict.yaml", "'name'"),
        "TypeError",
    ),
    file_case(
        "config-synthetic-crop",
        {"syn_crop.yaml": "_base_: demo_synthetic\ndata:\n  crop_size: 224\n"},
        ("syn_crop.yaml", "data.crop_size", "synthetic"),
        "accepted and ignored",
    ),
    set_case(
        "set-huge-int",
        "train.epochs=" + "1" * 5000,
        ("train.epochs", "too long"),
        "ValueError: Exceeds the limit for integer string conversion",
    ),
    set_case("set-int-beyond-float", "train.epochs=1" + "0" * 400, ("train.epochs",), "OverflowError"),
    set_case(
        "set-deep-nesting",
        "model.keep_rate=" + "[" * 900 + "]" * 900,
        ("model.keep_rate", "nested deeper"),
        "RecursionError",
    ),
    set_case("set-section-bad-value", "train={epochs: two}", ("train.epochs", "two")),
    set_case("set-section-list", "train=[1,2]", ("'train'", "mapping")),
    set_case("set-name-dict", "name={a: 1}", ("'name'",), "TypeError"),
    set_case("set-name-absolute", "name=/tmp/elsewhere", ("'name'", "/tmp/elsewhere"), "run outside work_dirs"),
    set_case("set-name-dotdot", "name=../../elsewhere", ("'name'", "../../elsewhere"), "run outside work_dirs"),
    set_case("set-name-empty", "name=''", ("'name'",)),
    set_case(
        "set-model-too-big",
        "model.embed_dim=400000",
        ("model.embed_dim=400000", "billion parameters"),
        "tries to allocate 1.9 TB",
    ),
    set_case("set-model-too-many-frames", "model.num_frames=1000000000", ("model.num_frames=1000000000", "billion")),
    set_case("set-synthetic-crop", "data.crop_size=224", ("data.crop_size", "synthetic"), "accepted and ignored"),
    set_case("set-synthetic-train_scale", "data.train_scale=[256,320]", ("data.train_scale", "synthetic")),
    set_case("set-synthetic-test_scale", "data.test_scale=256", ("data.test_scale", "synthetic")),
    set_case(
        "set-synthetic-randaugment", "data.randaugment={num_ops: 2, magnitude: 9}", ("data.randaugment", "synthetic")
    ),
    set_case("set-synthetic-img_size", "model.img_size=64", ("data.crop_size", "64")),
    Case(
        "set-section-merges",
        train_argv("train={ckpt_interval: 1}"),
        kind="works",
        check=_check_section_merge,
        issue="--set 'train={lr: 0.5}' resets the rest of train to the defaults",
    ),
]

# ---- issue 22: runs that cannot work, one training per work dir, exit codes
RAWT = ["data.format=rawframes", "data.data_root={data}", "data.train_list={tmp}/LIST", "train.val_interval=0"]
ISSUE22_RUNS: list[Case] = [
    Case(
        "train-all-unreadable-frames",
        train_argv(*[a.replace("LIST", "huge_frames.txt") for a in RAWT]),
        setup=lambda c: _train_list(c, "huge_frames.txt", lambda i, f: f"{f[0]} 1000000000000 {f[2]}"),
        names=("epoch 1", "none of the 16 training samples"),
        check=_no_checkpoint,
        rc=2,
        issue="every sample skipped, still 'done', exit 0, checkpoints of an untrained model",
    ),
    Case(
        "train-offset-past-end",
        train_argv(*[a.replace("LIST", "offset.txt") for a in RAWT], "data.with_offset=true"),
        setup=lambda c: _train_list(c, "offset.txt", lambda i, f: f"{f[0]} 5000 8 {f[2]}"),
        names=("epoch 1", "none of the 16"),
        check=_no_checkpoint,
        rc=2,
        issue="every sample skipped, still 'done', exit 0",
    ),
    Case(
        "train-skip-rate-warning",
        train_argv(*[a.replace("LIST", "mostly_bad.txt") for a in RAWT]),
        kind="works",
        setup=lambda c: _train_list(c, "mostly_bad.txt", lambda i, f: f"{f[0]} {10**12 if i % 4 else 8} {f[2]}"),
        check=_check_skip_warning,
        issue="75% of the samples skipped without a word",
    ),
    Case(
        "train-work-dir-busy",
        train_argv(),
        setup=_setup_busy,
        rc=2,
        names=("another training is running", f"PID {os.getpid()}", "train.work_dir"),
        issue="two trainings into one work dir both exit 0 with a mix of files",
    ),
    Case(
        "train-stale-lock",
        train_argv(),
        kind="works",
        setup=_setup_stale_lock,
        check=_check_stale_lock,
        issue="a lock of a killed run must not block the next",
    ),
    Case(
        "disk-full-injected",
        train_argv(),
        setup=_setup_enospc,
        rc=1,
        names=("epoch_1.pth", "No space left"),
        issue="exit 2 where the README says 1",
    ),
]
CASES += ISSUE22_CONFIG + ISSUE22_RUNS


# ----------------------------------------------------------------------------------------- running
def run_cli(ctx: Ctx, argv: list[str]) -> tuple[int | None, str, str, str | None]:
    """(exit code or None when an exception escaped, stdout, stderr, traceback text)."""
    from haltingvt.cli import main

    out, err = io.StringIO(), io.StringIO()
    tb = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([ctx.fill(a) for a in argv])
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - a traceback is the outcome being measured
            rc, tb = None, traceback.format_exc()
    return rc, out.getvalue(), err.getvalue(), tb


def run_shell(ctx: Ctx, command: str) -> tuple[int, str, str, None]:
    proc = subprocess.run(
        ["bash", "-c", ctx.fill(command)], capture_output=True, text=True, errors="surrogateescape", timeout=600
    )
    return proc.returncode, proc.stdout, proc.stderr, None


def judge(case: Case, ctx: Ctx, rc: int | None, out: str, err: str, tb: str | None) -> tuple[str, str]:
    """(outcome, detail)."""
    if tb is not None or "Traceback (most recent call last)" in err:
        text = tb or err
        return "traceback", text.strip().splitlines()[-1][:200]
    lines = [line for line in err.splitlines() if line.strip()]
    if case.kind == "works":
        if rc != 0:
            return ("unclear" if lines else "silent"), f"exit {rc}: {(lines or [''])[-1][:200]}"
        problem = case.check(ctx, out, err) if case.check else None
        return ("silent", problem) if problem else ("ok", "")
    if rc == 0:
        return "silent", "exit 0"
    errors = [line for line in lines if "error" in line.lower() or "stopped" in line.lower()]
    line = errors[-1] if errors else (lines[-1] if lines else "")
    missing = [n for n in case.names if n not in line]
    if not errors or missing:
        return "unclear", f"exit {rc}: {line[:200]}" + (f" (does not name {missing})" if missing else "")
    if len(errors) > 1 and not lines[0].startswith("usage:"):
        return "unclear", f"{len(errors)} error lines: {line[:200]}"
    if case.rc is not None and rc != case.rc:
        return "unclear", f"exit {rc}, the table says {case.rc}: {line[:200]}"
    problem = case.check(ctx, "", "") if case.check else None
    if problem:
        return "silent", problem
    return "ok", line[:200]


def prepare(tmp: Path) -> Ctx:
    """Exported synthetic frame folders and a trained 1-epoch checkpoint, shared by the cases."""
    from haltingvt.cli import main

    data, work = tmp / "synthetic", tmp / "base_run"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["synthetic", str(data), "--num", "16", "4", "4"]) == 0
        assert main(["train", "demo_synthetic", "--no-progress", "--set", *TINY, f"train.work_dir={work}"]) == 0
    ctx = Ctx(tmp, data, work / "latest.pth", tmp / "work")
    return ctx


def run_case(case: Case, ctx: Ctx) -> tuple[str, str, float]:
    if case.needs_root and os.geteuid() != 0:
        return "skipped", "needs root for a tmpfs mount", 0.0
    ctx.work = ctx.tmp / f"work_{case.id}"
    shutil.rmtree(ctx.work, ignore_errors=True)
    first = sorted(os.listdir(ctx.data / "test"))[0]
    argv = [a.replace("__FIRST__", first) for a in case.argv]
    start = time.time()
    try:
        if case.setup:
            try:
                case.setup(ctx)
            except subprocess.CalledProcessError:  # a mount refused (a container without the right)
                return "skipped", "cannot mount a tmpfs here", 0.0
        rc, out, err, tb = run_shell(ctx, argv[0]) if case.shell else run_cli(ctx, argv)
        outcome, detail = judge(case, ctx, rc, out, err, tb)
    except Exception as exc:  # noqa: BLE001 - a failing check is reported, the catalogue goes on
        outcome, detail = "traceback", f"(while checking) {type(exc).__name__}: {exc}"[:200]
    finally:
        for undo in ctx.extra.pop("undo", []):
            undo()
        for mount in ctx.extra.pop("mounts", []):
            tmpfs.unmount(mount)
    return outcome, detail, time.time() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="run only the cases whose id contains this text")
    parser.add_argument("--json", help="also write the outcomes to this JSON file")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="haltingvt_bad_inputs_"))
    try:
        ctx = prepare(tmp)
        results = []
        for case in CASES:
            if args.k and args.k not in case.id:
                continue
            outcome, detail, seconds = run_case(case, ctx)
            results.append(
                {"id": case.id, "kind": case.kind, "outcome": outcome, "detail": detail, "seconds": round(seconds, 2)}
            )
            print(f"{case.id:32s} {case.kind:6s} {outcome:9s} {seconds:5.1f}s  {detail}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    counts = {k: sum(r["outcome"] == k for r in results) for k in ("ok", "traceback", "silent", "unclear", "skipped")}
    print(f"\n{len(results)} cases: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"counts": counts, "cases": results}, indent=1))
    return 0 if counts["ok"] + counts["skipped"] == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
