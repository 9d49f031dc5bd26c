# The few commands people run. `make demo` and `make test` each set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.setup-stamp
CUDA_STAMP := $(VENV)/.setup-cuda-stamp
MINK_STAMP := $(VENV)/.minkowski-stamp
APT_PKGS := libusb-1.0-0
APT_PKGS_MINK := libopenblas-dev
# the HTML report's test renders it in a real headless browser (tests/report/test_report_browser.py)
APT_PKGS_BROWSER := chromium

.PHONY: setup setup-cuda setup-minkowski demo test test-fast test-faults test-faults-long lint bench device-kit clean

setup: $(STAMP)
	@bash .ci/apt-ensure $(APT_PKGS_BROWSER) || echo "setup: $(APT_PKGS_BROWSER) not installed; the HTML report's browser test will skip"

# apt prerequisites are installed only when missing (open3d-cpu needs libusb).
$(STAMP): pyproject.toml
	@! test -e $(CUDA_STAMP) || { echo "setup: $(VENV) is a CUDA setup (make setup-cuda): run $(PY) -m pytest, or make clean first"; \
	  exit 2; }
	@bash .ci/apt-ensure $(APT_PKGS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first: 2.13.0 is the local CPU wheel on our machines (any other spec pulls gigabytes)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,cpu]'
	@touch $@

# A CUDA machine: CUDA torch, then the project with its `cuda` extra (spconv-cu126, the full open3d) instead of
# the CPU builds (docs/gpu.md#install). PyPI's Linux x86_64 torch is a CUDA build (torch 2.15: CUDA 13, NVIDIA
# driver >= 580); for an older driver name PyTorch's index of your CUDA version, e.g.
#   make setup-cuda TORCH_INDEX=https://download.pytorch.org/whl/cu126
TORCH_INDEX ?=
setup-cuda: $(CUDA_STAMP)

