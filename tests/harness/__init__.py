"""Harnesses that the tests drive and that also run on their own as one command each, from the repository root:

    python -m tests.harness.bad_inputs          # the catalogue of user mistakes (tests/test_config_errors.py)
    python -m tests.harness.fault_injection     # kill -9 and full-disk trials (tests/engine/test_resume.py)

``tests`` itself stays a plain folder (no ``__init__.py``: pytest imports its test files and helper modules
by their own names); ``tests.harness`` is a package reached through the repository root.
"""
