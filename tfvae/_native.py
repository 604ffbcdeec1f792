"""Quieting TensorFlow's native start-up notices.

TensorFlow's C++ runtime writes notices (oneDNN, CUDA probing on CPU-only machines)
straight to file descriptor 2 before its logging is configured, so
`TF_CPP_MIN_LOG_LEVEL` cannot hide them. They would bury the CLI's one-line errors,
so the import and the device probe run with fd 2 pointed at /dev/null. Python
exceptions are unaffected: they propagate after fd 2 is restored.
"""

import contextlib
import os
import sys


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
