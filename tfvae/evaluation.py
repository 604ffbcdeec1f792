"""Honest evaluation: the importance-sampled negative log-likelihood and the ELBO's parts.

Everything comes from the model's shared estimators (`VAE.log_likelihood`,
`VAE.elbo_parts`), in batches so that memory is bounded whatever the number of samples.
"""

import math
import os

import numpy as np
import tensorflow as tf

from tfvae import objectives
from tfvae.errors import ConfigError
from tfvae.memory import IMPORTANCE_SAMPLING_BUDGET_MIB
from tfvae.models.base import example_count, in_multi_worker_mode
from tfvae.seeding import stateless_seed

REPORT_KEYS = (
    "nll",
    "nll_stderr",
    "elbo",
    "kl",
    "reconstruction",
    "active_units",
    "kl_per_layer",
    "active_units_per_layer",
    "num_samples",
    "examples",
    "likelihood_of",
    "nll_bits_per_dim",
    "elbo_bits_per_dim",
)
# Burda et al. (2016): a latent dimension is active when Var_x(E_q[z_d]) exceeds 0.01.
ACTIVE_UNIT_THRESHOLD = 0.01


def _batches(x, labels, batch_size):
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size], None if labels is None else labels[start : start + batch_size]


def _posterior_means(model, x, batch_size, labels):
    """`[N, sum(latent_sizes)]`: E_q[z | x] per example."""
    return np.concatenate(
        [
            model.latent_code(x_batch, labels=labels_batch).numpy()
            for x_batch, labels_batch in _batches(x, labels, batch_size)
        ]
    )


def _active_per_layer(model, means):
    active = means.var(axis=0) > ACTIVE_UNIT_THRESHOLD
    return [int(layer.sum()) for layer in np.split(active, np.cumsum(model.latent_sizes)[:-1])]


def active_units(model, x, batch_size=100, labels=None):
    """How many latent dimensions the posterior means actually use (Burda et al. 2016),
    per stochastic layer (bottom first): a list with one count per `model.latent_sizes`."""
    return _active_per_layer(model, _posterior_means(model, x, batch_size, labels))


