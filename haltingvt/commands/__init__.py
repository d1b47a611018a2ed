"""Command-line glue: one module per ``haltingvt`` subcommand (train, eval, flops, predict, demo,
synthetic, configs), each with ``add_arguments(parser)`` and ``run(args) -> int``; :mod:`haltingvt.cli`
dispatches. The library modules hold no argparse."""
