# The workbook's commands. Only Python 3.11 and make are needed; everything else goes into .venv.
#   make learner-lab  learners: set up .venv (once), bring your copy in learner/ up to date
#                   (your edits are never overwritten) and open it in JupyterLab
#   make lab        instructors: set up .venv (once) and open notebooks/ (solutions in place)
#   make doctor     is this machine ready? Python, torch build, GPU, disk, JupyterLab, a kernel
#   make learner    add missing notebooks to learner/, refresh the ones you have not changed
#   make learner-reset NB=01   a fresh copy of one notebook (make learner-reset: all), backup kept
#   make test       maintainers: the whole suite (tests/ + every notebook, strict nbval)
#   make bench      time saving/loading a ~300 MB model (atomic save, mmap, safetensors)
#   make test-learner   the learner edition top to bottom, and the JupyterLab browser test
#   make test-portable  run the notebooks again with ATen, MKL and oneDNN held to older CPU kernels
#   make test-gpu   GPU machines only: every notebook with the GPU visible, report in build/gpu-report.md
#   make site       the notebooks as a searchable website in build/site (stored outputs, offline)
#   make test-site  build it, then search, open and page through it in Debian's Chromium
#   make lint       ruff: lint and format check of labs_utils/, tools/, tests/, data/ and the notebooks
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

.PHONY: setup lab test test-learner test-portable test-gpu lint format notebooks learner learner-lab learner-reset doctor bench browser-deps site test-site clean

# The learner edition lives here: outside build/, so `make clean` never reaches it, and beside
# notebooks/, so the same relative links work in both. Git ignores it.
LEARNER := learner
# Extra JupyterLab options for `make lab` / `make learner-lab`, e.g. LAB_ARGS=--port=8890
LAB_ARGS ?=
# JupyterLab settings for every `jupyter lab` run from .venv: no "Jupyter news?" pop-up, no
# update check (tools/jupyterlab-overrides.json).
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.d/workbook.json
# IPython kernels of .venv: under make lab / learner-lab (WORKBOOK_MESSAGE_FIRST=1) an error shows
# its message first, then the full traceback (tools/ipython_kernel_config.py).
KERNEL_CONFIG := $(VENV)/etc/ipython/ipython_kernel_config.py
LAB_ENV := WORKBOOK_MESSAGE_FIRST=1

# Notebook 19 section 5 loads, in a child process, a file written under NumPy 2 with NumPy 1.25
# (older than 1.26, so it has no `numpy._core`). That NumPy lives in its own folder, put first on
# the child's PYTHONPATH; .venv's own NumPy is not touched. Installed once (a wheel only); where
# none exists for this Python, setup goes on and the notebook's cell says what is missing.
NUMPY1_PIN := 1.25.2
NUMPY1 := $(VENV)/numpy1
NUMPY1_STAMP := $(NUMPY1)/numpy-$(NUMPY1_PIN).dist-info

# Notebook 19 section 6 runs DeepSpeed's own zero_to_fp32 in a child process, with this folder on
# its PYTHONPATH. DeepSpeed is a source package on PyPI: with DS_BUILD_OPS=0 it builds without
# compiling anything (pure Python, no GPU), and --no-build-isolation makes it build against
# .venv's torch (with isolation pip would download another torch, several GB). Its pure-Python
# dependencies go into the same folder; pydantic, psutil, tqdm and packaging come from .venv.
# Installed once; where it fails, setup goes on and the notebook's cell says what is missing.
DEEPSPEED_PIN := 0.19.8
DEEPSPEED_DEPS := hjson==3.1.0 msgpack==1.2.4 py-cpuinfo==9.0.0 einops==0.8.2 ninja==1.13.2
DEEPSPEED := $(VENV)/deepspeed
DEEPSPEED_STAMP := $(DEEPSPEED)/deepspeed-$(DEEPSPEED_PIN).dist-info

