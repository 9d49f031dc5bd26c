# The few commands people run. `make demo` and `make test` each set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.setup-stamp
MINK_STAMP := $(VENV)/.minkowski-stamp
APT_PKGS := libusb-1.0-0
APT_PKGS_MINK := libopenblas-dev
# the HTML report's test renders it in a real headless browser (tests/report/test_report_browser.py)
APT_PKGS_BROWSER := chromium

.PHONY: setup setup-minkowski demo test test-fast test-faults test-faults-long lint bench device-kit clean

setup: $(STAMP)
	@bash .ci/apt-ensure $(APT_PKGS_BROWSER) || echo "setup: $(APT_PKGS_BROWSER) not installed; the HTML report's browser test will skip"

# apt prerequisites are installed only when missing (open3d-cpu needs libusb).
$(STAMP): pyproject.toml
	@bash .ci/apt-ensure $(APT_PKGS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first: 2.13.0 is the local CPU wheel on our machines (any other spec pulls gigabytes)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
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

# The main job end to end on built-in synthetic rooms: each step is a command a user would type.
DEMO := demo-out
DEMO_ARGS := --dataset synthetic --cache $(DEMO)/cache
demo: setup
	$(PY) bench.py data prepare $(DEMO_ARGS)
	$(PY) bench.py data show $(DEMO_ARGS) --scene synth_0000 --out $(DEMO)/synth_0000.png
	$(PY) bench.py pseudo-labels $(DEMO_ARGS) --out $(DEMO)/pseudo-labels \
	  --export-benchmark $(DEMO)/pred-pseudo --compare dbscan,kmeans,birch
	$(PY) bench.py data show $(DEMO_ARGS) --scene synth_0000 --labels $(DEMO)/pseudo-labels \
	  --out $(DEMO)/synth_0000-pseudo.png
	$(PY) bench.py evaluate $(DEMO_ARGS) --predictions $(DEMO)/pred-pseudo/sigma-0.9 --class-agnostic \
	  --json $(DEMO)/eval-pseudo.json
	$(PY) bench.py pretrain --method freepoint $(DEMO_ARGS) --scene synth_0000 --scene synth_0001 \
	  --scene synth_0002 --epochs1 3 --epochs2 1 --out $(DEMO)/pretrain --checkpoints $(DEMO)/checkpoints --resume
	$(PY) bench.py predict $(DEMO_ARGS) --split val --checkpoint $$(ls $(DEMO)/checkpoints/*-segmenter.ckpt | head -1) \
	  --export-benchmark $(DEMO)/pred-segmenter
	$(PY) bench.py evaluate $(DEMO_ARGS) --predictions $(DEMO)/pred-segmenter --class-agnostic \
	  --json $(DEMO)/eval-segmenter.json
	@echo "demo outputs in $(DEMO)/ (PNG renders, pseudo labels, checkpoints, predictions, evaluation JSON)"

test: setup setup-minkowski
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# The fault-injection suite (tests/faults: kill -9, damaged files, concurrent runs, full disk, fuzzed input; also
# part of `make test`): a few kill points per command, 40 fuzz cases per input kind. The long variant: 11-12 kill
# points per command and 400 cases per kind (the figures of docs/reliability.md).
test-faults: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests/faults

test-faults-long: setup
	OMP_NUM_THREADS=1 FAULTS_LONG=1 FUZZ_EXAMPLES=400 $(PY) -m pytest -q tests/faults

lint: setup
	$(VENV)/bin/ruff check freepoint_bench baselines tests benchmarks bench.py

bench: setup
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# .gpu/ for a lent GPU machine (no network there): wheels, spconv's CUDA kit, rama_py, dev scans, pseudo labels;
# then run `bash benchmarks/device/check.sh` there with .gpu carried (see that script).
device-kit: setup
	bash benchmarks/device/kit.sh

clean:
	rm -rf $(VENV) .pytest_cache demo-out
