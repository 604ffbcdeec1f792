"""A training run: a JSON-serialisable config in, a run directory out.

    run_dir/config.json      the TrainConfig (written first, so a killed run can resume)
    run_dir/split.json       the indices of `train` held out for validation (data without
                             a `valid` array only): resume, evaluate and report reuse them
    run_dir/checkpoints/     the last completed epoch: weights, optimizer, epoch log (kept
                             until done; see tfvae.checkpointing)
    run_dir/epochs.csv       per-epoch metrics as they happen
    run_dir/best.weights.h5  the weights with the lowest validation loss so far
    run_dir/model.keras      the best model (reload with keras.models.load_model)
    run_dir/history.json     per-epoch metrics (train, valid), the best epoch, test metrics
    run_dir/*.png            prior samples, reconstructions, learning curve

Every file is written under a temporary name and renamed into place (`tfvae.files`).
"""

import dataclasses
import json
import math
import os
import shutil

import keras
import numpy as np

from tfvae import files, memory, objectives
from tfvae.callbacks import AveragedWeights
from tfvae.checkpointing import (
    EPOCH_SECONDS,
    BestWeights,
    EpochCheckpoint,
    ResumableEarlyStopping,
    best_so_far,
    latest_checkpoint,
    stopped_early,
)
from tfvae.data import LIKELIHOOD_FAMILIES, check_image_size, is_image_folder, load_dataset
from tfvae.distributions import (
    LIKELIHOODS,
    BernoulliLikelihood,
    DiscretizedLogisticMixtureLikelihood,
    GaussianLikelihood,
    PixelCNNLikelihood,
)
from tfvae.errors import ConfigError, DataError, RunError
from tfvae.input_pipeline import AUGMENTATIONS, mirrored_batches
from tfvae.models import VAE, Autoencoder, ConditionalVAE, HierarchicalVAE
from tfvae.models.hierarchical import TOP_DOWN
from tfvae.models.vae import OBJECTIVES
from tfvae.networks import ARCHITECTURES
from tfvae.optimizers import Adam
from tfvae.posteriors import POSTERIORS
from tfvae.priors import PRIORS, VampPrior
from tfvae.stopping import StopOnSignal

