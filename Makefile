# medsegzoo: every target sets up what it needs (a virtual environment in .venv/).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_output
PYTEST_ARGS ?=

.PHONY: install demo test lint bundles zoo bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(PY) -m medsegzoo.demo --out $(DEMO_OUT)

# pytest exits 5 when it collects nothing: that is a broken test tree, not a pass.
test: $(STAMP)
	@HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff
	$(VENV)/bin/ruff check common tests benchmarks

bundles: $(STAMP)
	$(PY) -m medsegzoo.bundles_check

zoo: $(STAMP)
	$(VENV)/bin/medsegzoo zoo pack --out zoo

bench: $(STAMP)
	MPLBACKEND=Agg $(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) zoo .pytest_cache
