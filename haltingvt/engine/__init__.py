"""Training, evaluation and checkpoint I/O.

* :mod:`haltingvt.engine.train`: ``train(cfg, resume=False, device=None) -> summary dict``
  (``haltingvt train``; several GPUs/nodes with torchrun);
* :mod:`haltingvt.engine.evaluate`: ``evaluate(model, cfg, split="val", device=None) -> metrics dict``
  (``haltingvt eval``);
* :mod:`haltingvt.engine.metrics`: top-k, mean class accuracy, mAP;
* :mod:`haltingvt.engine.distributed`: process-group set-up and the samplers;
* :mod:`haltingvt.engine.checkpoint`: reading release/DeiT/our checkpoints, atomic writing.

The submodules are imported on use, so ``import haltingvt`` stays light.
"""
