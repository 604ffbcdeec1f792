"""Sizes a request must fit in, checked before anything is allocated.

An allocation past the machine's memory does not fail cleanly: the kernel overcommits,
the process swaps or is killed, and TensorFlow's out-of-memory error (when it comes)
names no setting. Commands estimate what a model or a batch of samples will hold and
refuse, naming the setting, when the estimate exceeds the machine's physical memory.
"""

import math
import os

from tfvae.errors import ConfigError

FLOAT_BYTES = 4

# What one importance-sampling step may hold unless told otherwise (`VAE.log_likelihood`'s
# `memory_budget_mib`, `tfvae evaluate --memory-budget-mib`). A step this size stays
# inside what malloc keeps between steps (`tfvae._native.keep_freed_memory`: blocks up to
# 256 MiB, 512 MiB of free heap top), so no step maps fresh pages. At 1024 MiB each
# step's memory went back to the system and came back as page faults: K = 2000 on 300
# binarised MNIST digits (the bench-nll model) took 10.6-11.2 s with 1.2-1.3 M faults,
# against 9.4-9.8 s with 0.09 M at 256; a 5-logistic colour model 205-228 s against 185;
# a PixelCNN likelihood 16.0-17.4 s against 15.2-15.6. Peak resident memory fell by
# 0.05-1.0 GiB, the estimates unchanged (README, "8-bit data").
IMPORTANCE_SAMPLING_BUDGET_MIB = 256

# Weights, their gradients and Adam's two moments.
_TRAINING_COPIES = 4


def physical_memory():
    """Bytes of physical memory on this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def require(needed, what, fix):
    """Raises a ConfigError when `needed` bytes exceed the machine's physical memory."""
    available = physical_memory()
    if needed > available:
        raise ConfigError(
            f"{what} needs about {needed / 2**30:,.1f} GiB, more than this machine's "
            f"{available / 2**30:,.1f} GiB of memory; {fix}."
        )


def training_bytes(
    example_shape, latent_dim, hidden_units, batch_size, num_samples, pseudo_inputs=0, params_per_dimension=1
):
    """A lower estimate of what training a dense VAE holds: its weights (four copies with
    Adam) and one step's activations (kept for the backward pass).

    Args:
      example_shape: shape of one example.
      latent_dim: the size of z (all layers together for a hierarchy).
      hidden_units: the widths of the encoder's hidden layers (the decoder mirrors them).
      batch_size, num_samples: examples per step and samples of z per example.
      pseudo_inputs: a VampPrior's components (0 for none).
      params_per_dimension: the likelihood's parameters per data dimension.
    """
    dimension = math.prod(example_shape)
    encoder = [dimension, *hidden_units, 2 * latent_dim]
    decoder = [latent_dim, *reversed(hidden_units), dimension * params_per_dimension]
    weights = sum(a * b for layers in (encoder, decoder) for a, b in zip(layers, layers[1:]))
    weights += pseudo_inputs * dimension
    activations = batch_size * (sum(encoder) + num_samples * sum(decoder))
    return FLOAT_BYTES * (_TRAINING_COPIES * weights + 2 * activations)
