"""``python -m haltingvt``: the ``haltingvt`` command (see :mod:`haltingvt.cli`)."""

from .cli import main

raise SystemExit(main())
