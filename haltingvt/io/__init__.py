"""The lowest layer: files read and written safely, knowing nothing of the model.

* :mod:`haltingvt.io.archive`: ``torch.save`` archives read without ``torch.load`` (no code runs);
* :mod:`haltingvt.io.tensorfile`: our ``.safetensors`` with a digest over everything a load reads;
* :mod:`haltingvt.io.atomic`: atomic writes of a file and of a folder (whole or not at all);
* :mod:`haltingvt.io.checks`: checks of untrusted data (plain data, weight maps, class names);
* :mod:`haltingvt.io.errors`: ``CheckpointError``, ``CheckpointWriteError``, ``IntegrityWarning``;
* :mod:`haltingvt.io.textsafe`: text from files made safe to print;
* :mod:`haltingvt.io.offline`: whether timm's pretrained weights can be had now.

Nothing here imports another haltingvt package (tests/test_layers.py).
"""
