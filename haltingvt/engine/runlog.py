"""The log of a training run: console + ``train.log`` lines, CSV rows and TensorBoard scalars."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm


class RunLog:
    """Log lines (console + train.log), CSV rows and TensorBoard scalars; active on the main process only."""

    def __init__(self, work_dir: Path, active: bool, resume_step: int | None) -> None:
        self.active, self.work_dir = active, work_dir
        self.tb = None
        if not active:
            return
        work_dir.mkdir(parents=True, exist_ok=True)
        self.file = open(work_dir / "train.log", "a")
        if resume_step is not None:  # rows logged after the checkpoint we resume from are redone
            for name in ("train_log.csv", "val_log.csv"):
                _truncate_csv(work_dir / name, resume_step)
        try:
            # Deferred: tensorboard is optional at run time and slow to import.
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(work_dir / "tb"), purge_step=resume_step)
        except ImportError:
            self.line("tensorboard is not installed: no TensorBoard logs")

    def line(self, text: str) -> None:
        if self.active:
            tqdm.write(text)
            with _naming(self.work_dir / "train.log"):
                self.file.write(text + "\n")
                self.file.flush()

    def row(self, name: str, values: Mapping[str, Any], step: int) -> None:
        if not self.active:
            return
        path = self.work_dir / name
        new = not path.exists()
        with _naming(path), open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(values))
            if new:
                writer.writeheader()
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in values.items()})
        if self.tb is not None:
            prefix = name.split("_")[0]
            for key, v in values.items():
                if isinstance(v, (int, float)) and key not in ("epoch", "step") and v == v:
                    self.tb.add_scalar(f"{prefix}/{key}", v, step)

    def close(self) -> None:
        if self.active:
            if self.tb is not None:
                self.tb.close()
            self.file.close()


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError while writing (a full disk reports no file name) names ``path``."""
    try:
        yield
    except OSError as err:
        if err.filename:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from None


def _truncate_csv(path: Path, max_step: int) -> None:
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["step"]) <= max_step)
