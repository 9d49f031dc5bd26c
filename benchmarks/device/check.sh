#!/usr/bin/env bash
# The GPU checks of this project as one device call of 8 minutes at most: what CPU machines pin only with stand-ins
# (issue 26), then the paper preset's throughput per method, which `bench.py run --plan` reads for GPU-hours.
#   env         torch, CUDA, sparse backends, rama_py, pretext methods
#   tests       the tests around the CUDA paths (spconv parity, mixed precision, multicut), CUDA-only ones included
#   confirm     benchmarks/device/confirm.py: native spconv vs the torch path for every kernel size, fp16 / bf16
#               pretraining and fine-tuning steps at 200k loss points, the evaluation device, PointContrast's
#               logging under one-GPU DDP (NCCL), RAMA against GAEC + Kernighan-Lin
#   syncs       benchmarks/bench_host_syncs.py, 34C at 2 cm: host syncs of a training step with every voxel attended
#               and with Mask3D's attention sampling (sizes 800,3200,12800,51200 on strides 8-1; the paper preset
#               samples 200,800,3200,12800 on strides 16-2 by the same code): sampling must add none
#   throughput  benchmarks/bench_throughput.py: step time, samples/s, peak memory of every method and of
#               fine-tuning, paper preset, 16-mixed / bf16-mixed / 32-true -> $OUT/throughput.json (copy it to
#               benchmarks/device/throughput.json, where --plan looks)
#   quality     (not by default) bench_pretrain_quality.py --preset paper on the dev rooms, 100 + 10 epochs
#
#   here:   bash benchmarks/device/kit.sh                 (builds .gpu/, ~55 MB, git-ignored)
#   device: run(command="bash benchmarks/device/check.sh", carry=[".gpu"], timeout_s=540)
#
# Each step has its own time limit and writes $OUT/<step>.log; $OUT/summary.txt lists every step's exit
# status and seconds. Local dry run of the logic on CPU with this checkout's venv (small sizes):
#   KIT_INSTALL=0 PY=.venv/bin/python STEPS="env confirm" CONFIRM_ARGS="--preset cpu-small --points 20000" \
#     OUT=runs/device bash benchmarks/device/check.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/device}
PY=${PY:-python3}
STEPS=${STEPS:-env tests confirm syncs throughput}
CONFIRM_ARGS=${CONFIRM_ARGS:-}
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
# the tests around the CUDA paths; on CUDA the skip-unless-CUDA ones (RAMA parity) run too
step tests 70 "$PY" -m pytest -q -p no:cacheprovider -rs -x tests/models/test_sparse.py \
  tests/models/test_mixed_precision.py tests/freepoint/test_multicut.py
# shellcheck disable=SC2086
step confirm 170 "$PY" benchmarks/device/confirm.py $CONFIRM_ARGS
SYNCS="$PY benchmarks/bench_host_syncs.py --backbone 34C --voxel-size 0.02 --points ${SYNC_POINTS:-100000}"
step syncs 40 bash -c "$SYNCS && $SYNCS --sample-sizes 800,3200,12800,51200"
step throughput 200 "$PY" benchmarks/bench_throughput.py --data "$DATA" --preset paper --steps 3 --warmup 2 \
  --out "$OUT/throughput.json"
# the run folder (checkpoints of the 34C model, predictions) stays off $OUT; its evaluation JSONs come back
Q=/tmp/fp-quality
case " $STEPS " in *" quality "*)
  rm -rf "$Q" && mkdir -p "$Q/run"
  if [ -d "$KIT/pseudo-labels" ]; then  # open3d (plane removal) is not on the GPU machine: labels made by kit.sh
    cp -r "$KIT/pseudo-labels" "$Q/run/pseudo-labels"
    cp -r "$KIT/pseudo-labels" "$Q/pseudo-held-out"
  fi ;;
esac
step quality 240 "$PY" benchmarks/bench_pretrain_quality.py --data "$DATA" --preset paper --epochs1 100 --epochs2 10 \
  --device cuda --out "$Q"
[ -d "$Q" ] && mkdir -p "$OUT/quality" && cp "$Q"/*.json "$OUT/quality/" 2>/dev/null
cat "$OUT/summary.txt"
