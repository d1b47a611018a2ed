"""Training, evaluation and checkpoint I/O."""
