"""Class vocabularies of the datasets the suite reads (ids as the datasets define them)."""

from __future__ import annotations

# S3DIS: 13 classes; semantic ids are the index in this tuple (clutter = 12).
S3DIS_CLASSES: tuple[str, ...] = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door",
    "table", "chair", "sofa", "bookcase", "board", "clutter",
)
S3DIS_CLASS_ID: dict[str, int] = {name: i for i, name in enumerate(S3DIS_CLASSES)}
# Classes the suite treats as background structure in S3DIS scenes.
S3DIS_STRUCTURE: tuple[str, ...] = ("ceiling", "floor", "wall", "beam", "column")

# ScanNet v2: NYU40 ids of the 18 instance classes of the ScanNet benchmark.
SCANNET_INSTANCE_IDS: tuple[int, ...] = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
SCANNET_INSTANCE_NAMES: tuple[str, ...] = (
    "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
    "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
    "bathtub", "otherfurniture",
)
NYU40_WALL, NYU40_FLOOR = 1, 2
# NYU40 ids of the 20 classes of ScanNet's semantic-segmentation benchmark: the 18 instance classes, wall and floor
# (what ScanNet semantic segmentation, and the PointContrast / CSC fine-tuning, trains on).
SCANNET_SEMANTIC_IDS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)

# The label id written for class-agnostic predictions ("object") in benchmark-format files.
# Class-agnostic evaluation ignores prediction labels, so any id works; 1 keeps files readable.
OBJECT_LABEL_ID = 1
