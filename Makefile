# catsdogs: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
OUT ?= out

.DEFAULT_GOAL := help
.PHONY: help install test test-fast lint format bench accuracy run compile submit-pipeline schedule images image-test clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

install: ## Create .venv and install the package with its dev tools (pinned)
	@command -v $(PYTHON) >/dev/null || { echo "Error: $(PYTHON) not found; set PYTHON=python3.x (3.11 or 3.12)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"

test: ## Run the test suite (what CI runs)
	$(BIN)/pytest -q

test-fast: ## Run the tests without the slow end-to-end tier
	$(BIN)/pytest -q -m "not slow"

lint: ## Ruff (lint + format check), mypy, hadolint on the Dockerfile
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint images/Dockerfile

format: ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## Remove build and run outputs
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache $(OUT)
