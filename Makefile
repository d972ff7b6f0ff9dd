# The commands README names. PYTHON must be a Python 3.11 interpreter.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PLATFORM_HOME ?= $(CURDIR)/.platform_home

.PHONY: demo test install lint materialize ui clean

$(BIN)/activate: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip check
	touch $(BIN)/activate

install: $(BIN)/activate

## make demo: install, materialize the whole graph on the synthetic default, then serve the UI.
demo: install materialize ui

materialize: install
	$(BIN)/python -m platform_assets.demo

ui: install
	@echo "Dagster UI: http://127.0.0.1:3000  (Ctrl-C to stop)"
	DAGSTER_HOME=$(PLATFORM_HOME)/dagster $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## make test: install if needed, then the whole suite (slow tests included).
test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(PLATFORM_HOME)