$(CUDA_STAMP): pyproject.toml
	@! test -e $(STAMP) || { echo "setup-cuda: $(VENV) holds the CPU builds (make setup); make clean first"; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	@$(PY) -c "import sys, torch; torch.version.cuda or sys.exit('setup-cuda: torch ' + torch.__version__ + \
	  ' in $(VENV) is a CPU build; make clean, then make setup-cuda TORCH_INDEX=https://download.pytorch.org/whl/cu126')"
	$(PIP) install -q -e '.[dev,cuda]'
	@touch $@

# MinkowskiEngine: the optional second sparse backend, built CPU-only from source (~5 min).
setup-minkowski: $(MINK_STAMP)

$(MINK_STAMP): $(STAMP)
	@bash .ci/apt-ensure $(APT_PKGS_MINK)
	$(PIP) install -q setuptools wheel ninja
	# ME's setup.py uses numpy.distutils, which needs the stdlib distutils; it is a legacy setup.py build,
	# so its options go through --global-option (pip ignores -C config settings there).
	SETUPTOOLS_USE_DISTUTILS=stdlib MAX_JOBS=2 $(PIP) install -q --no-build-isolation \
	  --global-option=--blas=openblas --global-option=--cpu_only MinkowskiEngine==0.5.4
	@touch $@

# The main job end to end on built-in synthetic rooms: each step is a command a user would type. Unsupervised
# masks first (FreePoint's pseudo labels vs DBSCAN / KMeans / Birch), then the probe ladder: FreePoint,
# PointContrast and scratch pretrained on synthetic rooms in S3DIS's layout, each under a linear probe, semantic
# fine-tuning at 20% and 50% of the rooms (a label-efficiency curve) and instance fine-tuning, two seeds, then the
# leaderboard. Each protocol carries a recipe long enough to learn (its `overrides`); the pretraining is shortened.
# Synthetic numbers measure the plumbing and that learning happens, nothing about real data.
DEMO := demo-out
DEMO_ARGS := --dataset synthetic --cache $(DEMO)/cache
DEMO_S3DIS := $(DEMO)/s3dis-synthetic
DEMO_RUN := --root $(DEMO_S3DIS) --cache $(DEMO)/cache --results $(DEMO)/results \
  --checkpoints $(DEMO)/checkpoints --runs $(DEMO)/runs
DEMO_SEMSEG := synthetic-s3dis-20pct-scenes-semseg,synthetic-s3dis-50pct-scenes-semseg
DEMO_PROTOCOLS := synthetic-s3dis-linear,$(DEMO_SEMSEG),synthetic-s3dis-50pct-scenes
DEMO_PT := --pretrain-set epochs1=2 --pretrain-set epochs2=1 --pretrain-set num_queries=20 \
  --pretrain-set max_points=none
DEMO_CELLS := --methods freepoint,pointcontrast,scratch --protocols $(DEMO_PROTOCOLS) --seeds 0 1 $(DEMO_RUN) $(DEMO_PT)
demo: setup
	$(PY) bench.py data prepare $(DEMO_ARGS)
	$(PY) bench.py data show $(DEMO_ARGS) --scene synth_0000 --out $(DEMO)/synth_0000.png
	$(PY) bench.py pseudo-labels $(DEMO_ARGS) --out $(DEMO)/pseudo-labels \
	  --export-benchmark $(DEMO)/pred-pseudo --compare dbscan,kmeans,birch --compare-json $(DEMO)/evals/compare.json
	$(PY) bench.py data synth-s3dis --out $(DEMO_S3DIS) --rooms 12 --points 3000
	@mkdir -p $(DEMO)
	@# two processes share the work (a store takes several `run`s at once: each cell and pretraining runs once), one
	@# thread each: the cells' numbers are then those of one thread wherever the demo runs (tests/harness/test_learning)
	OMP_NUM_THREADS=1 $(PY) bench.py run $(DEMO_CELLS) > $(DEMO)/run-second-process.log 2>&1 & second=$$!; \
	  OMP_NUM_THREADS=1 $(PY) bench.py run $(DEMO_CELLS); first=$$?; \
	  wait $$second || { echo "demo: the second run process failed: $(DEMO)/run-second-process.log"; exit 1; }; \
	  exit $$first
	$(PY) bench.py report --results $(DEMO)/results --evaluations $(DEMO)/evals --out $(DEMO)/report
	@echo "demo outputs in $(DEMO)/: the leaderboard above, $(DEMO)/report/report.html (open it in a browser)."
	@echo "Synthetic rooms: these numbers measure the plumbing and that learning happens, nothing about real data."
	@echo "The same on your S3DIS copy:"
	@echo "  python bench.py run --methods freepoint,pointcontrast,csc,depthcontrast,scratch \\"
	@echo "    --protocols s3dis-10pct-masks,s3dis-20pct-masks,s3dis-10pct-scenes,s3dis-20pct-scenes --seeds 0 1 2 \\"
	@echo "    --root /data/Stanford3dDataset_v1.2_Aligned_Version --pretrain-dataset scannet --pretrain-root /data/scannet"

test: setup setup-minkowski
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# The fault-injection suite (tests/faults: kill -9, damaged files, concurrent runs, full disk, fuzzed input; also
# part of `make test`): a few kill points per command, 40 fuzz cases per input kind. The long variant: 11-14 kill
# points per command and 400 cases per kind (the figures of docs/reliability.md).
test-faults: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests/faults

test-faults-long: setup
	OMP_NUM_THREADS=1 FAULTS_LONG=1 FUZZ_EXAMPLES=400 $(PY) -m pytest -q tests/faults

lint: setup
	$(VENV)/bin/ruff check freepoint_bench baselines tests benchmarks bench.py

# The benchmark tools at their defaults, each printing its table (benchmarks/README.md: what each measures, its
# command and runtime): about 10 minutes on 2 CPU cores. Longer settings are the tools' flags. By hand:
# bench_pretrain_quality.py (a FreePoint pretraining of 60 + 10 epochs, tens of minutes) and the GPU check. Finished
# experiments are not here: docs/studies/ has their findings.
BENCH_TOOLS := synthetic evaluator host_syncs models throughput pseudolabels reproducibility superpoints training
bench: setup
	@for t in $(BENCH_TOOLS); do echo "== benchmarks/bench_$$t.py"; $(PY) benchmarks/bench_$$t.py || exit 1; done

# .gpu/ for a lent GPU machine (no network there): wheels, spconv's CUDA kit, rama_py, dev scans, pseudo labels;
# then run `bash benchmarks/device/check.sh` there with .gpu carried (see that script).
device-kit: setup
	bash benchmarks/device/kit.sh

clean:
	rm -rf $(VENV) .pytest_cache demo-out
