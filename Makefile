# Set-up, demo, tests and the UI. Every target installs what it needs into .venv/ first.
VENV := .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
export DAGSTER_HOME := $(abspath dagster_home)
DEMO_DIR := demo_data

.PHONY: install demo test lint eval bench stress dev validate clean

install: $(INSTALLED)

# torch==2.13.0 first: it resolves to the CPU wheel on this machine, and anything else pulls
# the newest CUDA build (several GB).
$(INSTALLED): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet torch==2.13.0
	$(PYTHON) -m pip install --quiet -e ".[test]"
	touch $@

demo: $(INSTALLED)
	$(VENV)/bin/dedup-pipeline demo --dir $(DEMO_DIR)

test: $(INSTALLED)
	$(VENV)/bin/pytest -q

lint: $(INSTALLED)
	$(VENV)/bin/ruff check dedup_pipeline tests
	$(VENV)/bin/ruff format --check dedup_pipeline tests

# Accuracy evaluation on ../shared (CIFAR-10 + ciFAIR, transformation suite): writes eval/results.md.
eval: $(INSTALLED)
	$(VENV)/bin/python -m dedup_pipeline.evaluation --shared ../shared --work build/eval --out eval

# Speed and memory benchmarks on ../shared (CIFAR-10) and synthetic data, with imagededup and fastdup
# measured side by side in their own venvs: writes bench/results.md and bench/results.json. About 35 minutes
# (the first run also builds a 2 GB corpus of camera-sized photos under build/bench/photos).
bench: $(INSTALLED)
	$(VENV)/bin/python -m dedup_pipeline.benchmarks --shared ../shared --work build/bench --out bench

# Kill-and-resume and concurrent runs on a few thousand CIFAR-10 images from ../shared: writes
# stress/results.md. About 20 minutes. Not part of `make test`.
stress: $(INSTALLED)
	$(VENV)/bin/python -m dedup_pipeline.stress --shared ../shared --work build/stress --out stress

validate: $(INSTALLED)
	$(VENV)/bin/dagster definitions validate -w workspace.yaml

dev: $(INSTALLED)
	DEDUP_DATA=$(abspath $(DEMO_DIR))/images DEDUP_DB=$(abspath $(DEMO_DIR))/demo.duckdb \
		$(VENV)/bin/dagster dev -w workspace.yaml

clean:
	rm -rf $(VENV) $(DEMO_DIR) dedup.duckdb
