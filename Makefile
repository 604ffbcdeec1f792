# `make demo` and `make test` set everything up on a fresh machine: a virtual
# environment in .venv, the package (editable) and its test extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tfvae-installed
DEMO_DIR ?= runs/demo

.PHONY: install demo test bench-nll bench-nll-iwae bench-serve bench-train clean

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

# Test NLL of the literature's VAE on binarised MNIST (hours on 2 cores; resumable with
# BENCH_ARGS=--resume). Writes bench/results/vae_standard_normal.json / vae_iwae5.json.
bench-nll: install
	$(BIN)/python bench/nll_bench.py $(BENCH_ARGS)

bench-nll-iwae: install
	$(BIN)/python bench/nll_bench.py --name vae_iwae5 --objective iwae --num-samples 5 $(BENCH_ARGS)

KSERVE_VENV := bench/.venv-kserve

$(KSERVE_VENV)/.installed:
	$(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install --quiet "kserve==0.21.0" "onnxruntime==1.32.0"
	touch $@

# Serving throughput and latency against kserve's model server (writes bench/results/serving.json).
bench-serve: install $(KSERVE_VENV)/.installed
	command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python bench/serve_bench.py

TORCH_VENV := bench/.venv-torch

$(TORCH_VENV)/.installed:
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet "torch==2.13.0" numpy
	touch $@

# Training throughput against the three baselines (writes bench/results/train.json).
bench-train: install $(TORCH_VENV)/.installed
	$(BIN)/python bench/train_bench.py

clean:
	rm -rf runs exported/* .pytest_cache
