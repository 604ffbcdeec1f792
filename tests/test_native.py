"""tfvae._native: malloc keeps what TensorFlow's steps free (`keep_freed_memory`)."""

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # subprocesses that import TensorFlow

# 20 allocations of a 40 MiB tensor after 20 of warm-up, counted in minor page faults.
# glibc caps its mmap threshold at 32 MiB, so by default each is a fresh mapping whose
# 10,240 pages fault in again.
ALLOCATIONS = """
import resource
import tensorflow as tf
import tfvae  # noqa: F401
x = tf.ones([10 << 20])
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    y = x * 2.0
    del y
before = faults()
for _ in range(20):
    y = x * 2.0
    del y
print(faults() - before)
"""


# Importance sampling on 100 examples with K = 1000 at the default step size, and with
# steps of 2048 MiB, whose tensors (the decoder's 784 values for each of the 100,000
# pairs, 299 MiB) outgrow the 256 MiB blocks that malloc keeps.
IMPORTANCE_SAMPLING = """
import resource
import numpy as np
import tfvae
model = tfvae.VAE((784,), 40, hidden_units=(300, 300), seed=0)
x = (np.random.default_rng(0).random((100, 784)) < 0.5).astype("float32")
def faults(**budget):
    model.log_likelihood(x, num_samples=1000, seed=0, **budget)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model.log_likelihood(x, num_samples=1000, seed=0, **budget)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(faults(), faults(memory_budget_mib=2048))
"""
PAGES_OF_ONE_TENSOR = 100 * 1000 * 784 * 4 // 4096


def run_counting_faults(program, **environment):
    result = subprocess.run(
        [sys.executable, "-c", program], env={**os.environ, **environment}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return [int(count) for count in result.stdout.split()[-2:]]


def page_faults(**environment):
    return run_counting_faults(ALLOCATIONS, **environment)[-1]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tensorflows_freed_memory_is_reused_and_a_users_malloc_setting_wins():
    assert page_faults() < 1000
    # A user's own threshold (here glibc's cap) is left as it is: every allocation faults.
    assert page_faults(MALLOC_MMAP_THRESHOLD_=str(32 << 20)) > 20 * 10240 // 2


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_importance_sampling_steps_fit_in_what_malloc_keeps():
    """The default steps (`tfvae.memory.IMPORTANCE_SAMPLING_BUDGET_MIB`) reuse their
    memory: measured 15-32 k faults a pass, against 230 k at 2048 MiB and 267-272 k at
    the default under glibc's own thresholds (MALLOC_MMAP_THRESHOLD_=32 MiB)."""
    default, oversized = run_counting_faults(IMPORTANCE_SAMPLING)
    assert oversized > PAGES_OF_ONE_TENSOR  # every step's tensors mapped afresh
    assert default < PAGES_OF_ONE_TENSOR
