"""A training run: a JSON-serialisable config in, a run directory out.

    run_dir/config.json      the TrainConfig (written first, so a killed run can resume)
    run_dir/checkpoints/     the last completed epoch: weights, optimizer, epoch (kept until done)
    run_dir/epochs.csv       per-epoch metrics as they happen (appended across resumes)
    run_dir/best.weights.h5  the weights with the lowest validation loss so far
    run_dir/model.keras      the best model (reload with keras.models.load_model)
    run_dir/history.json     per-epoch metrics (train, valid), the best epoch, test metrics
    run_dir/*.png            prior samples, reconstructions, learning curve
"""
import csv
import dataclasses
import json
import math
import os
import shutil
import time

import keras

from tfvae.data import LIKELIHOOD_FAMILIES, load_dataset
from tfvae.distributions import COVARIANCES
from tfvae.errors import ConfigError, RunError
from tfvae.input_pipeline import shuffled_batches
from tfvae.models import VAE, Autoencoder, ConditionalVAE
from tfvae.models.vae import OBJECTIVES
from tfvae.networks import ARCHITECTURES
from tfvae.priors import PRIORS, VampPrior
from tfvae.stopping import StopOnSignal

MODELS = ("vae", "autoencoder")

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
CHECKPOINT_DIR = "checkpoints"
EPOCH_LOG = "epochs.csv"
BEST_WEIGHTS = "best.weights.h5"
RUN_FILES = (MODEL_FILE, CONFIG_FILE, HISTORY_FILE)


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run; `tfvae train`'s flags map onto these fields.

    Args:
      data: a registered dataset name ("digits") or a path to an `.npz` file.
      out: the run directory.
      model: "vae", or "autoencoder" (the deterministic baseline: no posterior, prior,
        KL or sampling; the VAE-only fields are ignored).
      conditional: train a `ConditionalVAE` on the data's class labels.
      prior: "standard_normal" or "vamp" (a VampPrior with `pseudo_inputs` components).
      epochs, batch_size, learning_rate: the optimisation (Adam).
      latent_dim, posterior, likelihood, arch, hidden_units, activation: the model.
      num_samples: Monte Carlo samples of z per input.
      objective: "elbo" or "iwae" (the num_samples-sample importance-weighted bound).
      beta, kl_warmup_epochs: the KL weight and its linear warm-up.
      analytic_kl: closed-form KL where it exists.
      patience: stop after this many epochs without a better validation loss (0: never).
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
    posterior: str = "diagonal"
    likelihood: str = "bernoulli"
    num_samples: int = 1
    objective: str = "elbo"
    batch_size: int = 128
    arch: str = "mlp"
    hidden_units: tuple = (512, 256)
    activation: str = "relu"
    beta: float = 1.0
    kl_warmup_epochs: int = 0
    learning_rate: float = 1e-3
    analytic_kl: bool = True
    patience: int = 0
    seed: int = 0

    def __post_init__(self):
        self.hidden_units = tuple(self.hidden_units)
        for name in ("epochs", "latent_dim", "num_samples", "batch_size", "pseudo_inputs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}.")
        choices = {"posterior": COVARIANCES, "likelihood": LIKELIHOOD_FAMILIES, "arch": ARCHITECTURES,
                   "objective": OBJECTIVES, "model": MODELS, "prior": PRIORS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}; got {getattr(self, name)!r}.")
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


def resume_config(out):
    """The TrainConfig of an unfinished run in `out`, to continue it."""
    path = os.path.join(out, CONFIG_FILE)
    if not os.path.isfile(path):
        raise RunError(f"{out} holds no {CONFIG_FILE}: there is no run to resume; start one without --resume.")
    if os.path.exists(os.path.join(out, MODEL_FILE)):
        raise RunError(f"The run in {out} has finished ({MODEL_FILE} exists); nothing to resume.")
    with open(path, encoding="utf-8") as f:
        return TrainConfig.from_dict(json.load(f))


def build_model(config, input_shape, image_shape=None, num_classes=None):
    """The model a `TrainConfig` describes, compiled.

    Args:
      config: the `TrainConfig`.
      input_shape, image_shape: of the data's examples.
      num_classes: the data's number of classes (conditional models only).
    """
    networks = dict(
        input_shape=input_shape, latent_dim=config.latent_dim, likelihood=config.likelihood,
        arch=config.arch, hidden_units=config.hidden_units, activation=config.activation,
        image_shape=image_shape,
    )
    if config.model == "autoencoder":
        model = Autoencoder(**networks)
    else:
        vae_options = dict(
            posterior=config.posterior,
            prior=VampPrior(config.latent_dim, config.pseudo_inputs) if config.prior == "vamp" else None,
            num_samples=config.num_samples, objective=config.objective, analytic_kl=config.analytic_kl,
            beta=config.beta, kl_warmup_epochs=config.kl_warmup_epochs, seed=config.seed,
        )
        if config.conditional:
            model = ConditionalVAE(num_classes=num_classes, **networks, **vae_options)
        else:
            model = VAE(**networks, **vae_options)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    return model


def load_splits(config):
    """The run's data, with labels checked when the model is conditional."""
    splits = load_dataset(config.data, likelihood=config.likelihood, seed=config.seed)
    if config.conditional:
        splits.require_labels()
    return splits


