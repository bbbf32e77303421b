# The workbook's commands. Only Python 3.11 and make are needed; everything else goes into .venv.
#   make lab        set up .venv (once) and start JupyterLab on notebooks/
#   make test       set up .venv (once) and run the whole suite (tests/ + every notebook, strict nbval)
#   make learner    write the learner edition (solutions replaced, outputs cleared) to build/learner/
#   make learner-lab  the same, then open it in JupyterLab
#   make bench      time saving/loading a ~300 MB model (atomic save, mmap, safetensors)
#   make test-learner   the learner edition top to bottom, and the JupyterLab browser test
#   make test-portable  run the notebooks again under other CPU kernels and two threads
#   make test-gpu   GPU machines only: every notebook with the GPU visible, report in build/gpu-report.md
#   make lint       ruff: lint and format check of labs_utils/, tests/, data/ and the notebooks
#   make format     apply ruff's fixes and formatter
#   make notebooks  re-execute every notebook in place, top to bottom (regenerates stored outputs)
#                   NB=notebooks/03_x.ipynb make notebooks  re-executes just one

SHELL := bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# JupyterLab refuses to run as root (containers, CI machines) unless told it may.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root)
NB ?= $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
NOTEBOOKS := $(NB)

export JUPYTER_PLATFORM_DIRS := 1
# One thread per process: the models are tiny, and on a small machine running notebooks in
# parallel, several threads per process make PyTorch many times slower, not faster.
OMP_NUM_THREADS ?= 1
export OMP_NUM_THREADS
export PYTHONHASHSEED := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup lab test test-learner test-portable test-gpu lint format notebooks learner learner-lab bench browser-deps clean

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalls only when requirements.txt or pyproject.toml changed since the last install.
$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	@echo "Installing requirements.txt and labs_utils into $(VENV)/ (first time only)."
	@echo "With the CPU build of torch already present this takes about 1 minute (1.5 GB); on Linux a"
	@echo "plain install gets the CUDA build of torch: about 3 minutes and 5 GB (see README, Install)."
	@start=$$(date +%s); \
	$(BIN)/python -m pip install --progress-bar off -r requirements.txt -e . \
		| grep -E --line-buffered '^(Collecting|Successfully installed)' \
		| sed -u -e 's/ (from .*//' -e 's/^Successfully installed \(.\{0,70\}\).*/installed \1.../' -e 's/^/  pip: /'; \
	status=$${PIPESTATUS[0]}; [ $$status -eq 0 ] || { echo "pip install failed (exit $$status): see the messages above"; exit $$status; }; \
	echo "Setup done in $$(( $$(date +%s) - start )) s."
	@touch $(STAMP)

lab: setup
	$(BIN)/jupyter lab $(LAB_FLAGS) --notebook-dir=notebooks

# The stored outputs come from a CPU-only run; the suite hides any GPU so it compares like with
# like (GPU cells say "skipped: no CUDA" here). `make lab` sees the GPU and runs them for real.
test: setup
	CUDA_VISIBLE_DEVICES= $(BIN)/python -m pytest -n auto --dist loadscope -m "not learner_run"

# The workshop experience: the learner edition (solutions replaced by placeholders, outputs
# cleared), every notebook run top to bottom (no error outside raises-exception cells, every check
# says "Not attempted yet"), and notebook 01 run through JupyterLab in a real browser. It repeats
# every notebook's work, so it has its own target; .ci/run runs it after make test.
test-learner: setup browser-deps
	CUDA_VISIBLE_DEVICES= $(BIN)/python -m pytest -n auto --dist loadscope -m learner_run tests/test_learner_edition.py tests/test_browser.py

# The stored outputs must not depend on the CPU they were made on. Run every notebook again
# (strict nbval) under PyTorch's portable CPU kernels ("default", no vector units) and AVX2, with
# two threads each: a number printed too close to its rounding noise fails here. A kernel this
# CPU lacks is skipped with a note. PORTABLE_RUNS="default:1 avx512:2" make test-portable picks others.
PORTABLE_RUNS ?= default:2 avx2:2
test-portable: setup
	@native=$$($(BIN)/python -c "import torch; print(torch.backends.cpu.get_cpu_capability())"); \
	for run in $(PORTABLE_RUNS); do \
		cap=$${run%%:*}; threads=$${run##*:}; \
		if [ "$$cap" != default ] && ! grep -qiw "$$cap" /proc/cpuinfo 2>/dev/null; then \
			echo "== skipped ATEN_CPU_CAPABILITY=$$cap: this CPU does not have it"; continue; fi; \
		echo "== notebooks with ATEN_CPU_CAPABILITY=$$cap OMP_NUM_THREADS=$$threads (this CPU's native kernel: $$native)"; \
		ATEN_CPU_CAPABILITY=$$cap OMP_NUM_THREADS=$$threads CUDA_VISIBLE_DEVICES= \
			$(BIN)/python -m pytest -n auto --dist loadscope notebooks || exit 1; \
	done

# The GPU half, for a machine with an NVIDIA GPU (without one it stops with one line, exit
# status 3): every notebook top to bottom with the GPU visible, outputs not compared; fails
# on an error outside raises-exception cells, on a GPU cell that still printed "skipped:",
# and on CUDA fixtures in data/ that a real GPU save does not reproduce. Writes
# build/gpu-report.md. tools/gpu_lease.sh does setup + this in one go.
GPU_JOBS ?= 4
test-gpu: setup
	$(BIN)/python -m tools.gpu_run --jobs $(GPU_JOBS) $(NOTEBOOKS)

LINT_PATHS := labs_utils tools tests data notebooks
lint: setup
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

format: setup
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

# The browser test (tests/test_browser.py) drives Debian's Chromium. In CI (CI=true) or in a root
# shell with apt-get, it is installed here; elsewhere the test is skipped and says how to install it.
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$CI" = "true" ] || [ "$$(id -u)" = "0" ]; then \
			if command -v apt-get >/dev/null 2>&1; then \
				SUDO=$$([ "$$(id -u)" = "0" ] || echo sudo); \
				echo "installing Debian's chromium for the browser test"; \
				$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
			else echo "no apt-get here: install Chromium yourself for the browser test"; fi; \
		else echo "note: Chromium is not installed, so the browser test will be skipped (sudo apt-get install chromium)"; fi; \
	fi

notebooks: setup
	@for nb in $(NOTEBOOKS); do \
		echo "executing $$nb"; \
		(cd notebooks && CUDA_VISIBLE_DEVICES= ../$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=600 --ExecutePreprocessor.record_timing=False --ExecutePreprocessor.kernel_name=python3 $$(basename $$nb)) || exit 1; \
	done
	$(BIN)/python -m tools.notebook_tools sanitize $(NOTEBOOKS)

bench: setup
	$(BIN)/python -m tools.bench

learner: setup
	rm -rf build/learner
	$(BIN)/python -m tools.notebook_tools learner build/learner $(NOTEBOOKS)

learner-lab: learner
	$(BIN)/jupyter lab $(LAB_FLAGS) --notebook-dir=build/learner

clean:
	rm -rf notebooks/runs build .pytest_cache
