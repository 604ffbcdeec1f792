# `make demo` and `make test` set everything up on a fresh machine: a virtual
# environment in .venv, the package (editable) and its test extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tfvae-installed
DEMO_DIR ?= runs/demo

.PHONY: install demo test clean

install: $(STAMP)

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/tfvae train --data digits --epochs 60 --latent-dim 8 --hidden-units 256,128 \
		--batch-size 64 --kl-warmup-epochs 5 --seed 0 --out $(DEMO_DIR) --overwrite
	$(BIN)/tfvae sample $(DEMO_DIR) --n 64 --seed 1 --out $(DEMO_DIR)/samples_seed1.png
	@echo "Pictures: $(DEMO_DIR)/samples.png $(DEMO_DIR)/reconstructions.png $(DEMO_DIR)/learning_curve.png"

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf runs exported/* .pytest_cache
