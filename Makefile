# Two entry points for a fresh clone: `make run` (serve on the embedded database) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: run test setup test-setup vendor bench clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	touch $(STAMP)

static/vendor/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	$(PYTHON) scripts/vendor.py
	touch static/vendor/.stamp

setup: $(STAMP) static/vendor/.stamp

run: setup
	$(VENV)/bin/bastion serve

test-setup: setup
	bash scripts/system-deps.sh

test: test-setup
	$(PY) -m pytest -q tests

bench: test-setup
	$(PY) tests/perf/bench_terminal.py
	$(PY) tests/perf/bench_keystroke.py
	$(PY) tests/perf/bench_hub.py
	$(PY) tests/perf/bench_modules.py
	$(PY) tests/perf/bench_multinode.py

clean:
	rm -rf $(VENV) node_modules static/vendor
