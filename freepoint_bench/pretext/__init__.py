"""Pretext methods and the framework they share: base (the PretextMethod interface and its registry), runs (a run's
folder and resume check, provenance, publishing), training (OptimConfig, BackboneModule, train_stage,
TrainedPretext) and freepoint (FreePoint's own two-step pretext on them)."""
