# One-command setup: every target below creates .venv when it is missing.
# torch is installed first and pinned: the CPU wheel 2.13.0 is what this project tests with;
# a looser requirement lets pip pick a multi-GB CUDA build.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test check app bench zoo clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: venv
	$(BIN)/pytest -q

check: venv
	$(BIN)/ruff check kb advisor app tests bench
	$(BIN)/ruff format --check kb advisor app tests bench
	$(BIN)/mypy kb advisor
	$(BIN)/pytest -q -W error::DeprecationWarning

app: venv
	$(BIN)/edgedl app

bench: venv
	$(BIN)/python -m bench.run_all

zoo: venv
	$(BIN)/python data/zoo/build_zoo.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
