"""Dataset readers: raw files on disk → `Scene`; which reader a dataset has is its catalogue entry's.

    reader = get_reader("s3dis")          # freepoint_bench.data.catalogue.get("s3dis").open_reader()
    for name in reader.list_scenes(root):
        scene = reader.read_scene(root, name)

Readers here: "s3dis" (raw Stanford3dDataset_v1.2 Annotations), "scannet" (ScanNet v2 raw scans),
"scannet-npy" (VoteNet-style npy exports), "ply" (folders of .ply/.npz point clouds without labels),
"pointcept-s3dis" / "pointcept-scannet" (Pointcept's preprocessed npy folders, read as the same scenes as "s3dis" /
"scannet": catalogue `layout_of`); the "synthetic" reader is `freepoint_bench.data.synthetic.SyntheticReader`.
A new dataset registers an entry with its reader in the catalogue (`freepoint_bench.data.catalogue.register`).
"""

from __future__ import annotations

from freepoint_bench.data import catalogue
from freepoint_bench.data.catalogue import Reader
from freepoint_bench.data.readers.ply import PlyReader, read_point_file, write_ply
from freepoint_bench.data.readers.s3dis import S3DISReader, parse_s3dis_txt, write_s3dis_room
from freepoint_bench.data.readers.scannet import ScanNetReader, load_nyu40_map
from freepoint_bench.data.readers.scannet_npy import ScanNetNpyReader

__all__ = [
    "PlyReader",
    "Reader",
    "S3DISReader",
    "ScanNetNpyReader",
    "ScanNetReader",
    "get_reader",
    "known_datasets",
    "load_nyu40_map",
    "parse_s3dis_txt",
    "read_point_file",
    "write_ply",
    "write_s3dis_room",
]


def known_datasets() -> list[str]:
    """Returns the sorted names get_reader accepts (the catalogue's datasets)."""
    return sorted(catalogue.names())


def get_reader(dataset: str, **options) -> Reader:
    """Returns the reader of `dataset`'s catalogue entry; with options, a new reader of that type built with them.

    Options are the reader's constructor arguments, e.g. ``get_reader("scannet", axis_align=False)``.
    """
    return catalogue.get(dataset).open_reader(**options)