MODELS = ("vae", "autoencoder", "hierarchical")

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
CHECKPOINT_DIR = "checkpoints"
EPOCH_LOG = "epochs.csv"
BEST_WEIGHTS = "best.weights.h5"
SPLIT_FILE = "split.json"
RUN_FILES = (MODEL_FILE, CONFIG_FILE, HISTORY_FILE)
# Variables (by name) that weight decay leaves alone: shrinking them toward 0 is no
# simplicity prior, since a bias or a likelihood's raw scale has no scale-free zero and
# pseudo-inputs live in the data's space.
NO_WEIGHT_DECAY = ("bias", "pseudo_inputs", "raw_scale")
LEARNING_RATE_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run; `tfvae train`'s flags map onto these fields.

    Args:
      data: a registered dataset name ("digits") or a path to an `.npz` file.
      out: the run directory.
      model: "vae", "hierarchical" (a `HierarchicalVAE` with `latent_dims`), or
        "autoencoder" (the deterministic baseline: no posterior, prior, KL or sampling;
        the VAE-only fields are ignored).
      conditional: train a `ConditionalVAE` on the data's class labels.
      prior: "standard_normal" or "vamp" (a VampPrior with `pseudo_inputs` components).
      epochs, batch_size, learning_rate: the optimisation (Adam).
      lr_schedule: "constant", or "cosine": the learning rate of epoch e (0-based) is
        learning_rate * (1 + cos(pi * e / epochs)) / 2, a half cosine down to nearly 0 at
        the last epoch (SGDR without restarts, Loshchilov & Hutter 2017), set at the start
        of each epoch (`cosine_learning_rate`).
      latent_dim, posterior, likelihood, arch, hidden_units, activation: the model.
      latent_dims: sizes of z_1 ... z_L, bottom first (model "hierarchical" only).
      conditional_layers: hidden layers inside each of the hierarchy's conditionals
        p(z_l | z_{l+1}) and q(z_l | z_{l+1}, x) (model "hierarchical" only; see
        `HierarchicalVAE`).
      top_down: "shared" (the ladder) or "separate": whether the hierarchy's
        q(z_l | z_{l+1}, x) reads p(z_l | z_{l+1})'s top-down state or a network of its
        own (model "hierarchical" only; see `HierarchicalVAE`).
      filters: channels of the convolutions (arch "conv").
      residual_blocks: residual blocks at each resolution of the conv networks (arch "conv").
      dropout: the rate of the dropout after each hidden layer of the MLPs in training
        (arch "mlp" or "gated"; the hierarchy's conditionals too; 0: off).
      decoder_dropout: the decoder's own rate where it differs from `dropout` (None:
        `dropout`), e.g. to regularise p(x|z) alone.
      likelihood_scale: a fixed standard deviation of the Gaussian likelihood (0: learned).
      mixture_components: components of the discretized_logistic_mixture likelihood.
      pixelcnn_filters, pixelcnn_blocks, pixelcnn_dropout: the channels, the gated
        residual blocks and the blocks' dropout rate in training of the
        pixelcnn_logistic_mixture likelihood's masked network (`PixelCNNLikelihood`).
      flow_steps: IAF steps of posterior "iaf".
      num_samples: Monte Carlo samples of z per input.
      objective: "elbo" or "iwae" (the num_samples-sample importance-weighted bound).
      beta, kl_warmup_epochs: the KL weight and its linear warm-up.
      free_bits: a floor (nats) on the batch's mean KL in the training objective (0: off).
      clip_norm: clip the gradients' global norm to this (0: off; Adam's `global_clipnorm`).
      ema_momentum: validate and keep an exponential moving average of the weights with
        this momentum (Polyak averaging, e.g. 0.999; 0: off; `AveragedWeights`).
      weight_decay: decoupled weight decay (AdamW: each step multiplies every kernel by
        1 - learning_rate * weight_decay; biases, pseudo-inputs and learned likelihood
        scales are left alone; 0: off).
      analytic_kl: closed-form KL where it exists.
      patience: stop after this many epochs without a better validation loss (0: never).
      shuffle_window: examples shuffled together when `train` is streamed from TFRecord
        shards (`tfvae.records`; memory holds about three windows); in-memory data are
        shuffled whole.
      image_size: `(height, width)` to resize a folder's images to as they are read
        (empty: they must all have one size; `tfvae.load_dataset`'s `image_size`).
      augment: "none", or "hflip": each training image is flipped left to right with
        probability 1/2 each time it is drawn, as NVAE trains on natural images
        (`input_pipeline.mirrored_batches`; resumed runs draw the same flips). For images
        whose left and right are alike in distribution (photographs, not digits or text),
        given as `[N, height, width(, channels)]` (flat vectors are refused); validation
        and test data are never flipped.
      seed: seeds weights, shuffling and samples; the same seed repeats the run.
    """

    data: str
    out: str
    model: str = "vae"
    conditional: bool = False
    prior: str = "standard_normal"
    pseudo_inputs: int = 500
    epochs: int = 10
    latent_dim: int = 16
    latent_dims: tuple = ()
    conditional_layers: int = 0
    top_down: str = "shared"
    posterior: str = "diagonal"
    flow_steps: int = 2
    likelihood: str = "bernoulli"
    num_samples: int = 1
    objective: str = "elbo"
    batch_size: int = 128
    arch: str = "mlp"
    hidden_units: tuple = (512, 256)
    filters: tuple = (32, 64)
    residual_blocks: int = 0
    dropout: float = 0.0
    decoder_dropout: float = None
    likelihood_scale: float = 0.0
    mixture_components: int = 5
    pixelcnn_filters: int = 64
    pixelcnn_blocks: int = 4
    pixelcnn_dropout: float = 0.0
    activation: str = "relu"
    beta: float = 1.0
    kl_warmup_epochs: int = 0
    free_bits: float = 0.0
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    clip_norm: float = 0.0
    ema_momentum: float = 0.0
    weight_decay: float = 0.0
    analytic_kl: bool = True
    patience: int = 0
    shuffle_window: int = 10_000
    image_size: tuple = ()
    augment: str = "none"
    seed: int = 0

    def __post_init__(self):
        self.hidden_units = tuple(self.hidden_units)
        self.image_size = check_image_size(self.image_size) if self.image_size else ()
        self.filters = tuple(self.filters)
        self.latent_dims = tuple(self.latent_dims)
        if self.model == "hierarchical" and (len(self.latent_dims) < 2 or min(self.latent_dims) <= 0):
            raise ConfigError(
                f"A hierarchical model needs latent_dims with two or more positive sizes, bottom first "
                f"(--latent-dims 40,40); got {self.latent_dims!r}."
            )
        if self.latent_dims and self.model != "hierarchical":
            raise ConfigError("latent_dims (--latent-dims) is for --model hierarchical; use latent_dim otherwise.")
        if not isinstance(self.residual_blocks, int) or self.residual_blocks < 0:
            raise ConfigError(f"residual_blocks must be an integer >= 0; got {self.residual_blocks!r}.")
        if self.residual_blocks and self.arch != "conv":
            raise ConfigError("residual_blocks (--residual-blocks) is for --arch conv.")
        if not isinstance(self.conditional_layers, int) or self.conditional_layers < 0:
            raise ConfigError(f"conditional_layers must be an integer >= 0; got {self.conditional_layers!r}.")
        if self.conditional_layers and self.model != "hierarchical":
            raise ConfigError("conditional_layers (--conditional-layers) is for --model hierarchical.")
        if self.top_down != "shared" and self.model != "hierarchical":
            raise ConfigError("top_down (--top-down) is for --model hierarchical.")
        for name in (
            "epochs",
            "latent_dim",
            "num_samples",
            "batch_size",
            "pseudo_inputs",
            "flow_steps",
            "mixture_components",
            "pixelcnn_filters",
            "pixelcnn_blocks",
            "shuffle_window",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}.")
        posteriors = self.posterior.split(",")
        if any(name not in POSTERIORS for name in posteriors):
            raise ConfigError(
                f"posterior must be one of {POSTERIORS}, or one per layer of a hierarchy (iaf,diagonal); "
                f"got {self.posterior!r}."
            )
        if len(posteriors) > 1 and len(posteriors) != len(self.latent_dims):
            raise ConfigError(
                f"posterior {self.posterior!r} names {len(posteriors)} layers' families; give one, or one per "
                f"layer of --latent-dims {','.join(map(str, self.latent_dims)) or '(none: --model vae)'}."
            )
        choices = {
            "likelihood": LIKELIHOOD_FAMILIES,
            "arch": ARCHITECTURES,
            "objective": OBJECTIVES,
            "model": MODELS,
            "prior": PRIORS,
            "lr_schedule": LEARNING_RATE_SCHEDULES,
            "augment": AUGMENTATIONS,
            "top_down": TOP_DOWN,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}.")
        if self.model == "hierarchical" and self.conditional:
            raise ConfigError("A hierarchical model has no conditional form; leave out --conditional.")
        if self.model == "autoencoder" and (self.conditional or self.prior != "standard_normal"):
            raise ConfigError(
                "An autoencoder has no prior and no conditional form: leave out --conditional "
                "and --prior, or train --model vae."
            )
        if self.conditional and self.prior != "standard_normal":
            raise ConfigError(
                "A conditional VAE takes the standard normal prior only (a VampPrior's "
                "pseudo-inputs have no labels); leave out --prior vamp or --conditional."
            )
        if self.beta < 0 or self.kl_warmup_epochs < 0 or self.patience < 0 or not self.learning_rate > 0:
            raise ConfigError(
                "beta, kl_warmup_epochs and patience must be >= 0 and learning_rate > 0; got "
                f"{self.beta}, {self.kl_warmup_epochs}, {self.patience}, {self.learning_rate}."
            )
        if not (self.clip_norm >= 0 and self.free_bits >= 0 and self.likelihood_scale >= 0 and self.weight_decay >= 0):
            raise ConfigError(
                f"clip_norm, free_bits, likelihood_scale and weight_decay must be >= 0; got {self.clip_norm}, "
                f"{self.free_bits}, {self.likelihood_scale}, {self.weight_decay}."
            )
        rates = {"dropout": self.dropout}
        if self.decoder_dropout is not None:
            rates["decoder_dropout"] = self.decoder_dropout
        for name, rate in rates.items():
            flag = "--" + name.replace("_", "-")
            if not 0 <= rate < 1:
                raise ConfigError(f"{name} ({flag}) must be a rate in [0, 1) (0: off); got {rate}.")
            if rate and self.arch == "conv":
                raise ConfigError(f"{name} ({flag}) is for the MLPs, --arch mlp or gated; got --arch conv.")
        if not 0 <= self.pixelcnn_dropout < 1:
            raise ConfigError(f"pixelcnn_dropout must be a rate in [0, 1) (0: off); got {self.pixelcnn_dropout}.")
        if not 0 <= self.ema_momentum < 1:
            raise ConfigError(
                f"ema_momentum must be in [0, 1) (0: no averaging; 0.999 averages about the last 1000 "
                f"updates); got {self.ema_momentum}."
            )
        if self.likelihood_scale and self.likelihood != "gaussian":
            raise ConfigError(
                "likelihood_scale (--likelihood-scale) fixes a Gaussian likelihood's scale; "
                "add --likelihood gaussian or leave it out."
            )

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        return cls(**values)


@dataclasses.dataclass
class RunResult:
    """What `train` returns: the model, the history dict written to history.json, the run
    dir, and the run's config (for a resumed run, the one read from its config.json)."""

    model: keras.Model
    history: dict
    run_dir: str
    config: TrainConfig


def check_run_dir(out, overwrite):
    """Refuses to write over an existing run unless `overwrite`."""
    existing = [name for name in RUN_FILES if os.path.exists(os.path.join(out, name))]
    if existing and not overwrite:
        unfinished = not os.path.exists(os.path.join(out, MODEL_FILE))
        raise RunError(
            f"{out} already holds a run ({', '.join(existing)}); pass "
            + ("--resume to continue it from its last completed epoch, " if unfinished else "")
            + "--overwrite (overwrite=True) to replace it, or choose another --out."
        )
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunError(f"{out} exists and is not a directory; choose another --out.")


def read_config(run_dir):
    """The `TrainConfig` a run directory records (finished or not)."""
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise RunError(f"{run_dir} holds no {CONFIG_FILE}; give the --out directory of a `tfvae train` run.")
    with open(path, encoding="utf-8") as f:
        return TrainConfig.from_dict(json.load(f))


def resume_config(out, epochs=None):
    """The TrainConfig of the run in `out`, to continue it.

    Args:
      out: the run directory.
      epochs: None to continue an unfinished run as configured; or a new total number of
        epochs, more than the run was configured for, to extend it, finished or not. The
        extended run ends as a run configured with `epochs` from the start would (the
        shuffles, samples and KL warm-up are keyed by the epoch, and a finished run keeps
        its last epoch's checkpoint for this).

    Raises:
      RunError: there is no run, it has finished and `epochs` is None, or it cannot be
        extended (a cosine schedule, a run that stopped early, a finished run without its
        last checkpoint, or `epochs` not above the configured count).
    """
    if not os.path.isfile(os.path.join(out, CONFIG_FILE)):
        raise RunError(f"{out} holds no {CONFIG_FILE}: there is no run to resume; start one without --resume.")
    config = read_config(out)
    done = latest_checkpoint(os.path.join(out, CHECKPOINT_DIR))
    log = done.log if done else []
    finished = os.path.exists(os.path.join(out, MODEL_FILE))
    if epochs is not None and epochs != config.epochs:
        _check_extension(out, config, log, finished and done is None, epochs)
        config = dataclasses.replace(config, epochs=epochs)  # _train writes it to config.json
    # model.keras stays in place while a run is extended (it is replaced at the end), so a
    # run with it is finished only once its log holds every configured epoch.
    if finished and (done is None or len(log) >= config.epochs or stopped_early(log, config.patience)):
        raise RunError(
            f"The run in {out} has finished ({MODEL_FILE} exists); nothing to resume. To train it further, "
            f"give a larger total: --resume --epochs N (more than its {config.epochs})."
        )
    return config


def _check_extension(out, config, log, checkpoint_gone, epochs):
    """Refuses an extension of the run in `out` to `epochs` that could not end as a run
    configured with `epochs` from the start would."""
    if epochs < config.epochs:
        raise RunError(
            f"--epochs {epochs} is fewer than the {config.epochs} the run in {out} was configured for: --resume "
            "extends a run, never shortens it; leave out --epochs, or stop the run when you like (Ctrl-C)."
        )
    if config.lr_schedule != "constant":
        raise RunError(
            f"The run in {out} decays its learning rate over its {config.epochs} epochs (--lr-schedule "
            f"{config.lr_schedule}); more epochs would change the rate of the epochs it has trained. Train a new "
            f"run with --epochs {epochs}, or fine-tune its model.keras."
        )
    if stopped_early(log, config.patience):
        raise RunError(
            f"The run in {out} stopped early at epoch {len(log)}: its validation loss did not improve for "
            f"{config.patience} epochs (--patience), so more epochs would stop at once. Train a new run with a "
            "larger --patience, or fine-tune its model.keras."
        )
    if checkpoint_gone:
        raise RunError(
            f"The run in {out} has finished and holds no {CHECKPOINT_DIR}/ (deleted, or finished by a tfvae "
            "that removed it), so its last epoch's optimizer state is gone and it cannot be extended. Train "
            f"a new run with --epochs {epochs}."
        )


def build_model(config, input_shape, image_shape=None, num_classes=None, statistics=None, grey_levels=None):
    """The model a `TrainConfig` describes, compiled.

    Args:
      config: the `TrainConfig`.
      input_shape, image_shape: of the data's examples.
      num_classes: the data's number of classes (conditional models only).
      statistics: `(loc, scale)` of the training data per dimension: a Gaussian
        likelihood then works in standardised units (`GaussianLikelihood`).
      grey_levels: 256 for 8-bit data past [0, 1]: a Bernoulli likelihood then reads
        x / 255 and answers in levels (`BernoulliLikelihood(num_levels=...)`), so the run's
        model, samples and exports keep the data's range.
    """
    mixture = _mixture(config, input_shape)
    likelihood = config.likelihood if mixture is None else mixture
    if likelihood == "bernoulli" and grey_levels:
        likelihood = BernoulliLikelihood(input_shape, num_levels=grey_levels)
    elif likelihood == "gaussian" and statistics is not None:
        likelihood = GaussianLikelihood(
            input_shape, scale=config.likelihood_scale or None, data_loc=statistics[0], data_scale=statistics[1]
        )
    networks = dict(
        input_shape=input_shape,
        latent_dim=config.latent_dim,
        likelihood=likelihood,
        likelihood_scale=config.likelihood_scale or None,
        arch=config.arch,
        hidden_units=config.hidden_units,
        filters=config.filters,
        activation=config.activation,
        image_shape=image_shape,
        residual_blocks=config.residual_blocks,
        dropout=config.dropout,
        decoder_dropout=config.decoder_dropout,
    )
    if config.model == "autoencoder":
        model = Autoencoder(**networks)
    else:
        vae_options = dict(
            posterior=config.posterior if "," not in config.posterior else tuple(config.posterior.split(",")),
            flow_steps=config.flow_steps,
            free_bits=config.free_bits,
            prior=VampPrior(config.latent_dim, config.pseudo_inputs) if config.prior == "vamp" else None,
            num_samples=config.num_samples,
            objective=config.objective,
            analytic_kl=config.analytic_kl,
            beta=config.beta,
            kl_warmup_epochs=config.kl_warmup_epochs,
            seed=config.seed,
        )
        if config.model == "hierarchical":
            vae_options["prior"] = (
                VampPrior(config.latent_dims[-1], config.pseudo_inputs) if config.prior == "vamp" else None
            )
            networks.pop("latent_dim")
            model = HierarchicalVAE(
                latent_dims=config.latent_dims,
                conditional_layers=config.conditional_layers,
                top_down=config.top_down,
                **networks,
                **vae_options,
            )
        elif config.conditional:
            model = ConditionalVAE(num_classes=num_classes, **networks, **vae_options)
        else:
            model = VAE(**networks, **vae_options)
    model.compile(
        optimizer=Adam(
            config.learning_rate,
            global_clipnorm=config.clip_norm or None,
            use_ema=config.ema_momentum > 0,
            ema_momentum=config.ema_momentum,
            weight_decay=config.weight_decay or None,
            exclude=NO_WEIGHT_DECAY,
        )
    )
    return model


def load_splits(config):
    """The run's data, with labels checked when the model is conditional.

    A run on data without a `valid` array holds validation examples out of `train`
    (seeded by `config.seed`) and records them in its split.json; once recorded,
    exactly those examples are held out again (on resume, evaluate and report).
    """
    recorded = _recorded_split(config.out)
    splits = load_dataset(
        config.data,
        likelihood=config.likelihood,
        seed=config.seed,
        held_out=_held_out(recorded),
        image_size=config.image_size or None,
    )
    _check_same_train(recorded, config.out, splits)
    if config.conditional:
        splits.require_labels()
    return splits


def build_model_for(config, splits):
    """`build_model` for the data in `splits` (a Gaussian likelihood standardised by the
    training split's statistics, so it answers in the data's units)."""
    num_classes = splits.num_classes if config.conditional else None
    statistics = splits.train_statistics() if config.likelihood == "gaussian" else None
    grey_levels = splits.grey_levels if config.likelihood == "bernoulli" else None
    return build_model(config, splits.example_shape, splits.image_shape, num_classes, statistics, grey_levels)


def _mixture(config, input_shape):
    """The run's mixture likelihood layer with its `mixture_components`, or None when the
    run's likelihood is no mixture."""
    family = LIKELIHOODS[config.likelihood]
    if not issubclass(family, DiscretizedLogisticMixtureLikelihood):
        return None
    if issubclass(family, PixelCNNLikelihood):
        return family(
            input_shape,
            num_components=config.mixture_components,
            filters=config.pixelcnn_filters,
            num_blocks=config.pixelcnn_blocks,
            dropout=config.pixelcnn_dropout,
        )
    return family(input_shape, num_components=config.mixture_components)


def _check_fits_in_memory(config, splits):
    """Refuses, before anything is built, a model that cannot fit in this machine's memory."""
    latent = sum(config.latent_dims) if config.latent_dims else config.latent_dim
    mixture = _mixture(config, splits.example_shape)  # a mixture's count is set per instance
    per_dimension = (LIKELIHOODS[config.likelihood] if mixture is None else mixture).params_per_dimension
    needed = memory.training_bytes(
        splits.example_shape,
        latent,
        config.hidden_units,
        config.batch_size,
        config.num_samples,
        config.pseudo_inputs if config.prior == "vamp" else 0,
        per_dimension,
    )
    memory.require(
        needed,
        f"Training this model ({config.arch} {list(config.hidden_units)}, latent {latent}, "
        f"batch {config.batch_size} x {config.num_samples} samples, examples of shape "
        f"{list(splits.example_shape)})",
        "use smaller --hidden-units, --latent-dim, --batch-size, --num-samples or --pseudo-inputs",
    )


def cosine_learning_rate(learning_rate, epochs):
    """The cosine schedule as `keras.callbacks.LearningRateScheduler` takes it: a function
    of the 0-based epoch giving learning_rate * (1 + cos(pi * epoch / epochs)) / 2.

    Set per epoch from the epoch's index alone, so a resumed run (which starts at its
    next epoch) follows the uninterrupted one's rates exactly.
    """
    return lambda epoch, _: learning_rate * (1 + math.cos(math.pi * epoch / epochs)) / 2


def _write_epoch_log(path, log):
    """`epochs.csv`: the per-epoch metrics so far, for people and spreadsheets."""
    names = sorted({name for row in log for name in row})
    lines = [",".join(["epoch", *names])]
    lines += [",".join([str(epoch), *(repr(row.get(name, "")) for name in names)]) for epoch, row in enumerate(log)]
    files.write_text(path, "\n".join(lines) + "\n")


class _EpochLogWriter(keras.callbacks.Callback):
    """Rewrites epochs.csv from the checkpoint's log after each epoch."""

    def __init__(self, path, checkpoint):
        super().__init__()
        self.path, self.checkpoint = path, checkpoint

    def on_epoch_end(self, epoch, logs=None):
        _write_epoch_log(self.path, self.checkpoint.log)


def _split_history(epoch_log):
    """history.json's layout of a checkpoint's log: each split's metrics per epoch, the
    epochs' wall times and their sum, `train_seconds` (None when a row has no time)."""
    history = {"epochs": len(epoch_log), "train": {}, "valid": {}, "epoch_seconds": []}
    for row in epoch_log:
        row = dict(row)
        history["epoch_seconds"].append(row.pop(EPOCH_SECONDS, None))
        for key, value in row.items():
            split, name = ("valid", key[4:]) if key.startswith("val_") else ("train", key)
            history[split].setdefault(name, []).append(value)
    seconds = history["epoch_seconds"]
    history["train_seconds"] = None if None in seconds else sum(seconds)
    if history["valid"].get("loss"):
        history["best_epoch"] = int(min(range(history["epochs"]), key=history["valid"]["loss"].__getitem__)) + 1
    return history


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def _bits_per_dim_history(history, dimensions):
    """The loss (negative ELBO or IWAE bound) of each split in bits per dimension."""
    per_split = {
        split: [objectives.bits_per_dim(v, dimensions) for v in history[split]["loss"]] for split in ("train", "valid")
    }
    if "test" in history:
        per_split["test"] = objectives.bits_per_dim(history["test"]["loss"], dimensions)
    return per_split


def _held_out(recorded):
    """The indices of `train` a run held out as validation examples (its split.json,
    `recorded`), or None."""
    return None if recorded is None else np.asarray(recorded["held_out"], dtype=np.int64)


def _recorded_split(run_dir):
    """A run's split.json, or None."""
    path = os.path.join(run_dir, SPLIT_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _check_same_train(recorded, run_dir, splits):
    """Raises a DataError when the data's `train` is not the one the run in `run_dir` held
    its validation examples out of (`recorded`, its split.json): the recorded indices would
    pick other examples, some of which the run trained on."""
    if recorded is None or splits.held_out is None:
        return
    found = {"train_examples": len(splits.train) + len(splits.held_out), "train_sha256": splits.train_fingerprint}
    changed = [key for key, value in found.items() if key in recorded and recorded[key] != value]
    if changed:
        raise DataError(
            f"{splits.name}: its training examples changed since the run in {run_dir} was trained "
            f"({', '.join(f'{key} {recorded[key]} then, {found[key]} now' for key in changed)}), so the "
            "validation examples the run held out cannot be found again. Evaluate on the data as trained "
            "on, or on a file with its own 'valid' array."
        )


def _record_split(config, splits):
    if splits.held_out is not None:
        files.write_json(
            os.path.join(config.out, SPLIT_FILE),
            {
                "data": config.data,
                "train_examples": len(splits.train) + len(splits.held_out),
                "train_sha256": splits.train_fingerprint,
                "held_out": splits.held_out.tolist(),
            },
        )


def _diverged(config, checkpoint, epoch, logs):
    name = (
        "loss" if not math.isfinite(logs.get("loss", 0.0)) else next(n for n, v in logs.items() if not math.isfinite(v))
    )
    bad = f"{name} {logs[name]}"
    kept = (
        f"its last finite state (epoch {checkpoint.epochs}) is kept in {os.path.join(config.out, CHECKPOINT_DIR)}"
        if checkpoint
        else "no epoch finished with finite values"
    )
    return RunError(
        f"Training diverged in epoch {epoch + 1} ({bad}); no model.keras was written and {kept}. "
        f"Start again with a smaller learning rate (now {config.learning_rate:g}) or beta (now {config.beta:g}), "
        "or check the data for extreme values."
    )


def train(config, overwrite=False, resume=False, verbose=1, pictures=True, epochs=None):
    """Trains the model `config` describes and writes the run directory.

    Every epoch is checkpointed (`tfvae.checkpointing`); a run stopped part-way
    (Ctrl-C, SIGTERM, `kill -9`, a crash) continues with `resume=True` from its last
    completed epoch and ends with the same weights as an uninterrupted run. Every file
    is written under a temporary name and renamed into place, so a kill at any instant
    leaves a resumable run. `model.keras` holds the best model by validation loss;
    with `config.patience`, training stops early when validation loss stalls. A run
    whose metrics become NaN or infinite stops with a `RunError`, keeping its last
    finite checkpoint and writing no model.

    Args:
      config: a `TrainConfig` (with `resume`, only `config.out` is read: the run's own
        config.json says the rest).
      overwrite: replace an existing run in `config.out`.
      resume: continue the unfinished run in `config.out`.
      epochs: with `resume`, a new total number of epochs (more than the run's) to
        extend the run, finished or not, to; it ends as a run trained for `epochs` from
        the start would (`resume_config`).
      verbose: Keras' verbosity (1 shows the progress bar).
      pictures: also write samples.png, reconstructions.png and learning_curve.png.

    Returns:
      `RunResult`.
    """
    if resume:
        config = resume_config(config.out, epochs)
    elif epochs is not None:
        raise ConfigError("epochs= extends a run with resume=True; a new run takes TrainConfig(epochs=...).")
    else:
        check_run_dir(config.out, overwrite)
    with files.exclusive(config.out, "`tfvae train`"):
        return _train(config, resume, verbose, pictures)


def _check_augmentation(config, splits):
    # Flat vectors are refused even where their length is a square: a table of 16 columns
    # would otherwise be flipped as 4×4 pictures.
    if config.augment == "hflip" and (splits.image_shape is None or len(splits.example_shape) < 2):
        raise ConfigError(
            f"--augment hflip flips images left to right, but {config.data} holds examples of shape "
            f"{splits.example_shape}, which are no images; leave out --augment, or give images as images: "
            "[N, height, width] or [N, height, width, channels], or a folder of them."
        )


def _train(config, resume, verbose, pictures):
    if not resume:
        for stale in (CHECKPOINT_DIR, EPOCH_LOG, BEST_WEIGHTS, MODEL_FILE, HISTORY_FILE, SPLIT_FILE):
            _remove(os.path.join(config.out, stale))
    splits = load_splits(config)
    _check_fits_in_memory(config, splits)
    _check_augmentation(config, splits)
    os.makedirs(config.out, exist_ok=True)
    files.remove_stale_temporaries(config.out)
    files.write_json(os.path.join(config.out, CONFIG_FILE), config.to_dict())
    _record_split(config, splits)
    keras.utils.set_random_seed(config.seed)
    model = build_model_for(config, splits)
    checkpoint_dir = os.path.join(config.out, CHECKPOINT_DIR)
    done = latest_checkpoint(checkpoint_dir) if resume else None
    log = done.log if done else []
    if done:
        done.restore(model)
    labels = splits.labels if config.conditional else {}
    batches, shuffle_callback = splits.train_batches(
        config.batch_size, config.seed, labels=config.conditional, window=config.shuffle_window
    )
    if config.augment == "hflip":
        batches = mirrored_batches(batches, splits.image_shape, shuffle_callback, config.seed)
    checkpointing = EpochCheckpoint(checkpoint_dir, log)
    callbacks = [
        # First, so that the epoch's rate is set before any other callback runs and its
        # logged `learning_rate` reaches the checkpoint's log.
        *(
            [keras.callbacks.LearningRateScheduler(cosine_learning_rate(config.learning_rate, config.epochs))]
            if config.lr_schedule == "cosine"
            else []
        ),
        shuffle_callback,
        BestWeights(os.path.join(config.out, BEST_WEIGHTS), (best_so_far(log) or (math.inf,))[0]),
        checkpointing,
        _EpochLogWriter(os.path.join(config.out, EPOCH_LOG), checkpointing),
        keras.callbacks.TerminateOnNaN(),  # ends a diverged epoch at once; EpochCheckpoint reports it
        AveragedWeights(),  # validation judges the weights' average where the optimizer keeps one
    ]
    if config.patience:
        callbacks.append(ResumableEarlyStopping(config.patience, log))
    stop = StopOnSignal()
    if len(log) < config.epochs and not stopped_early(log, config.patience):
        with stop.installed():
            model.fit(
                batches,
                epochs=config.epochs,
                initial_epoch=len(log),
                validation_data=(splits.valid, labels["valid"]) if config.conditional else (splits.valid,),
                validation_batch_size=config.batch_size,
                callbacks=[*callbacks, stop],
                shuffle=False,  # the batches are shuffled by (seed, epoch) already
                check_batches=False,  # checked when loaded
                verbose=verbose,
            )
    if checkpointing.diverged:
        raise _diverged(config, latest_checkpoint(checkpoint_dir), *checkpointing.diverged)
    model.load_weights(os.path.join(config.out, BEST_WEIGHTS))
    history = _split_history(checkpointing.log)
    history["valid_source"] = splits.valid_source
    if splits.test is not None:
        history["test"] = {
            name: float(value)
            for name, value in model.evaluate(
                splits.test, labels.get("test"), batch_size=config.batch_size, verbose=0, return_dict=True
            ).items()
        }
    # An autoencoder's loss, -log p(x | code), pays nothing for the code: no bits per
    # dimension of x. Nor are there any where log p(x|z) is no probability of these data.
    held = [split for split in (splits.train, splits.valid, splits.test) if isinstance(split, np.ndarray)]
    if model.has_prior and all(model.likelihood_layer.likelihood_of_data(split) == "probability" for split in held):
        history["bits_per_dim"] = _bits_per_dim_history(history, math.prod(splits.example_shape))
    files.write_json(os.path.join(config.out, HISTORY_FILE), history)
    # model.keras last: its presence marks the run finished. The last epoch's checkpoint
    # stays, so that `resume_config(out, epochs)` can extend the run.
    with files.atomic_path(os.path.join(config.out, MODEL_FILE)) as temporary:
        model.save(temporary)
    if pictures:
        from tfvae import plots

        plots.save_run_pictures(model, splits.valid, history, config.out, seed=config.seed, labels=labels.get("valid"))
    return RunResult(model=model, history=history, run_dir=config.out, config=config)


def epoch_history(run_dir):
    """The per-epoch history (history.json's layout, without test metrics) of an unfinished
    run, from its newest checkpoint; empty when no epoch has finished."""
    done = latest_checkpoint(os.path.join(run_dir, CHECKPOINT_DIR))
    return _split_history(done.log if done else [])


def same_data(a, b):
    """Whether two `data` arguments name the same dataset (the same name, or the same file)."""
    if a == b:
        return True
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def load_run_data(run_dir, data=None, likelihood=None):
    """The data to evaluate a run on, with the run's own validation examples.

    Args:
      run_dir: a run directory written by `train`.
      data: a dataset name or `.npz` path; None for the data the run was trained on.
      likelihood: the model's likelihood family (checks the values' range); None for
        the run's own.

    Returns:
      `DataSplits`. For the run's own data without a `valid` array, `valid` holds exactly
      the examples the run held out of training (split.json). For other data without a
      `valid` array, `valid` is None: a fresh hold-out would overlap the run's training
      examples.
    """
    config_path = os.path.join(run_dir, CONFIG_FILE)
    config = None
    if os.path.isfile(config_path):
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    if data is None:
        if config is None:
            raise RunError(f"{run_dir} holds no {CONFIG_FILE}, so its training data are unknown; pass --data.")
        data = config["data"]
    likelihood = likelihood or (config or {}).get("likelihood", "bernoulli")
    # Images are read at the size the model was trained on, from whichever folder.
    image_size = (config or {}).get("image_size") or None if is_image_folder(data) else None
    if config is None or not same_data(data, config["data"]):
        # Nothing is held out: `train` is the file's whole train, in its order (a table's
        # row i is example i, however few rows it has).
        splits = load_dataset(data, likelihood=likelihood, image_size=image_size, validation_fraction=0)
        if splits.valid is not None:
            return splits
        return dataclasses.replace(
            splits,
            valid_source=f"{data} has no 'valid' array, and examples held out of its 'train' now could "
            f"be ones the run in {run_dir} trained on",
        )
    recorded = _recorded_split(run_dir)
    # Runs from before split.json held out with their own seed, which this repeats.
    splits = load_dataset(
        data, likelihood=likelihood, seed=config["seed"], held_out=_held_out(recorded), image_size=image_size
    )
    _check_same_train(recorded, run_dir, splits)
    return splits


def load_run(run_dir):
    """The model saved in a run directory."""
    path = os.path.join(run_dir, MODEL_FILE)
    if not os.path.isfile(path):
        raise RunError(f"{run_dir} holds no {MODEL_FILE}; give the --out directory of a finished `tfvae train`.")
    try:
        return keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for a damaged or foreign file
        raise RunError(
            f"{path} cannot be loaded as a tfvae model ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no detail'}); retrain or restore the run."
        ) from error
