# The two commands: `make run` (embedded default, no services needed) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test lint bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/orthovault serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The OHIF viewer build the browser test drives (cached under .cache/ohif, fetched once).
.PHONY: ohif
ohif:
	infra/ohif/install.sh >/dev/null
test: ohif

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python tests/bench/run.py $(BENCH)

clean:
	rm -rf $(VENV) .pytest_cache
