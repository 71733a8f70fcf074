# sned: make demo | make test | make test-all | make bench
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sned-installed

.PHONY: demo test test-all bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch 2.13.0 lies on this disk; a plain `torch` would pull a multi-GB CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,vae]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sned-search --budget-ms 200 --res 128

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	# The cluster extra (ray job server, Ray Serve) for the submission and Serve tests; nni pins
	# filelock<3.12, which ray[default]'s virtualenv outgrows, so it goes in after the project.
	$(BIN)/python -c "import ray.dashboard.modules.job.sdk, grpc_reflection" 2>/dev/null || $(BIN)/python -m pip install -q "ray[default,serve]==$$($(BIN)/python -c 'import ray; print(ray.__version__)')"
	$(BIN)/python -m pytest -q -m "not gpu"

bench: $(STAMP)
	for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs build *.egg-info
