"""Stopping a training run on SIGINT/SIGTERM between batches, never inside a checkpoint write."""

import contextlib
import signal
import threading

import keras


class StopOnSignal(keras.callbacks.Callback):
    """Turns SIGINT/SIGTERM during `fit` into a KeyboardInterrupt at the next batch end.

    Python's own handlers raise KeyboardInterrupt wherever the main thread happens to
    be, which can be inside `BackupAndRestore`'s checkpoint write: the run's resume then
    found layers without their variables. Here the handler only notes the signal and the
    callback raises at the next batch or epoch end, after the epoch's callbacks that run
    before it. A second signal raises at once.

    Example:
      >>> stop = StopOnSignal()
      >>> with stop.installed():
      ...     model.fit(x, epochs=10, callbacks=[checkpointing, stop])
    """

    def __init__(self, signals=(signal.SIGINT, signal.SIGTERM)):
        super().__init__()
        self.signals = tuple(signals)
        self.received = None

    @contextlib.contextmanager
    def installed(self):
        """Handles the signals inside the block (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {number: signal.signal(number, self._note) for number in self.signals}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _note(self, number, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = number

    def _stop_if_signalled(self, *args, **kwargs):
        if self.received is not None:
            raise KeyboardInterrupt

    on_train_batch_end = on_test_batch_end = on_epoch_end = _stop_if_signalled
