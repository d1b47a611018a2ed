"""Training and evaluation.

* :mod:`haltingvt.engine.train`: ``train(cfg, resume=False, device=None) -> summary dict``, the ``Trainer``
  (``haltingvt train``; several GPUs/nodes with torchrun);
* :mod:`haltingvt.engine.evaluate`: ``evaluate(model, cfg, split="val", device=None) -> metrics dict``
  (``haltingvt eval``);
* :mod:`haltingvt.engine.checkpoint`: training state (TrainState, RNG states, resume path, Checkpointer);
  reading and writing model weights is :mod:`haltingvt.models.weights`;
* :mod:`haltingvt.engine.metrics`: top-1 hits, top-k, mean class accuracy, mAP;
* :mod:`haltingvt.engine.distributed`: process-group set-up, the samplers, ``unwrap``;
* :mod:`haltingvt.engine.amp`: ``autocast(device, amp)``; :mod:`haltingvt.engine.runlog`: run logs.

The submodules are imported on use, so ``import haltingvt`` stays light.
"""
