# `make run` and `make test` set everything up on a fresh machine: .venv from the exact lock.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench clean-venv

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# The embedded benchmark (tiny-clip on mnist-lt), headless, then the paper-style table.
run: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/lvmbench demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/lvmbench bench

clean-venv:
	rm -rf $(VENV)
