"""Kill -9 and full-disk injection into ``haltingvt train``: every resume must end where an uninterrupted
run ends, bit for bit, with every promised file present and no orphan temporary file.

A tiny model is trained on the built-in synthetic clips (3 epochs x 4 optimizer steps, a checkpoint
after every step, a log row every 3 steps and at each epoch end: most checkpoints fall inside a log
interval, so a resumed run must carry on the log meters' partial sums to write the same rows). The run is
killed with SIGKILL

* right before a chosen file operation (``--sweep``: before every checkpoint rename, fsync, log and
  summary write of an epoch end, so between any two writes of it), and
* at random points: before a random file operation or after a random delay (inside a forward pass,
  inside ``torch.save``, anywhere), several times in a row per trial,

then ``haltingvt train ... --resume`` runs it to the end. The disk-full check runs the training on a
small tmpfs (root; otherwise ENOSPC is injected into the checkpoint writer): the run must stop with one
line naming the file, leave no temporary file, and finish bit-identical after ``--resume`` with space.

    python -m tests.harness.fault_injection                    # full: epoch-end sweep + 20 random kills + disk full
    python -m tests.harness.fault_injection --quick            # the test suite's trial: 2 kills and a full disk
    python -m tests.harness.fault_injection --random 40 --seed 3

Checks after each trial (``compare``): epoch_N.pth for every epoch, latest.pth, best.pth (and the
file summary.json names), summary.json, config.yaml, train.log, train_log.csv, val_log.csv exist; every
checkpoint's tensors equal the uninterrupted run's (torch.equal); the CSV logs have the same rows
(timing columns aside); no ``*.tmp`` or hidden file is left.
"""

from __future__ import annotations

import argparse
import builtins
import csv
import errno
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.harness import tmpfs

ROOT = Path(__file__).resolve().parents[2]  # the repository root: children run with it on PYTHONPATH

#: The test suite's trial: killed before the first log row (step 3, inside a log interval: latest.pth is from
#: step 2), between epoch_1.pth and best.pth, a full disk while latest.pth is written at that epoch end (after
#: epoch_1.pth and best.pth), killed before the summary; then resumed to the end.
QUICK_CHAIN = [
    ("kill", "open-a train_log.csv"),
    ("kill", "replace epoch_1.pth"),
    ("enospc", "fsync .latest.pth"),
    ("kill", "replace summary.json"),
]

#: 16 training clips, batch 4: 4 optimizer steps per epoch, 3 epochs, latest.pth after every step, log rows at
#: steps 3, 4, 6, 8, 9, 12 (every 3 steps and at each epoch end).
OVERRIDES = [
    "data.synthetic_num_train=16",
    "data.synthetic_num_val=8",
    "data.synthetic_num_test=8",
    "train.batch_size=4",
    "train.epochs=3",
    "train.ckpt_interval=1",
    "train.log_interval=3",
    "train.val_interval=1",
    "test.batch_size=8",
    "data.num_workers=0",
]
TIMING_COLUMNS = {"clips_per_s", "clips_per_second", "wall_seconds"}


