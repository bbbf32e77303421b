# The workbook's commands. Only Python 3.11 and make are needed; everything else goes into .venv.
#   make lab        set up .venv (once) and start JupyterLab on notebooks/
#   make test       set up .venv (once) and run the whole suite (tests/ + every notebook, strict nbval)
#   make notebooks  re-execute every notebook in place, top to bottom (regenerates stored outputs)
#                   NB=notebooks/03_x.ipynb make notebooks  re-executes just one

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NB ?= $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
NOTEBOOKS := $(NB)

export JUPYTER_PLATFORM_DIRS := 1
export PYTHONHASHSEED := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup lab test notebooks clean

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalls only when requirements.txt or pyproject.toml changed since the last install.
$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	touch $(STAMP)

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks

test: setup
	$(BIN)/python -m pytest -n auto --dist loadfile

notebooks: setup
	@for nb in $(NOTEBOOKS); do \
		echo "executing $$nb"; \
		(cd notebooks && ../$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=600 --ExecutePreprocessor.record_timing=False --ExecutePreprocessor.kernel_name=python3 $$(basename $$nb)) || exit 1; \
	done
	$(BIN)/python -m labs_utils.notebook_tools sanitize $(NOTEBOOKS)

clean:
	rm -rf notebooks/runs build .pytest_cache
