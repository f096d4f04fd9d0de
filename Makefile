# Everything a fresh machine needs: `make demo`, `make test`, `make bench`.
# torch is pinned; on this project's CPU machines the pin resolves to the CPU build. Elsewhere,
# to avoid a multi-GB CUDA wheel on a machine without a GPU, run e.g.
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
TORCH_VERSION := 2.13.0
TORCH_INDEX ?=
# make test runs one pytest worker per CPU core (pytest-xdist); TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= auto

.PHONY: demo test bench data lint clean-venv

# Two stamps: the demo needs only the package (torch first: the pin), the tests also the extras
# (pytest, scikit-learn, tensorboard, hypothesis, build, ...), about 2 minutes more of pip.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e .
	@touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[test]"
	@touch $(TEST_STAMP)

# Fashion-MNIST: Debian's dataset-fashion-mnist when apt and root are there, else a download into
# ~/.cache/ltdd, else a clear error.
data: $(STAMP)
	@if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
	    && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
	  || echo "apt-get could not install dataset-fashion-mnist; trying a download"; \
	fi
	@$(VENV)/bin/ltdd data --dataset fashion-mnist --json $(VENV)/fashion-mnist-lt.json

demo: data
	bash scripts/demo.sh

test: data $(TEST_STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

bench: data $(TEST_STAMP)
	bash scripts/bench.sh

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