def _worker_share(strategy, count, batch_size):
    """`(start, stop)`: the examples this worker evaluates. Without a (multi-worker)
    strategy, all of them; with one, a contiguous run of whole batches, in worker order,
    so that every example is in the batch (and gets the samples) it has in one process."""
    if strategy is None:
        return 0, count
    resolver = strategy.cluster_resolver
    spec = resolver.cluster_spec()
    chiefs = spec.num_tasks("chief") if "chief" in spec.jobs else 0
    workers = chiefs + spec.num_tasks("worker")
    index = resolver.task_id + (chiefs if resolver.task_type == "worker" else 0)
    batches = -(-count // batch_size)
    first, last = batches * index // workers, batches * (index + 1) // workers
    return min(first * batch_size, count), min(last * batch_size, count)


def _share_path(path, strategy, start, stop):
    """The checkpoint file of one worker's share (the path itself without a strategy)."""
    if path is None or strategy is None:
        return path
    root, extension = os.path.splitext(path)
    return f"{root}-{start}-{stop}{extension}"


def _all_gather(strategy, array):
    """Every worker's rows of `array` (`[n_worker, ...]`, n_worker may differ and be 0),
    concatenated in worker order, on every worker (the array itself without a strategy)."""
    if strategy is None:
        return array
    local = strategy.experimental_distribute_values_from_function(lambda _: tf.constant(array))
    return strategy.gather(local, axis=0).numpy()


def evaluate(
    model,
    x,
    num_samples=5000,
    batch_size=100,
    sample_batch_size=None,
    seed=0,
    verbose=0,
    labels=None,
    memory_budget_mib=IMPORTANCE_SAMPLING_BUDGET_MIB,
    strategy=None,
    checkpoint=None,
    return_log_likelihoods=False,
):
    """Per-example averages over `x`, in nats.

    Args:
      model: a trained `tfvae.VAE` or `tfvae.ConditionalVAE`.
      x: `[N, *input_shape]` examples.
      labels: `[N]` class ids, for a conditional model (its NLL is then -log p(x|y)).
      num_samples: K, importance samples per example for the NLL.
      batch_size: examples per step.
      sample_batch_size: samples per step (default: what `memory_budget_mib` allows).
      memory_budget_mib: roughly what one importance-sampling step may hold
        (`VAE.log_likelihood`).
      seed: the same seed repeats the report, whatever the batch sizes: each
        example's draws are keyed by the seed and its values (None draws one seed for
        the whole report; workers under a strategy need the same int).
      verbose: 1 shows a progress bar.
      strategy: a `tf.distribute.MultiWorkerMirroredStrategy` to share the work between
        its workers: every worker runs the same call, estimates a contiguous run of
        whole batches, and gets the report of all of `x`, the same as one process
        computes with the same seed (each example gets the same samples). Other
        strategies (and None) evaluate everything in this process.
      checkpoint: an `.npz` path that keeps the importance-sampled estimates of the
        batches done (see `VAE.log_likelihood`), so that a killed evaluation repeated
        with the same arguments continues where it stopped and reports what the
        uninterrupted one reports. Under a strategy, each worker keeps its share in
        `<path without .npz>-<first>-<stop>.npz`.
      return_log_likelihoods: also return each example's importance-sampled log p(x)
        (its anomaly score), the estimates the NLL averages, so that scores and report
        come from one pass.

    Returns:
      A dict with `nll` (−log p(x) by importance sampling with q(z|x) as proposal),
      `nll_stderr` (its standard error over examples; None for one example, where it
      is undefined: NaN would make the report invalid JSON), `elbo`, `kl`, `reconstruction`
      (−E_q[log p(x|z)], one sample of z per example), `active_units`, and per
      stochastic layer (bottom first) `kl_per_layer` and `active_units_per_layer`,
      `num_samples`, `examples`, and `likelihood_of`: "probability" for discrete data
      (a Bernoulli on binary x, discretised logistics), with `nll_bits_per_dim` and
      `elbo_bits_per_dim` (nats / (D ln 2)); "density" for a Gaussian likelihood, whose
      figures are densities, or "cross_entropy" for a Bernoulli read on grey levels or
      on values between 0 and 1 (the bits/dim keys are then None). With
      `return_log_likelihoods`, the pair `(report, log_px)`, log_px `[N]` float32 nats.
    """
    if not model.has_prior:
        raise ConfigError(
            f"evaluate needs a VAE: {type(model).__name__} defines no p(x) to estimate "
            "(compare autoencoders by their reconstruction loss, `model.evaluate`)."
        )
    x = model.check_examples(x, "tfvae.evaluate's x")
    model.check_labels(labels, example_count(x))
    x = np.asarray(x, dtype=np.float32)
    if len(x) == 0:
        raise ConfigError("evaluate needs at least one example.")
    if strategy is not None and not in_multi_worker_mode(strategy):
        strategy = None  # one worker: nothing to share
    start, stop = _worker_share(strategy, len(x), batch_size)
    seed = stateless_seed(seed)  # one for the NLL and the ELBO, also where none was given
    # This worker's share: its examples' draws are keyed by their values, as in the whole of x.
    share, share_labels = x[start:stop], None if labels is None else np.asarray(labels)[start:stop]
    log_px = np.zeros((0,), np.float32)
    expected_log_likelihood, layer_kls = [np.zeros((0,), np.float32)], [np.zeros((0, len(model.latent_sizes)))]
    means = np.zeros((0, sum(model.latent_sizes)), np.float32)
    if len(share):
        log_px = model.log_likelihood(
            share,
            num_samples=num_samples,
            batch_size=batch_size,
            sample_batch_size=sample_batch_size,
            seed=seed,
            verbose=verbose,
            labels=share_labels,
            memory_budget_mib=memory_budget_mib,
            checkpoint=_share_path(checkpoint, strategy, start, stop),
        )
        means = _posterior_means(model, share, batch_size, share_labels)
    for x_batch, labels_batch in _batches(share, share_labels, batch_size):
        ell, kls = model.elbo_parts(x_batch, num_samples=1, seed=seed, labels=labels_batch)
        expected_log_likelihood.append(ell.numpy())
        layer_kls.append(np.stack([kl.numpy() for kl in kls], axis=1))  # [batch, layers]
    log_px, expected_log_likelihood, layer_kls, means = (
        _all_gather(strategy, part)
        for part in (log_px, np.concatenate(expected_log_likelihood), np.concatenate(layer_kls), means)
    )
    kl = layer_kls.sum(axis=1)
    active = _active_per_layer(model, means)
    report = {
        "nll": float(-log_px.mean()),
        "nll_stderr": float(log_px.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else None,
        "elbo": float((expected_log_likelihood - kl).mean()),
        "kl": float(kl.mean()),
        "reconstruction": float(-expected_log_likelihood.mean()),
        "active_units": sum(active),
        "kl_per_layer": [float(v) for v in layer_kls.mean(axis=0)],
        "active_units_per_layer": active,
        "num_samples": int(num_samples),
        "examples": int(len(x)),
        **_bits_per_dim(model, x, -log_px.mean(), -(expected_log_likelihood - kl).mean()),
    }
    return (report, log_px) if return_log_likelihoods else report


def _bits_per_dim(model, x, nll, negative_elbo):
    """Bits per dimension where p(x|z) is a probability of the examples x; None where it
    is a density or a cross-entropy (grey levels, or a Bernoulli on values between 0 and
    1), whose "nats" measure no probability of the data."""
    measured = model.likelihood_layer.likelihood_of_data(x)
    if measured != "probability":
        return {"likelihood_of": measured, "nll_bits_per_dim": None, "elbo_bits_per_dim": None}
    dimensions = math.prod(model.network_config.input_shape)
    return {
        "likelihood_of": "probability",
        "nll_bits_per_dim": float(objectives.bits_per_dim(nll, dimensions)),
        "elbo_bits_per_dim": float(objectives.bits_per_dim(negative_elbo, dimensions)),
    }
