"""Files that are never half-written: write to a temporary name, then rename into place.

`os.replace` within one directory is atomic on POSIX and Windows, so a reader (or a
run resumed after `kill -9`) sees either the previous complete file or the new
complete one. A kill leaves at most a temporary file behind; its name starts with
`TEMPORARY_PREFIX`, and `remove_stale_temporaries` clears those the next time the
directory is written.
"""

import contextlib
import fcntl
import json
import os
import shutil
import tempfile

import numpy as np

from tfvae.errors import RunError

TEMPORARY_PREFIX = ".tmp-"
LOCK_FILE = ".lock"


def fsync(path):
    """Flushes `path`'s data to the disk."""
    # Without fsync the rename can reach the disk before the data: after a power
    # cut the new name would point at an empty file.
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renamed onto `path` when the block ends.

    The temporary name keeps `path`'s full suffix (Keras checks that weights end in
    `.weights.h5` and models in `.keras`). If the block raises, the temporary file is
    left for `remove_stale_temporaries`, exactly as a killed process would leave it.

    Example:
      >>> with atomic_path("run/best.weights.h5") as temporary:
      ...     model.save_weights(temporary)
    """
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f"{TEMPORARY_PREFIX}{os.getpid()}-{name}")
    try:
        yield temporary
    except OSError as error:
        if error.filename != temporary:
            raise
        # Name the file the caller asked for: the temporary name is ours, not theirs.
        raise type(error)(error.errno, error.strerror, path) from None
    if os.path.isfile(temporary):
        fsync(temporary)
    os.replace(temporary, path)


def check_writable(folder):
    """Creates `folder` if missing and writes a temporary file in it: raises the OSError a
    later write would meet, before any long work whose result would then be lost."""
    os.makedirs(folder, exist_ok=True)
    tempfile.TemporaryFile(dir=folder).close()


def write_json(path, value):
    """Writes `value` as indented JSON to `path`, atomically."""
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def write_npy(path, array):
    """Writes `array` to `path` in NumPy's .npy format, atomically."""
    with atomic_path(path) as temporary:
        np.save(temporary, array)


def write_text(path, text):
    """Writes `text` to `path`, atomically."""
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as f:
        f.write(text)


def remove_stale_temporaries(directory):
    """Removes what killed writers left in `directory` (files and folders named `.tmp-*`)."""
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        if name.startswith(TEMPORARY_PREFIX):
            path = os.path.join(directory, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)


@contextlib.contextmanager
def exclusive(directory, command):
    """Holds `directory` for one process while the block runs: a second `command` on it
    is refused instead of interleaving its checkpoints and files with the first's.

    The lock is `flock` on `directory/.lock`, which the kernel lets go when the process
    ends however it ends, so a run killed with `kill -9` leaves no stale lock behind; the
    file keeps the holder's process id for the message. A folder the block created and
    left empty is removed with the lock.

    Raises:
      RunError: another process holds `directory`.
    """
    created = not os.path.isdir(directory)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, LOCK_FILE)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(descriptor, 32).decode(errors="replace").strip()
            raise RunError(
                f"{directory} is in use by another {command} (process {holder or 'unknown'}); wait for it to "
                "finish, or stop it (its last completed epoch stays checkpointed) and run again."
            ) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        yield
    finally:
        if created and os.listdir(directory) == [LOCK_FILE]:  # a refused command leaves no folder
            os.remove(path)
            os.rmdir(directory)
        os.close(descriptor)  # releases the lock
