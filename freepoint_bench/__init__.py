"""freepoint-bench: label-free 3D instance segmentation pretraining (FreePoint) and its benchmark."""

__version__ = "0.1.0"