def build_model_for(config, splits):
    """`build_model` for the data in `splits`."""
    num_classes = splits.num_classes if config.conditional else None
    return build_model(config, splits.example_shape, splits.image_shape, num_classes)


def _read_epoch_log(path):
    """`{metric: [per-epoch values]}` from the CSV that Keras' CSVLogger appends to."""
    if not os.path.isfile(path):
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {}) if key != "epoch"}


def _split_history(epoch_log):
    history = {"epochs": len(epoch_log.get("loss", [])), "train": {}, "valid": {}}
    for key, values in epoch_log.items():
        split, name = ("valid", key[4:]) if key.startswith("val_") else ("train", key)
        history[split][name] = values
    if history["valid"].get("loss"):
        history["best_epoch"] = int(min(range(history["epochs"]), key=history["valid"]["loss"].__getitem__)) + 1
    return history


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def _callbacks(config, resuming):
    def path(name):
        return os.path.join(config.out, name)

    best_so_far = min(_read_epoch_log(path(EPOCH_LOG)).get("val_loss", [math.inf])) if resuming else math.inf
    callbacks = [
        keras.callbacks.BackupAndRestore(path(CHECKPOINT_DIR), save_freq="epoch", delete_checkpoint=False),
        keras.callbacks.CSVLogger(path(EPOCH_LOG), append=resuming),
        keras.callbacks.ModelCheckpoint(
            path(BEST_WEIGHTS), monitor="val_loss", save_best_only=True, save_weights_only=True,
            initial_value_threshold=None if math.isinf(best_so_far) else best_so_far,
        ),
        keras.callbacks.TerminateOnNaN(),
    ]
    if config.patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience))
    return callbacks


def train(config, overwrite=False, resume=False, verbose=1, pictures=True):
    """Trains the model `config` describes and writes the run directory.

    Every epoch is checkpointed; a run stopped part-way (Ctrl-C, SIGTERM, a crash)
    continues with `resume=True` from its last completed epoch and ends with the same
    weights as an uninterrupted run. `model.keras` holds the best model by validation
    loss; with `config.patience`, training stops early when validation loss stalls.

    Args:
      config: a `TrainConfig` (with `resume`, only `config.out` is read: the run's own
        config.json says the rest).
      overwrite: replace an existing run in `config.out`.
      resume: continue the unfinished run in `config.out`.
      verbose: Keras' verbosity (1 shows the progress bar).
      pictures: also write samples.png, reconstructions.png and learning_curve.png.

    Returns:
      `RunResult`.
    """
    if resume:
        config = resume_config(config.out)
    else:
        check_run_dir(config.out, overwrite)
        for stale in (CHECKPOINT_DIR, EPOCH_LOG, BEST_WEIGHTS, MODEL_FILE, HISTORY_FILE):
            _remove(os.path.join(config.out, stale))
    splits = load_splits(config)
    os.makedirs(config.out, exist_ok=True)
    _write_json(os.path.join(config.out, CONFIG_FILE), config.to_dict())
    keras.utils.set_random_seed(config.seed)
    model = build_model_for(config, splits)
    labels = splits.labels if config.conditional else {}
    batches, shuffle_callback = shuffled_batches(splits.train, config.batch_size, config.seed, labels.get("train"))
    started = time.perf_counter()
    stop = StopOnSignal()
    with stop.installed():
        model.fit(
            batches,
            epochs=config.epochs,
            validation_data=(splits.valid, labels["valid"]) if config.conditional else (splits.valid,),
            validation_batch_size=config.batch_size,
            callbacks=[shuffle_callback, *_callbacks(config, resume), stop],
            shuffle=False,  # the batches are shuffled by (seed, epoch) already
            verbose=verbose,
        )
    model.load_weights(os.path.join(config.out, BEST_WEIGHTS))
    history = _split_history(_read_epoch_log(os.path.join(config.out, EPOCH_LOG)))
    history["train_seconds"] = time.perf_counter() - started
    history["valid_source"] = splits.valid_source
    if splits.test is not None:
        history["test"] = {
            name: float(value)
            for name, value in model.evaluate(
                splits.test, labels.get("test"), batch_size=config.batch_size, verbose=0, return_dict=True
            ).items()
        }
    model.save(os.path.join(config.out, MODEL_FILE))
    _write_json(os.path.join(config.out, HISTORY_FILE), history)
    shutil.rmtree(os.path.join(config.out, CHECKPOINT_DIR), ignore_errors=True)
    if pictures:
        from tfvae import plots

        plots.save_run_pictures(model, splits.valid, history, config.out, seed=config.seed,
                                labels=labels.get("valid"))
    return RunResult(model=model, history=history, run_dir=config.out, config=config)


def load_run(run_dir):
    """The model saved in a run directory."""
    path = os.path.join(run_dir, MODEL_FILE)
    if not os.path.isfile(path):
        raise RunError(
            f"{run_dir} holds no {MODEL_FILE}; give the --out directory of a finished `tfvae train`."
        )
    try:
        return keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for a damaged or foreign file
        raise RunError(
            f"{path} cannot be loaded as a tfvae model ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no detail'}); retrain or restore the run."
        ) from error


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
