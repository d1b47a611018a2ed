"""Compiling the Glimpser for inference (``--compile``, ``test.compile``; docs/guide.md, "Compiling the Glimpser").

The Glimpser's blocks are where compact execution spends most of its time (65-80% of a clip on the CPU at the
paper's operating point, docs/benchmarks.md), and their shapes are fixed by the batch and clip size: every clip
enters with 1 + S*T tokens and each selecting layer keeps a fixed count. That suits ``torch.compile``, which fuses
their LayerNorms, casts, bias additions and GELUs into the matrix products' neighbours. The halting blocks are
left eager: their token count changes at every layer and batch, and would recompile or run with symbolic shapes.

Compilation happens at the first forward pass of each new batch shape (10-20 s on this project's 2-core CPU; a
second shape recompiles once with a symbolic batch size) and lasts for the process; torch caches the generated
code on disk (``TORCHINDUCTOR_CACHE_DIR``), so a later process compiles faster. On the CPU it needs a C++
compiler.
"""

from __future__ import annotations

import logging
import os
import shutil

import torch
import torch.nn as nn


def compile_unavailable(device: str | torch.device) -> str | None:
    """Why the Glimpser cannot be compiled on ``device`` here (one line), or None when it can."""
    if torch.device(device).type == "cpu":
        candidates = [os.environ.get("CXX", ""), "g++", "clang++", "c++"]
        if not any(shutil.which(c) for c in candidates if c):
            return "torch.compile needs a C++ compiler on the CPU (g++ or clang++; none found on PATH or in $CXX)"
    return None


def compile_glimpser(model: nn.Module, device: str | torch.device) -> nn.Module:
    """Compiles the Glimpser blocks of a HaltingVT in place for inference (also returned); ValueError (one line)
    when ``device`` cannot compile here (:func:`compile_unavailable`). Works with any precision of
    :func:`haltingvt.models.convert_precision` (compile after converting). Sets ``model.compiled``."""
    reason = compile_unavailable(device)
    if reason is not None:
        raise ValueError(reason)
    # On a machine without CUDA, building the CPU code logs that no CUDA runtime was found: true, and no concern
    # of a CPU user's.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    for block in model.glimpser_blocks:  # type: ignore[union-attr]
        block.compile()
    model.compiled = True  # type: ignore[assignment]
    return model


__all__ = ["compile_glimpser", "compile_unavailable"]
