"""Runs that lose nothing: checkpoints, resume, best model, early stopping."""
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from conftest import tiny_vae
from tfvae import RunError, cli, training
from tfvae.stopping import StopOnSignal
from tfvae.training import TrainConfig, train

TINY = dict(data="digits", latent_dim=3, hidden_units=(32,), batch_size=64)


def interrupt_at(monkeypatch, epoch):
    """Makes the next `train` stop with KeyboardInterrupt when `epoch` (0-based) begins."""
    original = training._callbacks

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, index, logs=None):
            if index == epoch:
                raise KeyboardInterrupt

    monkeypatch.setattr(training, "_callbacks", lambda *a: [*original(*a), Interrupt()])


def test_a_run_stopped_after_epoch_2_of_4_and_resumed_ends_with_identical_weights(tmp_path, monkeypatch):
    whole = train(TrainConfig(out=str(tmp_path / "whole"), epochs=4, **TINY), verbose=0, pictures=False)
    config = TrainConfig(out=str(tmp_path / "parts"), epochs=4, **TINY)
    with monkeypatch.context() as patch:
        interrupt_at(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            train(config, verbose=0, pictures=False)
    assert not os.path.exists(os.path.join(config.out, "model.keras"))
    with pytest.raises(RunError, match="--resume"):
        train(config, verbose=0, pictures=False)
    resumed = train(TrainConfig(data="", out=config.out), resume=True, verbose=0, pictures=False)
    assert resumed.history["train"] == whole.history["train"]  # the same epochs, to the last bit
    assert resumed.history["valid"] == whole.history["valid"]
    for a, b in zip(resumed.model.get_weights(), whole.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(RunError, match="has finished"):
        train(TrainConfig(data="", out=config.out), resume=True, verbose=0, pictures=False)


def test_model_keras_holds_the_best_epoch_and_early_stopping_ends_the_run(tmp_path):
    config = TrainConfig(out=str(tmp_path / "run"), epochs=30, patience=2, learning_rate=0.03, **TINY)
    result = train(config, verbose=0, pictures=False)
    valid = result.history["valid"]["loss"]
    assert result.history["epochs"] < 30, "validation loss should stall at this learning rate"
    best = int(np.argmin(valid))
    assert result.history["best_epoch"] == best + 1 and len(valid) - 1 - best == 2  # patience 2
    model = keras.models.load_model(os.path.join(config.out, "model.keras"))
    x = training.load_dataset("digits").valid
    assert not os.path.exists(os.path.join(config.out, "checkpoints"))  # removed once finished
    reloaded = model.elbo(x, num_samples=1, seed=0).numpy()
    from_memory = result.model.elbo(x, num_samples=1, seed=0).numpy()
    np.testing.assert_array_equal(reloaded, from_memory)


def test_resume_needs_an_unfinished_run(tmp_path):
    with pytest.raises(RunError, match="no run to resume"):
        train(TrainConfig(data="", out=str(tmp_path)), resume=True, verbose=0)


def test_sigterm_stops_the_cli_with_a_hint_and_resume_finishes_the_run(tmp_path, capsys):
    out = str(tmp_path / "run")
    script = os.path.join(os.path.dirname(sys.executable), "tfvae")
    process = subprocess.Popen(
        [script, "train", "--data", "digits", "--epochs", "40", "--latent-dim", "3", "--hidden-units", "32",
         "--batch-size", "32", "--quiet", "--no-pictures", "--out", out],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    metadata = os.path.join(out, "checkpoints", "training_metadata.json")
    deadline = time.monotonic() + 120
    while not os.path.exists(metadata) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        f"tfvae train: error: stopped; continue from the last completed epoch with "
        f"`tfvae train --out {out} --resume`"
    )
    with open(os.path.join(out, "epochs.csv")) as f:
        done_before = len(f.readlines()) - 1
    assert 1 <= done_before < 40
    assert cli.main(["train", "--out", out, "--resume", "--quiet", "--no-pictures"]) == 0
    with open(os.path.join(out, "history.json")) as f:
        assert json.load(f)["epochs"] == 40


def test_a_signal_during_fit_stops_at_a_batch_end_and_the_handlers_come_back(digits):
    class SignalAtSecondEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    model = tiny_vae()
    completed = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: completed.append(epoch))
    before = signal.getsignal(signal.SIGTERM)
    stop = StopOnSignal()
    with pytest.raises(KeyboardInterrupt), stop.installed():
        model.fit(digits.train, epochs=5, batch_size=64, verbose=0,
                  callbacks=[SignalAtSecondEpoch(), record, stop])
    assert stop.received == signal.SIGTERM
    assert completed == [0]  # epoch 0 finished whole; epoch 1 stopped at its first batch end
    assert signal.getsignal(signal.SIGTERM) is before
