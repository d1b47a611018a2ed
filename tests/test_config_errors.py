"""Every case of the bad-input catalogue (tests/harness/bad_inputs.py) through the ``haltingvt`` command line:
user mistakes give one error line naming the key or file:line, never a traceback; the cases that used to
give silently wrong results give the right one. Cases that need a shell (pipes, non-UTF-8 argv) run in
tests of their own below, the tmpfs ones only as root."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine_helpers import subprocess_env
from tests.harness import bad_inputs

ROOT = Path(__file__).resolve().parents[1]

IN_PROCESS = [c for c in bad_inputs.CASES if not c.shell]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield bad_inputs.prepare(tmp_path_factory.mktemp("bad_inputs"))
    torch.set_num_threads(threads)


def test_catalogue_is_large():
    assert len(bad_inputs.CASES) >= 80
    assert sum(c.id.startswith("set-") for c in bad_inputs.CASES) >= 31


@pytest.mark.parametrize("case", IN_PROCESS, ids=[c.id for c in IN_PROCESS])
def test_case(case, ctx):
    outcome, detail, _ = bad_inputs.run_case(case, ctx)
    if outcome == "skipped":
        pytest.skip(detail)
    assert outcome == "ok", f"{case.id}: {outcome}: {detail}"


@pytest.mark.slow
def test_closed_output_pipe_ends_quietly():
    proc = subprocess.Popen(
        [sys.executable, "-m", "haltingvt.cli", "configs"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
        cwd=ROOT,
    )
    proc.stdout.close()  # the reader is gone before anything is written (`| head` that already quit)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 128 + signal.SIGPIPE and err == "", err
