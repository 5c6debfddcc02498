# Set-up and main entry points. `make demo` and `make test` are all a new
# machine needs: both create .venv and install the package into it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.dev-installed
DOCS_STAMP := $(VENV)/.docs-installed

# torch is installed first, on its own, so that the package's `torch>=2.3`
# is already met when the rest installs. The default pin is the CPU build
# wherever pip's index serves a CPU wheel for it (as on this project's
# machines); elsewhere choose the build:
#   CPU build:   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
#   CUDA build:  make test TORCH=torch   (Linux wheels from PyPI are CUDA builds)
#                or TORCH_INDEX=https://download.pytorch.org/whl/cu126 (one CUDA version)
#   keep the torch already in .venv:  make test TORCH=
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: demo test test-all test-docs lint install docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH),$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)")
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

# The test and lint tools (pytest, ruff, the optional readers the tests cover):
# `make test` needs them, `make demo` does not (22 s less install on 2 cores).
$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(DEV_STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m multimodal_surv benchmark --out results

# The default suite skips tests marked slow (long acceptance runs, optional
# packages); `make test-all` runs everything. Test files are spread over
# TEST_WORKERS processes (pytest-xdist), each file whole in one process so that
# its shared fixtures are built once. TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile)

test: $(DEV_STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow" $(XDIST)

test-all: $(DEV_STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# The Python blocks of the user guide (docs/*.md, README.md) run, page by page.
test-docs: $(DEV_STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m slow tests/test_docs.py -k code_blocks

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The documentation site: user guide (docs/*.md), API reference, the examples
# gallery (each example run at its --quick size) and the benchmark tables.
# Warnings are errors. The site lands in docs/_build/html/index.html.
$(DOCS_STAMP): $(DEV_STAMP)
	$(PY) -m pip install --quiet -e ".[dev,docs]"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(PY) -m sphinx -W --keep-going -b html -d docs/_build/doctrees docs docs/_build/html
	@echo "Site built: open docs/_build/html/index.html in a browser"

clean:
	rm -rf $(VENV) results .pytest_cache docs/_build docs/reference docs/auto_examples
