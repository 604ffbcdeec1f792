"""Quieting TensorFlow's native start-up notices, and keeping the memory its steps free.

TensorFlow's C++ runtime writes notices (oneDNN, CUDA probing on CPU-only machines)
straight to file descriptor 2 before its logging is configured, so
`TF_CPP_MIN_LOG_LEVEL` cannot hide them. They would bury the CLI's one-line errors,
so the import and the device probe run with fd 2 pointed at /dev/null. Python
exceptions are unaffected: they propagate after fd 2 is restored.
"""

import contextlib
import ctypes
import functools
import os
import platform
import sys

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


@contextlib.contextmanager
def native_stderr_silenced():
    """Points file descriptor 2 at /dev/null for the duration of the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@functools.cache
def keep_freed_memory():
    """Has glibc's malloc keep the memory TensorFlow frees for its next allocations.

    TensorFlow's CPU allocator is malloc, and each training step allocates its
    tensors afresh. By default glibc serves a block above its mmap threshold (at
    most 32 MiB) with a fresh mapping, returns the free top of its heap above
    128 KiB to the system, and gives each thread an arena whose heaps hold at most
    64 MiB, so every step faulted its buffers' pages in again. A VampPrior VAE (500
    pseudo-inputs, gated 300-300, batch 100) took 11,280 minor page faults per step
    and spent 3.6 s of a 5.8 s epoch (10k images) in the kernel. With one arena,
    blocks up to 256 MiB kept in its heap and up to 512 MiB of its free top kept:
    113 faults per step and 3.4-3.5 s per epoch (1.7x). The two-layer VampPrior
    hierarchy went from 7.9 to 5.6 s, the 5-sample IWAE VAE from 2.6 to 2.0-2.2 s;
    bench-train's VAE, which faulted little, is unchanged (11.0k-11.8k images/s
    against 11.2k-12.0k). With the thresholds alone, threads whose arenas could not
    hold a block still faulted it in, in some runs. The cost is that freed memory up
    to those sizes stays with the process, as TensorFlow's GPU allocator and XLA's
    keep theirs. A user's own MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_ or
    MALLOC_TRIM_THRESHOLD_ wins, and other C libraries are left alone.

    Returns:
      Whether the setting was made.
    """
    if platform.libc_ver()[0] != "glibc" or any(
        name in os.environ for name in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    ):
        return False
    libc = ctypes.CDLL(None)
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, 256 << 20), (_M_TRIM_THRESHOLD, 512 << 20))
    return all(libc.mallopt(parameter, value) for parameter, value in settings)
