"""Timing scripts: each times its variants in one run and prints the ratios (docs/benchmarks.md).

Run them from the repository root as modules, e.g. ``python -m benchmarks.bench_compact``.
"""
