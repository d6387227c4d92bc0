# medsegzoo: every target sets up what it needs (a virtual environment in .venv/).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_output
PYTEST_ARGS ?=
# test processes (pytest-xdist; each gets cores/workers threads, tests/conftest.py); 0: one process
PYTEST_WORKERS ?= 2

.PHONY: install demo test lint bundles zoo bench experiments clean

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
	@HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=20 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff
	$(VENV)/bin/ruff check common tests benchmarks

# verify every bundle's metadata against the offline copy of MONAI's schema
bundles: $(STAMP)
	@for b in bundles/*/; do \
	  echo "== $$b"; \
	  $(PY) -m monai.bundle verify_metadata --meta_file $$b/configs/metadata.json \
	    --filepath common/medsegzoo/resources/meta_schema.json || exit 1; \
	done

# pack every bundle (and the medsegzoo wheel) into zoo/; ZOO_URL: where zoo/ will be served
# (needed for weights above the model zoo's 25 MB, and names the wheel in metadata.json)
ZOO_URL ?=
zoo: $(STAMP)
	$(VENV)/bin/medsegzoo zoo pack --out zoo $(if $(ZOO_URL),--base-url $(ZOO_URL))

# speed: ours and the named baseline in one process, ratio printed
bench: $(STAMP)
	MPLBACKEND=Agg $(PY) benchmarks/bench_metrics.py

# phantom experiments of the bundles (CPU minutes each; tables go into the bundle READMEs)
experiments: $(STAMP)
	@for f in benchmarks/*_experiment.py; do echo "== $$f"; MPLBACKEND=Agg HF_HUB_OFFLINE=1 $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) zoo .pytest_cache
