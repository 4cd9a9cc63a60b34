# braid: `make demo` (the lab demo) and `make test` (lint, types, tests) on a fresh
# Debian machine as root. Both install what they need first.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint check-types unit bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

demo: setup
	$(PY) -m braid lab demo

test: setup lint
	$(PY) -m pytest -q -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check src tests bench fuzz
	$(VENV)/bin/ruff format --check src tests bench fuzz
	$(VENV)/bin/mypy

unit: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/core tests/control

bench: setup
	flock /tmp/braid-lab.lock $(PY) bench/run.py

clean:
	-$(PY) -m braid lab clean
	rm -rf build *.egg-info src/*.egg-info