setup: $(STAMP) $(LAB_SETTINGS) $(KERNEL_CONFIG) $(NUMPY1_STAMP) $(DEEPSPEED_STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; v = "%d.%d" % sys.version_info[:2]; print("Creating $(VENV)/ with Python " + v + ("" if v == "3.11" else ": the workbook is tested with Python 3.11 only; " + v + " is untested (see README, Set up)"))'
	$(PYTHON) -m venv $(VENV)

$(NUMPY1_STAMP): | $(BIN)/python
	@rm -rf $(NUMPY1)
	@echo "Installing numpy==$(NUMPY1_PIN) into $(NUMPY1)/ for notebook 19 (about 18 MB, once)"
	@$(BIN)/python -m pip install -q --retries 2 --no-deps --only-binary=:all: --target $(NUMPY1) \
		numpy==$(NUMPY1_PIN) || { rm -rf $(NUMPY1); \
		echo "note: no numpy==$(NUMPY1_PIN) wheel for this Python; notebook 19 section 5 will say so"; }

$(DEEPSPEED_STAMP): | $(STAMP)
	@rm -rf $(DEEPSPEED)
	@echo "Installing deepspeed==$(DEEPSPEED_PIN) into $(DEEPSPEED)/ for notebook 19 (pure Python, no GPU; well under a minute, once)"
	@DS_BUILD_OPS=0 $(BIN)/python -m pip install -q --retries 2 --no-deps --no-build-isolation \
		--target $(DEEPSPEED) deepspeed==$(DEEPSPEED_PIN) $(DEEPSPEED_DEPS) || { rm -rf $(DEEPSPEED); \
		echo "note: deepspeed==$(DEEPSPEED_PIN) did not install; notebook 19 section 6 will say so"; }

$(LAB_SETTINGS): tools/jupyterlab-overrides.json | $(BIN)/python
	@mkdir -p $(@D) && cp $< $@

$(KERNEL_CONFIG): tools/ipython_kernel_config.py | $(BIN)/python
	@mkdir -p $(@D) && cp $< $@

# Reinstalls only when requirements.txt or pyproject.toml changed since the last install.
$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	@echo "Installing requirements.txt and labs_utils into $(VENV)/ (first time only). pip names each"
	@echo "package it collects and the size of each download. Expect 2 to 5 minutes. The slow part is"
	@echo "torch: on Linux x86_64 PyPI gives the CUDA build, torch plus several GB of nvidia-* libraries"
	@echo "(about 5 GB in $(VENV)/); with the CPU build installed first (README, Set up) it is 1.5 GB."
	@start=$$(date +%s); \
	if [ -t 1 ]; then \
		$(BIN)/python -m pip install -r requirements.txt -e .; status=$$?; \
	else \
		$(BIN)/python -m pip install -r requirements.txt -e . \
			| grep -v --line-buffered '^Requirement already satisfied'; status=$${PIPESTATUS[0]}; \
	fi; \
	[ $$status -eq 0 ] || { echo "pip install failed (exit $$status): see the messages above, and README, Troubleshooting"; exit $$status; }; \
	echo "Setup done in $$(( $$(date +%s) - start )) s. Check the machine with: make doctor"
	@touch $(STAMP)

lab: setup
	$(LAB_ENV) $(BIN)/jupyter lab $(LAB_FLAGS) $(LAB_ARGS) --notebook-dir=notebooks

# Python, the torch build, a GPU, free disk, JupyterLab and a kernel that runs 1+1; a fix for each
# problem. Needs only the venv folder, so it also explains a half-finished setup.
doctor: | $(BIN)/python
	@$(BIN)/python -m tools.doctor

# The stored outputs come from a CPU-only run; the suite hides any GPU so it compares like with
# like (GPU cells say "skipped: no CUDA" here). `make lab` sees the GPU and runs them for real.
test: setup
	CUDA_VISIBLE_DEVICES= $(BIN)/python -m pytest -n auto --dist loadscope --no-loadscope-reorder -m "not learner_run and not site"

# The workshop experience: the learner edition (solutions replaced by placeholders, outputs
# cleared), every notebook run top to bottom (no error outside raises-exception cells, every check
# says "Not attempted yet"), and notebook 01 run through JupyterLab in a real browser. It repeats
# every notebook's work, so it has its own target; .ci/run runs it after make test.
test-learner: setup browser-deps
	CUDA_VISIBLE_DEVICES= $(BIN)/python -m pytest -n auto --dist loadscope -m learner_run tests/learner/test_learner_edition.py tests/learner/test_browser.py

# The notebooks as a website (tools/site/build.py): a page per notebook with its stored outputs
# (nothing re-executed), the error index, the coverage table and the other notebooks/*.md, a page
# per command, and search that finds a pasted error message. Offline: nothing is downloaded to
# build or to read it. Its builder is nbconvert's own stack (tools/site/requirements.txt, pinned,
# installed once; it changes nothing requirements.txt installed). Open build/site/index.html.
SITE_STAMP := $(VENV)/.site-installed
$(SITE_STAMP): tools/site/requirements.txt $(STAMP)
	$(BIN)/python -m pip install --progress-bar off -q -r tools/site/requirements.txt
	@touch $(SITE_STAMP)

site: setup $(SITE_STAMP)
	$(BIN)/python tools/site/build.py --out build/site

# The site in Debian's Chromium (Playwright), served on 127.0.0.1: five pasted error messages land
# on the section that raises them, a plot loads, "next" pages from 01 to the last notebook, and no
# page asks another host for anything. .ci/run runs it.
test-site: site browser-deps
	CUDA_VISIBLE_DEVICES= $(BIN)/python -m pytest -m site tests/tools/test_site.py

# The stored outputs must not depend on the CPU they were made on. Run every notebook again
# (strict nbval), two threads each, with each CPU library held to an older instruction set than
# this CPU's: ATen's own kernels (ATEN_CPU_CAPABILITY), MKL's BLAS, which does the matrix
# multiplies (MKL_ENABLE_INSTRUCTIONS), and oneDNN, which does the convolutions
# (ONEDNN_MAX_CPU_ISA). A run is ATEN:MKL:ONEDNN:THREADS, "-" leaves a library to pick for itself;
# an MKL or oneDNN set this CPU lacks is left out, an ATen one skips the run, each with a note.
# ONNX Runtime (MLAS) has no such switch: CONTRIBUTING.md, "Stable outputs".
# Other runs: PORTABLE_RUNS="avx512:-:-:1 -:SSE4_2:-:2" make test-portable.
PORTABLE_RUNS ?= default:SSE4_2:SSE41:2 avx2:AVX2:AVX2:2
test-portable: setup
	@native=$$($(BIN)/python -c "import torch; print(torch.backends.cpu.get_cpu_capability())"); \
	flag() { case "$$1" in -|default) ;; avx512*|AVX512*) echo avx512f;; SSE41) echo sse4_1;; \
		*) echo "$$1" | tr A-Z a-z;; esac; }; \
	for run in $(PORTABLE_RUNS); do \
		set -- $$(echo "$$run" | tr : ' '); \
		if [ $$# -eq 2 ]; then set -- "$$1" - - "$$2"; fi; \
		cap=$$1; mkl=$$2; dnn=$$3; threads=$$4; vars=; \
		has() { f=$$(flag "$$1"); [ -z "$$f" ] || grep -qiw "$$f" /proc/cpuinfo 2>/dev/null; }; \
		if ! has "$$cap"; then echo "== skipped ATEN_CPU_CAPABILITY=$$cap: this CPU does not have it"; continue; fi; \
		[ "$$cap" = - ] || vars="$$vars ATEN_CPU_CAPABILITY=$$cap"; \
		for lib in MKL_ENABLE_INSTRUCTIONS=$$mkl ONEDNN_MAX_CPU_ISA=$$dnn; do isa=$${lib#*=}; \
			if [ "$$isa" = - ]; then :; elif has "$$isa"; then vars="$$vars $$lib"; \
			else echo "== $$lib left out: this CPU does not have $$isa (MKL and oneDNN: x86 only)"; fi; done; \
		echo "== notebooks with$$vars OMP_NUM_THREADS=$$threads (this CPU's native ATen kernel: $$native)"; \
		env $$vars OMP_NUM_THREADS=$$threads CUDA_VISIBLE_DEVICES= \
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

# The browser test (tests/learner/test_browser.py) drives Debian's Chromium. In CI (CI=true) or in a root
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
	$(BIN)/python -m tools.notebook_tools links $(NOTEBOOKS) >/dev/null

bench: setup
	$(BIN)/python -m tools.bench

# Never overwrites a notebook you changed: adds missing ones, refreshes the ones you did not
# change, and writes a changed lesson beside yours as NN_x.updated.ipynb. Earlier versions kept
# the edition in build/learner/: its notebooks are copied in when learner/ is first made.
learner: setup
	@$(BIN)/python -m tools.notebook_tools learner $(LEARNER) --adopt build/learner $(NOTEBOOKS)

learner-lab: learner
	$(LAB_ENV) $(BIN)/jupyter lab $(LAB_FLAGS) $(LAB_ARGS) --notebook-dir=$(LEARNER)

# NB=01 (or a path) resets one notebook; without NB, every one. Says what it discards, asks on
# a terminal, and keeps a copy in learner/backups/<time>/.
learner-reset: setup
	@$(BIN)/python -m tools.notebook_tools learner-reset $(LEARNER) $(if $(filter file,$(origin NB)),--all,$(NB))

# Scratch files only: never learner/ (your work), nor build/learner/ (where earlier versions kept
# it; make learner copies it into learner/ when it first makes that folder).
clean:
	rm -rf notebooks/runs .pytest_cache $(filter-out build/learner,$(wildcard build/*))
