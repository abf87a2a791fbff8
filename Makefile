# Every target bootstraps .venv itself, so a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Lint only the project's own files: in a git checkout, the Python files git tracks
# (an untracked scratch file must not fail `make check`; a deleted one is skipped);
# elsewhere (an unpacked sdist), the package, test, example and benchmark folders.
GIT_PY := $(shell git ls-files -- '*.py' 2>/dev/null)
PY_FILES := $(if $(GIT_PY),$(wildcard $(GIT_PY)),$(wildcard zephyr_* tests examples benchmarks))
PACKAGES := $(if $(GIT_PY),$(sort $(filter-out %.py,$(foreach f,$(filter zephyr_%,$(GIT_PY)),$(firstword $(subst /, ,$(f)))))),$(patsubst %/__init__.py,%,$(wildcard zephyr_*/__init__.py)))

.PHONY: demo test check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

# The example shop calls examples/inventory through a load balancer; `zephyr up` starts it.
DEMO_SERVICES ?= {"inventory": [{"url": "http://127.0.0.1:8001", "app": "examples.inventory.app:app"}]}

demo: $(STAMP)
	SERVICE_REGISTRY='$(DEMO_SERVICES)' $(BIN)/zephyr up --app examples.shop.app:app -A examples.shop.jobs

check: $(STAMP)
	@echo "ruff check, ruff format --check: $(words $(PY_FILES)) files; mypy: $(PACKAGES)"
	@$(BIN)/ruff check --force-exclude $(PY_FILES)
	@$(BIN)/ruff format --check --force-exclude $(PY_FILES)
	$(BIN)/mypy $(PACKAGES)

test: check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .zephyr .mypy_cache .ruff_cache .pytest_cache
