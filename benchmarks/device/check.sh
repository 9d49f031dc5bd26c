#!/usr/bin/env bash
# The GPU checks of this project as one device call (what CPU machines cannot show): spconv's native CUDA
# kernels against the CPU path, mixed precision, rama_py, training throughput of cpu-small and the paper
# preset at fp32 / fp16 / bf16, and the paper preset's pretraining quality on the dev rooms (fold a).
#
#   here:   bash benchmarks/device/kit.sh                 (builds .gpu/, ~55 MB, git-ignored)
#   device: run(command="bash benchmarks/device/check.sh", carry=[".gpu"], timeout_s=580)
#
# Each step has its own time limit and writes $OUT/<step>.log; $OUT/summary.txt lists every step's exit
# status and seconds. Local dry run of the logic on CPU with this checkout's venv:
#   KIT_INSTALL=0 PY=.venv/bin/python STEPS="env tests" OUT=runs/device bash benchmarks/device/check.sh
# (the training step would time the paper preset on CPU: leave it to the device)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/device}
PY=${PY:-python3}
STEPS=${STEPS:-env tests training quality}
KIT=.gpu
mkdir -p "$OUT"
: > "$OUT/summary.txt"

if [ "${KIT_INSTALL:-1}" = 1 ]; then
  [ -d "$KIT/wheels" ] || { echo "check.sh: $KIT/wheels not found; run bash benchmarks/device/kit.sh here and carry .gpu"; exit 2; }
  SITE=/tmp/fp-site
  rm -rf "$SITE" /tmp/sc && mkdir -p "$SITE" /tmp/sc
  tar -xJf "$KIT/spconv-cu126-py312-kit.tar.xz" -C /tmp/sc
  "$PY" -m pip install -q --no-index --no-deps --target "$SITE" "$KIT"/wheels/*.whl
  xz -dc "$KIT/rama_py-cp312-sm90-cuda13.so.xz" > "$SITE/rama_py.cpython-312-x86_64-linux-gnu.so"
  # The pretext registry reads entry points from installed metadata: describe this checkout without installing it.
  "$PY" - "$SITE" <<'PYEOF'
import sys, tomllib
from pathlib import Path
meta = tomllib.loads(Path("pyproject.toml").read_text())["project"]
info = Path(sys.argv[1]) / f"freepoint_bench-{meta['version']}.dist-info"
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
groups = meta.get("entry-points", {})
(info / "entry_points.txt").write_text(
    "".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for g, eps in groups.items()))
PYEOF
  export PYTHONPATH="/tmp/sc/site:$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
DATA=$KIT/data/scannet-dev
[ -d "$DATA" ] || DATA=../shared/data/scannet-dev

step() {  # step NAME SECONDS COMMAND...: runs one check under a time limit, logs it, records its status
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
  echo "== $name ($limit s at most): $*"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "$name rc=$rc $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$name.log"
}

step env 40 "$PY" -c "
import torch
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')
from freepoint_bench.models.sparse import available_backends
print('sparse backends', available_backends())
from freepoint_bench.freepoint.multicut import RamaSolver
print('rama_py', RamaSolver.available())
from freepoint_bench.pretext.base import available_methods
print('pretext methods', available_methods())
"
# the tests that only run with CUDA (spconv CUDA parity, mixed precision, RAMA) and the model tests around them
step tests 100 "$PY" -m pytest -q -p no:cacheprovider -rs tests/models/test_backbone.py tests/models/test_segmenter.py \
  tests/models/test_sparse.py tests/freepoint/test_multicut.py tests/engine/test_trainer.py
step training 100 "$PY" benchmarks/bench_training.py --data "$DATA" --backends spconv --presets cpu-small paper \
  --precisions 32-true 16-mixed bf16-mixed --steps 5
# the run folder (checkpoints of the 34C model, predictions) stays off $OUT; its evaluation JSONs come back
Q=/tmp/fp-quality
rm -rf "$Q" && mkdir -p "$Q/run"
if [ -d "$KIT/pseudo-labels" ]; then  # open3d (plane removal) is not on the GPU machine: labels made by kit.sh
  cp -r "$KIT/pseudo-labels" "$Q/run/pseudo-labels"
  cp -r "$KIT/pseudo-labels" "$Q/pseudo-held-out"
fi
step quality 240 "$PY" benchmarks/bench_pretrain_quality.py --data "$DATA" --preset paper --epochs1 100 --epochs2 10 \
  --device cuda --out "$Q"
mkdir -p "$OUT/quality" && cp "$Q"/*.json "$OUT/quality/" 2>/dev/null
cat "$OUT/summary.txt"
