# Every target bootstraps itself: on a fresh clone `make test` creates .venv and installs
# the project with its dev extras first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8765
# Not AS: GNU make predefines AS (the assembler), so `AS ?= maya` would never apply.
PERSONA ?= maya
POLICY  ?= default

.PHONY: install test lint serve demo bench clean mutate

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

serve: $(STAMP)
	$(BIN)/agechat server --data-dir .data/relay --host $(HOST) --port $(PORT)

demo: $(STAMP)
	$(BIN)/agechat demo --as $(PERSONA) --policy $(POLICY)

bench: $(STAMP)
	$(BIN)/python bench/relay_throughput.py

# Mutation testing of the safety-critical modules (docs/TESTING.md), one module at a time in
# a scratch copy, each against the tests that guard it; not part of `test`.
# `make mutate MUTATE="policy ratchet"` picks modules; MUTATE_ARGS="--jobs 1 --timeout 300".
MUTATE      ?=
MUTATE_ARGS ?=
mutate: $(STAMP)
	$(BIN)/python tools/mutate.py $(MUTATE) $(MUTATE_ARGS)

clean:
	rm -rf $(VENV) .data .pytest_cache .ruff_cache
