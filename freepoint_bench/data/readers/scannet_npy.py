"""ScanNet VoteNet-style npy reader: ``<scene>_vert.npy`` + label npys → NYU40-labelled Scene.

Per scene, in one folder:

    <scene>_vert.npy        (N, 6) float: x y z (metres) r g b (0..255)
    <scene>_sem_label.npy   (N,) NYU40 ids, 0 = unannotated
    <scene>_ins_label.npy   (N,) instance ids, 0 = unannotated

or the full-resolution variant ``<scene>_vert_all.npy``, ``_sem_label_all.npy``, ``_ins_label_all.npy``.
Unannotated (0) becomes -1. Missing label files give a Scene without labels. Any scene name is accepted
(users export their own scans in this layout); `freepoint_bench.data.splits` puts names that no split list
holds in the test split, and a ``scene_splits.txt`` beside the data chooses the splits.
"""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path

import numpy as np

from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import DataError

logger = logging.getLogger(__name__)

_VERT_RE = re.compile(r"^(?P<scene>.+)_vert(?P<all>_all)?\.npy$")
_LAYOUT = "<root>/<scene>_vert.npy (+ _sem_label.npy, _ins_label.npy), or the *_all.npy full-resolution files"


class ScanNetNpyReader:
    """Reads VoteNet-style npy exports; full_resolution=None: ``_vert.npy`` if present, else ``_all``."""

    name = "scannet-npy"

    def __init__(self, full_resolution: bool | None = None) -> None:
        self.full_resolution = full_resolution

    def _variants(self, root: Path) -> dict[str, set[bool]]:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"ScanNet npy root {root} does not exist or is not a folder; expected {_LAYOUT}")
        found: dict[str, set[bool]] = {}
        for path in root.iterdir():
            match = _VERT_RE.match(path.name)
            if match and path.is_file():
                found.setdefault(match["scene"], set()).add(match["all"] is not None)
        if not found:
            hint = " (raw ScanNet? use dataset 'scannet')" if (root / "scans").is_dir() else ""
            raise DataError(f"{root} holds no *_vert.npy or *_vert_all.npy files; expected {_LAYOUT}{hint}")
        return found

    def _pick(self, name: str, variants: set[bool], root: Path) -> bool:
        if self.full_resolution is None:
            return False not in variants  # the sampled file when present, else full resolution
        if self.full_resolution not in variants:
            suffix = "_vert_all.npy" if self.full_resolution else "_vert.npy"
            raise DataError(f"{root / (name + suffix)} is missing; use the other resolution or re-export it")
        return self.full_resolution

    def list_scenes(self, root: Path) -> list[str]:
        """Returns the sorted scene names with a vertex file of the requested resolution."""
        found = self._variants(root)
        if self.full_resolution is None:
            return sorted(found)
        return sorted(n for n, v in found.items() if self.full_resolution in v)

    def read_scene(self, root: Path, name: str) -> Scene:
        """Returns scene `name` with NYU40 semantic ids and instance ids (-1 = unannotated)."""
        root = Path(root)
        found = self._variants(root)
        if name not in found:
            raise DataError(f"no {name}_vert.npy or {name}_vert_all.npy in {root}; expected {_LAYOUT}")
        full = self._pick(name, found[name], root)
        suffix = "_all" if full else ""
        vert_path = root / f"{name}_vert{suffix}.npy"
        vert = _load(vert_path)
        if vert.ndim != 2 or vert.shape[1] < 6:
            raise DataError(f"{vert_path}: shape {vert.shape}; expected (N, 6) x y z r g b; re-export it")
        vert = vert.astype(np.float32)
        meta = {"dataset": "scannet-npy", "source": str(vert_path), "full_resolution": full}
        labels = []
        for key in ("sem_label", "ins_label"):
            path = root / f"{name}_{key}{suffix}.npy"
            if not path.is_file():
                logger.info("%s: %s missing; scene loaded without labels", name, path.name)
                labels = []
                break
            arr = _load(path)
            if arr.shape != (len(vert),):
                raise DataError(
                    f"{path}: shape {arr.shape} but {vert_path.name} has {len(vert)} points; re-export"
                )
            if arr.dtype.kind not in "iu":
                raise DataError(f"{path}: dtype {arr.dtype}; expected integer labels; re-export")
            arr = arr.astype(np.int64)
            labels.append(np.where(arr == 0, -1, arr))  # 0 = unannotated in VoteNet exports
        semantic, instance = labels if labels else (None, None)
        return Scene(
            name=name,
            xyz=vert[:, :3],
            rgb=vert[:, 3:6] / 255.0,  # explicit: VoteNet stores 0..255 floats
            semantic=semantic,
            instance=instance,
            meta=meta,
        )


def _load(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: corrupt or not a .npy file ({exc}); re-export or re-download it") from exc
