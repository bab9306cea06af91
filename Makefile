# Two commands do everything on a fresh machine: `make reproduce` (the main job) and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
PRESET ?= tiny
# Small models on 2 cores: one intra-op thread per process is faster than two threads fighting over the cores
# (measured 4-25x on small convs while other processes run), and the tests run two notebooks at a time.
TEST_ENV := OMP_NUM_THREADS=1

.PHONY: setup reproduce test check-sync test-nbs test-py bench clean-nbs

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

## The main job: the whole reproduction on the embedded data suite (CPU, no download).
reproduce: setup
	$(BIN)/ssl-arch reproduce --preset $(PRESET)

## The test suite; stops at the first failure.
test: setup check-sync test-nbs test-py

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

test-nbs: setup
	$(TEST_ENV) $(BIN)/nbdev-test --n-workers 2 --timing

test-py: setup
	$(TEST_ENV) $(BIN)/pytest -x -q tests

## Speed checks: each script prints ratios measured in one run (not part of `make test`: this machine is shared).
bench: setup
	for b in archs augment pretrain evaluate search; do $(BIN)/python bench/$$b.py || exit 1; done
