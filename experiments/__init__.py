"""Reproducible studies behind the tables of docs/experiments.md (and docs/pipeline.md); see README.md here.

Run them from the repository root as modules, e.g. ``python -m experiments.motion_recipes --report``.
"""
