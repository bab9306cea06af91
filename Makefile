# Two commands do everything on a fresh machine: `make reproduce` (the main job) and `make test`.
#
# Which Python runs them:
# - VENV=path given: that virtual environment (created if missing);
# - else, inside an activated conda environment other than `base`: that environment. conda installs the
#   dependencies (environment.yml) and `make setup` installs only this project into it;
# - else `.venv`, created here with the exact versions of requirements-lock.txt (hashes checked).
PRESET ?= tiny
PYTHON ?= python3
LOCK := requirements-lock.txt
ifeq ($(origin VENV),undefined)
  ifneq ($(and $(CONDA_PREFIX),$(filter-out base,$(CONDA_DEFAULT_ENV))),)
    VENV := $(CONDA_PREFIX)
    ENV_KIND := conda
  endif
endif
VENV ?= .venv
ENV_KIND ?= venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ssl_arch-installed
# Small models on 2 cores: one intra-op thread per process is faster than two threads fighting over the cores
# (measured 4-25x on small convs while other processes run), and the tests run two notebooks at a time.
TEST_ENV := OMP_NUM_THREADS=1

.PHONY: setup reproduce test check-sync check-docs readme lock test-nbs test-py bench

ifeq ($(ENV_KIND),conda)
$(STAMP): pyproject.toml
	@echo "installing ssl_arch into the conda environment $(CONDA_DEFAULT_ENV) ($(VENV)); its packages come from environment.yml"
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
	touch $@
else
$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
	touch $@
endif

setup: $(STAMP)

## The main job: the whole reproduction on the embedded data suite (CPU, no download).
reproduce: setup
	$(BIN)/ssl-arch reproduce --preset $(PRESET)

## The test suite; stops at the first failure.
test: setup check-sync check-docs test-nbs test-py

## Notebooks are the source: exporting and cleaning them must change nothing that is committed.
check-sync: setup
	$(BIN)/nbdev-export
	@if [ -n "$$(git status --porcelain -- ssl_arch)" ]; then \
	  echo "nbdev-export changed ssl_arch/ (library edited by hand, or notebooks not exported):"; \
	  git status --porcelain -- ssl_arch; exit 1; fi
	$(BIN)/nbdev-clean
	@if [ -n "$$(git status --porcelain -- nbs)" ]; then \
	  echo "nbdev-clean changed nbs/ (run nbdev-clean and commit):"; \
	  git status --porcelain -- nbs; exit 1; fi

## The documentation site builds: nbdev's processing of every notebook for it (what `nbdev-proc-nbs` runs, less its
## step that installs quarto when missing), which executes each notebook's exported and import cells; nbdev's
## generated nbs/nbdev.yml and nbs/sidebar.yml are committed and current; README.md is generated from nbs/index.ipynb.
## With quarto installed, `nbdev-docs` renders the site into _docs/ (`nbdev-preview` serves it while you edit).
check-docs: setup
	$(BIN)/python -c "from nbdev.quarto import refresh_quarto_yml, nbdev_sidebar; from nbdev.serve import proc_nbs; \
	  refresh_quarto_yml(); nbdev_sidebar.__wrapped__(); proc_nbs()"
	@if [ -n "$$(git status --porcelain -- nbs/nbdev.yml nbs/sidebar.yml)" ]; then \
	  echo "nbdev's generated documentation files changed (commit them):"; git status --porcelain -- nbs/*.yml; exit 1; fi
	@d=$$(mktemp -d) && $(README_FROM_INDEX) --output-dir $$d nbs/index.ipynb && cmp -s $$d/README.md README.md \
	  || { echo "README.md is not nbs/index.ipynb's text: edit the notebook, then run make readme"; exit 1; }

## README.md is generated: nbs/index.ipynb (the documentation site's home page) is its one source, its markdown cells
## in order. nbdev's own `nbdev-readme` needs quarto; nbconvert writes the same text without it.
README_FROM_INDEX = $(BIN)/jupyter nbconvert --to markdown --TemplateExporter.exclude_input=True \
  --TemplateExporter.exclude_output=True --log-level=WARN --output README
readme: setup
	$(README_FROM_INDEX) --output-dir . nbs/index.ipynb

## Regenerate requirements-lock.txt from pyproject.toml: exact versions with their hashes, one resolution for Linux,
## macOS and Windows on CPython 3.11.5 or newer (uv's universal mode). Versions already in the lock are kept unless
## pyproject.toml needs others; `make lock UPGRADE=1` moves every package to its newest release. uv runs from its
## own environment (.lock-tools), not the project's.
UV_VERSION := 0.13.9
lock:
	test -x .lock-tools/bin/uv || { $(PYTHON) -m venv .lock-tools && .lock-tools/bin/python -m pip install uv==$(UV_VERSION); }
	.lock-tools/bin/uv pip compile --quiet pyproject.toml --extra dev --universal --python-version 3.11.5 --generate-hashes \
	  --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) --output-file $(LOCK)

test-nbs: setup
	$(TEST_ENV) $(BIN)/nbdev-test --n-workers 2 --timing

## Two pytest workers, one test file each at a time (--dist loadfile: a file's module fixtures are built once): the
## suite's long tests are single-threaded processes, so two of them fill a 2-core machine.
test-py: setup
	$(TEST_ENV) $(BIN)/pytest -x -q -n 2 --dist loadfile tests

## Speed checks: each script prints ratios measured in one run (not part of `make test`: this machine is shared).
bench: setup
	for b in archs augment pretrain evaluate search; do $(BIN)/python bench/$$b.py || exit 1; done
