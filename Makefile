# Two entry points for a fresh clone: `make run` (serve on the embedded database) and `make test`.
# `make run` installs only what serving needs (`pip install -e .`); `make test` adds the test extra.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
VENV_STAMP := $(VENV)/.created
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test setup run-setup test-setup vendor bench clean

$(VENV_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	touch $(VENV_STAMP)

$(RUN_STAMP): setup.py $(VENV_STAMP)
	$(PIP) install --quiet -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): setup.py $(RUN_STAMP)
	$(PIP) install --quiet -e '.[test]'
	touch $(TEST_STAMP)

static/vendor/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	$(PYTHON) scripts/vendor.py
	touch static/vendor/.stamp

vendor: static/vendor/.stamp

# what serving needs: Bastion, its runtime dependencies and the front-end files
run-setup: $(RUN_STAMP) vendor

# a development environment: the above plus the test extra
setup: $(TEST_STAMP) vendor

run: run-setup
	$(VENV)/bin/bastion serve

test-setup: setup
	bash scripts/system-deps.sh

test: test-setup
	$(PY) -m pytest -q tests

bench: test-setup
	$(PY) tests/perf/bench_terminal.py
	$(PY) tests/perf/bench_keystroke.py
	$(PY) tests/perf/bench_gateway.py
	$(PY) tests/perf/bench_hub.py
	$(PY) tests/perf/bench_modules.py
	$(PY) tests/perf/bench_multinode.py
	$(PY) tests/perf/bench_fleet.py

clean:
	rm -rf $(VENV) node_modules static/vendor