# ============================================================================ the child: one training run
def child(args: argparse.Namespace) -> int:
    """Run ``haltingvt train`` in this process with file operations counted (and maybe a fault injected).

    Events are: opening a file in the work dir for writing, ``os.replace`` into it and ``os.fsync``.
    ``--kill-at N`` sends SIGKILL to this process right before event N; ``--enospc-at N`` makes event N
    fail with ENOSPC (the simulated full disk). The events are written one per line to ``--events``.
    """
    import torch

    torch.set_num_threads(1)
    work = Path(args.work).resolve()
    log = open(args.events, "a") if args.events else None
    count = [0]
    real_open, real_io_open, real_replace, real_fsync = builtins.open, io.open, os.replace, os.fsync

    def event(kind: str, target: Any) -> None:
        count[0] += 1
        label = f"{kind} {Path(os.fsdecode(target)).name if not isinstance(target, int) else target}"
        if log is not None:
            log.write(f"{count[0]} {label}\n")
            log.flush()
        if (args.kill_at and count[0] == args.kill_at) or (args.kill_on and label.startswith(args.kill_on)):
            os.kill(os.getpid(), signal.SIGKILL)
        if (args.enospc_at and count[0] == args.enospc_at) or (args.enospc_on and label.startswith(args.enospc_on)):
            name = target if not isinstance(target, int) else os.readlink(f"/proc/self/fd/{target}")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fsdecode(name))

    def in_work(path: Any) -> bool:
        # TensorBoard's event files are not promised (and are written from its own thread): not counted.
        try:
            p = Path(os.fsdecode(path)).resolve() if not isinstance(path, int) else None
            return p is not None and p.is_relative_to(work) and not p.name.startswith("events.out.tfevents")
        except (TypeError, ValueError):
            return False

    def counted_open(opener):
        def wrapper(file, mode="r", *a, **kw):
            if any(c in mode for c in "wax+") and in_work(file):
                event(f"open-{mode}", file)
            return opener(file, mode, *a, **kw)

        return wrapper

    def counted_replace(src, dst, *a, **kw):
        if in_work(dst):
            event("replace", dst)
        return real_replace(src, dst, *a, **kw)

    def counted_fsync(fd):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target and in_work(target):
            event("fsync", target)
        return real_fsync(fd)

    builtins.open, io.open, os.replace, os.fsync = (
        counted_open(real_open),
        counted_open(real_io_open),
        counted_replace,
        counted_fsync,
    )
    from haltingvt.cli import main

    argv = [
        "train",
        "demo_synthetic",
        "--no-progress",
        "--device",
        "cpu",
        "--set",
        *OVERRIDES,
        f"train.work_dir={work}",
        *args.set,
    ]
    if args.resume:
        argv.append("--resume")
    rc = main(argv)
    sys.stdout.flush()
    return rc


