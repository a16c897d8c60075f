# Two entry points: `make demo` (the simulated compound and the gateway) and `make test`.
# Both build a local virtualenv from pyproject.toml; `make test` also installs the
# system tools the tests drive (mosquitto, promtool) with apt where they are missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint typecheck bench system-deps clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,broker,camera]'
	touch $@

system-deps:
	sh scripts/install-system-deps

demo: $(VENV)/.installed
	$(VENV)/bin/compound-gateway demo

test: $(VENV)/.installed system-deps
	$(PY) -m ruff check gateway drivers simulators tests benchmarks
	$(PY) -m mypy
	$(PY) -m pytest

bench: $(VENV)/.installed system-deps
	$(PY) benchmarks/heat_detector_throughput.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
