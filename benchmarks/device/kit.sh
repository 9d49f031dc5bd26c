#!/usr/bin/env bash
# Builds .gpu/ (git-ignored): what a lent GPU machine needs to run benchmarks/device/check.sh. That machine
# has Python 3.12, CUDA torch and Lightning but no network and no spconv, pydantic, fpsample, bioimage-cpp,
# plyfile, pytest or open3d (../shared/gpu/README.md), and ../shared does not travel. So .gpu/ holds spconv's
# CUDA kit and the prebuilt rama_py from ../shared/gpu, Python 3.12 wheels of those packages at the versions
# of this checkout's .venv, the ScanNet dev scans and their pseudo labels (never committed: .gpu/ is
# ignored). ~55 MB; carry it with the call: run(command="bash benchmarks/device/check.sh", carry=[".gpu"]).
#   usage: bash benchmarks/device/kit.sh        (or: make device-kit)
set -euo pipefail
cd "$(dirname "$0")/../.."
GPU=../shared/gpu
DATA=../shared/data/scannet-dev
KIT=.gpu
for need in "$GPU/spconv-cu126-py312-kit.tar.xz" "$GPU/rama_py-cp312-sm90-cuda13.so.xz" "$DATA"; do
  [ -e "$need" ] || { echo "kit.sh: $need not found; it comes with ../shared (see ../shared/gpu/README.md)"; exit 2; }
done
[ -x .venv/bin/python ] || { echo "kit.sh: no .venv here; run make setup first (the wheels follow its versions)"; exit 2; }
rm -rf "$KIT"
mkdir -p "$KIT/wheels" "$KIT/data"
cp "$GPU/spconv-cu126-py312-kit.tar.xz" "$GPU/rama_py-cp312-sm90-cuda13.so.xz" "$KIT/"
# pure dependencies the GPU machine lacks, pinned to what the tests here run with
pins=$(.venv/bin/python -m pip freeze 2>/dev/null | grep -i -E \
  '^(pydantic|pydantic[-_]core|annotated[-_]types|typing[-_]inspection|typing[-_]extensions|plyfile|bioimage[-_]cpp|pytest|pluggy|iniconfig|pytest[-_]timeout)==')
# fpsample: the index here has 1.x only for Python 3.11; 0.3.3 (cp312) has the two functions
# geometry.sampling calls, with the same arguments
pins="$pins
fpsample>=0.3"
# shellcheck disable=SC2086
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$KIT/wheels" $pins 2>&1 | grep -v "^WARNING: Location" || true
n=$(ls "$KIT/wheels" | wc -l)
[ "$n" -eq "$(echo "$pins" | wc -l)" ] || { echo "kit.sh: got $n wheels for: $pins"; exit 1; }
cp -r "$DATA" "$KIT/data/"
# FreePoint's pseudo labels of every dev scan (plane removal needs open3d, which the GPU machine lacks); the
# cache key is the scene's name, points and config, so the copies on the device are reused as they are
.venv/bin/python bench.py pseudo-labels --dataset scannet-npy --root "$KIT/data/scannet-dev" --out "$KIT/pseudo-labels" \
  --cache "$KIT/cache" > /dev/null
rm -rf "$KIT/cache"
du -sh "$KIT"
