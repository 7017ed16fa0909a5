# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
# torch is pinned to the CPU wheel that lies on this machine's disk; the library itself
# accepts torch>=2.1,<3 (see pyproject.toml).
TORCH_PIN ?= torch==2.13.0

.PHONY: setup test demo lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e '.[test,dna,io]' $(TORCH_PIN)
	touch $@

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 tests

demo: setup
	$(BIN)/neuron-importance demo --out demo-output

bench: setup
	$(BIN)/python benchmarks/attribution.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
