"""tfvae._native: malloc keeps what TensorFlow's steps free (`keep_freed_memory`)."""

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # two subprocesses that import TensorFlow

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


def page_faults(**environment):
    result = subprocess.run(
        [sys.executable, "-c", ALLOCATIONS], env={**os.environ, **environment}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tensorflows_freed_memory_is_reused_and_a_users_malloc_setting_wins():
    assert page_faults() < 1000
    # A user's own threshold (here glibc's cap) is left as it is: every allocation faults.
    assert page_faults(MALLOC_MMAP_THRESHOLD_=str(32 << 20)) > 20 * 10240 // 2