# ============================================================================ the parent: trials
def run_child(
    work: Path,
    *,
    resume: bool = False,
    kill_at: int = 0,
    enospc_at: int = 0,
    delay: float | None = None,
    events: Path | None = None,
    extra: list[str] = (),
    timeout: float = 300,
    kill_on: str = "",
    enospc_on: str = "",
) -> tuple[int, str]:
    """Start a child training run; SIGKILL it ``delay`` seconds after its train.log appears (if given).
    Returns (exit code, negative for a signal; its output)."""
    cmd = [sys.executable, "-m", "tests.harness.fault_injection", "child", "--work", str(work)]
    if resume:
        cmd.append("--resume")
    if kill_at:
        cmd += ["--kill-at", str(kill_at)]
    if enospc_at:
        cmd += ["--enospc-at", str(enospc_at)]
    if kill_on:
        cmd += ["--kill-on", kill_on]
    if enospc_on:
        cmd += ["--enospc-on", enospc_on]
    if events:
        cmd += ["--events", str(events)]
    for item in extra:
        cmd += ["--set", item]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    out_path = work.parent / f"{work.name}.out"
    with open(out_path, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        if delay is not None:
            deadline = time.time() + timeout
            marker = work / "train.log"
            size = marker.stat().st_size if marker.exists() else -1
            # the run has started when train.log grows (a resumed run appends to it)
            while (
                proc.poll() is None
                and time.time() < deadline
                and (not marker.exists() or marker.stat().st_size == size)
            ):
                time.sleep(0.01)
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode, out_path.read_text(errors="replace")


def load(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _same(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)]


def promised_files(work: Path, epochs: int) -> list[str]:
    names = ["config.yaml", "train.log", "train_log.csv", "val_log.csv", "summary.json", "latest.pth", "best.pth"]
    return names + [f"epoch_{e}.pth" for e in range(1, epochs + 1)]


def compare(ref: Path, work: Path, epochs: int) -> list[str]:
    """Problems of ``work`` against the uninterrupted run ``ref`` (empty: identical)."""
    problems = [f"missing {name}" for name in promised_files(work, epochs) if not (work / name).exists()]
    orphans = [p.name for p in work.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]
    if orphans:
        problems.append(f"orphan files {orphans}")
    if problems:
        return problems
    summary = json.loads((work / "summary.json").read_text())
    ref_summary = json.loads((ref / "summary.json").read_text())
    best_path = (summary.get("checkpoints") or {}).get("best")
    if best_path and not Path(best_path).exists():
        problems.append(f"summary.json names {best_path}, which does not exist")
    for key in ("best", "optimizer_steps", "skipped_samples"):
        if summary.get(key) != ref_summary.get(key):
            problems.append(f"summary.json {key}: {summary.get(key)} vs {ref_summary.get(key)}")
    strip = lambda d: {k: v for k, v in (d or {}).items() if k not in TIMING_COLUMNS}  # noqa: E731
    if not _same(strip(summary.get("last_val")), strip(ref_summary.get("last_val"))):
        problems.append("summary.json last_val differs")
    for name in sorted(p.name for p in ref.glob("*.pth")):
        a, b = load(work / name), load(ref / name)
        for key in ("model", "optimizer", "scheduler", "scaler", "epoch", "iteration", "step", "best"):
            if not _same(a.get(key), b.get(key)):
                problems.append(f"{name}: '{key}' differs from the uninterrupted run")
    for name in ("train_log.csv", "val_log.csv"):
        if _rows(work / name) != _rows(ref / name):
            problems.append(f"{name}: rows differ from the uninterrupted run")
    return problems


class Bench:
    def __init__(self, tmp: Path, epochs: int = 3) -> None:
        self.tmp, self.epochs, self.n = tmp, epochs, 0
        self.ref = tmp / "reference"
        events = tmp / "reference.events"
        start = time.time()
        rc, out = run_child(self.ref, events=events)
        self.seconds = time.time() - start
        if rc != 0:
            raise SystemExit(f"the uninterrupted run failed (exit {rc}):\n{out[-3000:]}")
        self.events = [line.split(" ", 2) for line in events.read_text().splitlines()]
        # Random delays count from the start of training (train.log appears; config.yaml is written just
        # after) to its end (summary.json): the imports before it are no place for a kill.
        self.train_seconds = (self.ref / "summary.json").stat().st_mtime - (self.ref / "config.yaml").stat().st_mtime

    def fresh(self, tag: str) -> Path:
        self.n += 1
        return self.tmp / f"{self.n:03d}_{tag}"

    def finish(self, work: Path, kills: list[str]) -> dict:
        """Resume to the end (again after any kill that happened) and compare."""
        rc, out = run_child(work, resume=True)
        problems = (
            [f"final resume exit {rc}: {out.strip().splitlines()[-1:]}"]
            if rc != 0
            else compare(self.ref, work, self.epochs)
        )
        return {"work": work.name, "kills": kills, "ok": not problems, "problems": problems}

    def kill_at(self, n: int) -> dict:
        work = self.fresh(f"kill{n}")
        rc, out = run_child(work, kill_at=n)
        label = " ".join(self.events[n - 1][1:]) if n <= len(self.events) else "exit"
        if rc != -signal.SIGKILL:
            return {"work": work.name, "kills": [label], "ok": False, "problems": [f"not killed (exit {rc})"]}
        return self.finish(work, [f"before event {n} ({label})"])

    def random_chain(self, rng: random.Random, kills: int) -> dict:
        work = self.fresh("random")
        done = []
        for i in range(kills):
            if rng.random() < 0.5:
                n = rng.randint(1, len(self.events))
                rc, _ = run_child(work, resume=i > 0, kill_at=n)
                what = f"before event {n}"
            else:
                delay = rng.uniform(0.0, self.train_seconds)
                rc, _ = run_child(work, resume=i > 0, delay=delay)
                what = f"after {delay:.2f} s"
            done.append(what + ("" if rc == -signal.SIGKILL else f" (not killed: exit {rc})"))
        return self.finish(work, done)

    def chain(self, faults: list[tuple[str, str]]) -> dict:
        """One run interrupted by each fault in turn, ``("kill", label)`` or ``("enospc", label)`` (label: the
        start of an event's label, e.g. ``"replace epoch_1.pth"``), resumed after each, then to the end."""
        work = self.fresh("chain")
        done, problems = [], []
        for i, (kind, label) in enumerate(faults):
            rc, out = run_child(work, resume=i > 0, **{("kill_on" if kind == "kill" else "enospc_on"): label})
            last = ([line for line in out.splitlines() if line.strip()] or [""])[-1]
            if kind == "kill" and rc != -signal.SIGKILL:
                problems.append(f"not killed before '{label}' (exit {rc})")
            elif kind == "enospc" and (
                rc in (0, -signal.SIGKILL)
                or "Traceback" in out
                or "No space left on device" not in last
                or "haltingvt train: error:" not in last
            ):
                problems.append(f"ENOSPC at '{label}': exit {rc}, last line {last[:200]!r}")
            done.append(f"{kind} at '{label}'")
        result = self.finish(work, done)
        result["problems"] = problems + result["problems"]
        result["ok"] = not result["problems"]
        return result

    def disk_full(self, size_kib: int | None, enospc_at: int = 0) -> dict:
        """A run on a tmpfs of ``size_kib`` KiB (or with ENOSPC injected at event ``enospc_at``), then a
        resume with space. The failed run must exit non-zero with one line naming the file."""
        tag = f"full{size_kib}k" if size_kib else f"enospc{enospc_at}"
        work = self.fresh(tag)
        mount = None
        if size_kib:
            mount = work.parent / f"{work.name}_mnt"
            mount.mkdir()
            tmpfs.mount(mount, f"{size_kib}k")
            run_dir = mount / "run"
        else:
            run_dir = work
        try:
            rc, out = run_child(run_dir, enospc_at=enospc_at)
            lines = [line for line in out.splitlines() if line.strip()]
            last = lines[-1] if lines else ""
            problems = []
            if rc in (0, -signal.SIGKILL):
                problems.append(f"the full-disk run exited {rc}")
            elif (
                "Traceback" in out
                or "No space left on device" not in last
                or "run/" not in last
                and str(work) not in last
            ):
                problems.append(f"the error is not one line naming the file: {last[:200]!r}")
            orphans = [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")] if run_dir.exists() else []
            if orphans:
                problems.append(f"orphan files after ENOSPC: {orphans}")
            if mount is not None:
                tmpfs.resize(mount, "256m")
            result = self.finish(run_dir, [f"ENOSPC ({tag}): {last[:160]}"])
            result["work"] = work.name
            result["problems"] = problems + result["problems"]
            result["ok"] = not result["problems"]
            return result
        finally:
            if mount is not None:
                shutil.copytree(mount, work, dirs_exist_ok=True)
                tmpfs.unmount(mount)


def epoch_end_events(events: list[list[str]]) -> list[int]:
    """Event numbers from the first validation-log write of an epoch end up to the next training log
    write, i.e. every write of every epoch end (plus the summary's at the end)."""
    wanted, inside = [], False
    for n, (_, _kind, name) in enumerate(events, start=1):
        if name == "val_log.csv":
            inside = True
        elif name == "train_log.csv":
            inside = False
        if inside or name == "summary.json":
            wanted.append(n)
    return wanted


def run_all(
    tmp: Path,
    *,
    sweep: str = "epoch-end",
    random_kills: int = 20,
    kills_per_chain: int = 2,
    disk_full: int = 3,
    seed: int = 0,
    log=print,
) -> dict:
    """Run the trials; returns the report (also printed line by line through ``log``)."""
    bench = Bench(tmp)
    log(f"uninterrupted run: {bench.seconds:.1f} s, {len(bench.events)} file events")
    results = [bench.chain(QUICK_CHAIN)]
    log(_line(results[-1]))
    if sweep == "epoch-end":
        points = epoch_end_events(bench.events)
    else:
        points = [int(x) for x in sweep.split(",")] if sweep else []
    for n in points:
        results.append(bench.kill_at(n))
        log(_line(results[-1]))
    rng = random.Random(seed)
    chains = (random_kills + kills_per_chain - 1) // kills_per_chain if random_kills else 0
    for i in range(chains):
        results.append(bench.random_chain(rng, min(kills_per_chain, random_kills - i * kills_per_chain)))
        log(_line(results[-1]))
    full = []  # the chain's full disk is counted with the kills' trials
    if disk_full:
        if tmpfs.can_mount():
            ckpt = (bench.ref / "latest.pth").stat().st_size // 1024 + 1
            # Room for 3.5, 1.5 and 4.5 checkpoints: the disk fills while writing latest.pth at the end of
            # epoch 1 (after epoch_1.pth and best.pth), at the second mid-epoch latest.pth, at the end of epoch 2.
            for size in [int(ckpt * f) for f in (3.5, 1.5, 4.5)][:disk_full]:
                full.append(bench.disk_full(size))
                log(_line(full[-1]))
        else:
            replaces = [n for n, (_, kind, name) in enumerate(bench.events, start=1) if kind == "fsync"]
            for n in replaces[len(replaces) // 2 : len(replaces) // 2 + disk_full]:
                full.append(bench.disk_full(None, enospc_at=n))
                log(_line(full[-1]))
    kills = sum(not k.startswith("enospc") and "not killed" not in k for r in results for k in r["kills"])
    report = {
        "kills": kills,
        "trials": len(results),
        "identical": sum(r["ok"] for r in results),
        "disk_full_trials": len(full),
        "disk_full_ok": sum(r["ok"] for r in full),
        "reference_seconds": round(bench.seconds, 1),
        "results": results + full,
    }
    log(
        f"\nkill -9: {kills} kills in {len(results)} trials, {report['identical']} of {len(results)} resumed "
        f"bit-identical with every promised file and no orphan temp file; disk full: {report['disk_full_ok']} "
        f"of {len(full)} trials stopped with one line and resumed bit-identical"
    )
    return report


def _line(r: dict) -> str:
    return f"{'ok  ' if r['ok'] else 'FAIL'} {r['work']:18s} {'; '.join(r['kills'])}" + (
        "" if r["ok"] else f"\n     problems: {r['problems']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    c = sub.add_parser("child", help="(internal) one training run with fault hooks")
    c.add_argument("--work", required=True)
    c.add_argument("--resume", action="store_true")
    c.add_argument("--kill-at", type=int, default=0)
    c.add_argument("--enospc-at", type=int, default=0)
    c.add_argument("--kill-on", default="", help="SIGKILL before the first event whose label starts with this")
    c.add_argument("--enospc-on", default="", help="ENOSPC at the first event whose label starts with this")
    c.add_argument("--events")
    c.add_argument("--set", action="append", default=[])
    parser.add_argument("--quick", action="store_true", help="the test suite's version: a few kills")
    parser.add_argument("--random", type=int, default=20, help="random kills (default 20)")
    parser.add_argument("--per-chain", type=int, default=2, help="kills in a row before the final resume")
    parser.add_argument(
        "--sweep",
        default="epoch-end",
        help="'epoch-end' (every write of every epoch end), '' (none) or event numbers 3,7,...",
    )
    parser.add_argument("--disk-full", type=int, default=3, help="full-disk trials (0-3, default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="keep the run folders here")
    parser.add_argument("--json", help="write the report to this file")
    args = parser.parse_args(argv)
    if args.mode == "child":
        return child(args)
    if args.quick:
        args.random, args.sweep, args.disk_full = 0, "", 0
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="haltingvt_faults_"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        report = run_all(
            tmp,
            sweep=args.sweep,
            random_kills=args.random,
            kills_per_chain=args.per_chain,
            disk_full=args.disk_full,
            seed=args.seed,
        )
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    ok = report["identical"] == report["trials"] and report["disk_full_ok"] == report["disk_full_trials"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
