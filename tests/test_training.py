"""Runs that lose nothing: checkpoints, resume, best model, early stopping."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from helpers import dropout_rates, tiny_vae

import tfvae
from tfvae import RunError, checkpointing, cli, training
from tfvae.stopping import StopOnSignal
from tfvae.training import TrainConfig, train

pytestmark = pytest.mark.slow  # trainings, servers and subprocesses: `make test-fast` leaves them out
TINY = dict(data="digits", latent_dim=3, hidden_units=(32,), batch_size=64)


def interrupt_at(monkeypatch, epoch):
    """Makes the next `train` stop with KeyboardInterrupt when `epoch` (0-based) begins."""

    class Interrupting(training.EpochCheckpoint):
        def on_epoch_begin(self, index, logs=None):
            if index == epoch:
                raise KeyboardInterrupt
            super().on_epoch_begin(index, logs)

    monkeypatch.setattr(training, "EpochCheckpoint", Interrupting)


# A two-layer hierarchy with the VampPrior on top and hidden layers in its conditionals,
# warming its KL up: the state a deep run carries beyond the VAE's (pseudo-inputs, the
# per-layer networks, the KL weight's schedule).
HIERARCHY = dict(
    model="hierarchical",
    latent_dims=(3, 2),
    conditional_layers=1,
    prior="vamp",
    pseudo_inputs=8,
    kl_warmup_epochs=3,
)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """`run(**model)`: the 3-epoch TINY run of `model`, trained once for the module: what
    every stopped, killed or interrupted run must end as once resumed."""
    runs = {}

    def run(**model):
        key = json.dumps(model, sort_keys=True)
        if key not in runs:
            out = str(tmp_path_factory.mktemp("whole"))
            runs[key] = train(TrainConfig(out=out, epochs=3, **{**TINY, **model}), verbose=0, pictures=False)
        return runs[key]

    return run


# Polyak averaging: the optimizer's average of the weights is state a resume must restore,
# and the best-weights file holds the average, not the weights training goes on from.
AVERAGED = dict(ema_momentum=0.9)
# A decaying learning rate: a resumed run must take up the schedule at its own epoch.
COSINE = dict(lr_schedule="cosine")


@tfvae.register_dataset("digit_images")
def _digit_images():
    """The bundled digits as `[N, 8, 8]` pictures: flips take images, not flat vectors."""
    digits = tfvae.load_dataset("digits")
    return {split: getattr(digits, split).reshape(-1, 8, 8) for split in ("train", "valid", "test")}


# Random flips of the training images: a resumed run must draw the flips the whole run drew.
MIRRORED = dict(augment="hflip", data="digit_images")


@tfvae.register_dataset("digit_levels")
def _digit_levels():
    """The digit pictures as 8-bit levels `[N, 8, 8, 1]`, for the discretised likelihoods."""
    return {split: np.round(images[..., None] * 255).astype(np.uint8) for split, images in _digit_images().items()}


# Dropout after the MLPs' hidden layers and inside a PixelCNN decoder: their random streams
# are state a resume must restore, and Keras' weights files leave seed generators out.
DROPOUT = dict(
    data="digit_levels",
    dropout=0.5,
    likelihood="pixelcnn_logistic_mixture",
    mixture_components=2,
    pixelcnn_filters=4,
    pixelcnn_blocks=1,
    pixelcnn_dropout=0.5,
)


@pytest.mark.parametrize(
    "model",
    [{}, HIERARCHY, AVERAGED, COSINE, MIRRORED, DROPOUT],
    ids=["vae", "hierarchy", "averaged", "cosine_learning_rate", "flipped_images", "dropout"],
)
def test_a_run_stopped_after_epoch_2_of_3_and_resumed_ends_with_identical_weights(
    tmp_path, monkeypatch, uninterrupted, model
):
    whole = uninterrupted(**model)
    config = TrainConfig(out=str(tmp_path / "parts"), epochs=3, **{**TINY, **model})
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


def test_flipped_images_train_another_model_than_the_images_as_they_are(uninterrupted):
    flipped, plain = uninterrupted(**MIRRORED), uninterrupted(data=MIRRORED["data"])
    assert flipped.config.augment == "hflip" and training.read_config(flipped.run_dir).augment == "hflip"
    assert flipped.history["train"]["loss"] != plain.history["train"]["loss"]  # the flips reached the steps
    assert flipped.history["valid"]["loss"] != plain.history["valid"]["loss"]


def test_a_finished_run_extended_to_3_epochs_ends_as_a_3_epoch_run_even_when_stopped_on_the_way(
    tmp_path, monkeypatch, uninterrupted
):
    whole = uninterrupted()
    out = str(tmp_path / "short")
    short = train(TrainConfig(out=out, epochs=2, **TINY), verbose=0, pictures=False)
    with pytest.raises(RunError, match=r"has finished .*--resume --epochs N \(more than its 2\)"):
        train(TrainConfig(data="", out=out), resume=True, verbose=0, pictures=False)
    with monkeypatch.context() as patch:
        interrupt_at(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            train(TrainConfig(data="", out=out), resume=True, epochs=3, verbose=0, pictures=False)
    # Stopped inside the extension: the 2-epoch model stays, and a plain resume goes on to 3.
    kept = keras.models.load_model(os.path.join(out, training.MODEL_FILE))
    for a, b in zip(kept.get_weights(), short.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    extended = train(TrainConfig(data="", out=out), resume=True, verbose=0, pictures=False)
    assert extended.config.epochs == 3 and training.read_config(out).epochs == 3
    assert extended.history["train"] == whole.history["train"]  # to the last bit
    assert extended.history["valid"] == whole.history["valid"]
    for a, b in zip(extended.model.get_weights(), whole.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_epochs_to_extend_a_run_need_resume(tmp_path):
    with pytest.raises(tfvae.ConfigError, match=r"epochs= extends a run with resume=True"):
        train(TrainConfig(out=str(tmp_path / "run"), epochs=2, **TINY), epochs=3, verbose=0, pictures=False)
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize(
    "model, message",
    [
        (COSINE, "decays its learning rate over its 2 epochs"),
        # Seeded: at this rate the third epoch's validation loss is worse than the second's.
        (dict(patience=1, learning_rate=0.1), "stopped early at epoch 3: its validation loss did not improve for 1"),
        ({}, "holds no checkpoints/ .* cannot be extended"),
    ],
    ids=["cosine", "stopped_early", "checkpoint_deleted"],
)
def test_an_extension_that_could_not_repeat_a_longer_run_is_refused(tmp_path, model, message):
    out = str(tmp_path / "run")
    epochs = 4 if "patience" in model else 2
    train(TrainConfig(out=out, epochs=epochs, **TINY, **model), verbose=0, pictures=False)
    if not model:
        shutil.rmtree(os.path.join(out, "checkpoints"))
    with pytest.raises(RunError, match=message):
        train(TrainConfig(data="", out=out), resume=True, epochs=5, verbose=0, pictures=False)
    assert training.read_config(out).epochs == epochs  # refused before anything was written


def test_a_cosine_schedule_sets_each_epochs_rate_from_the_first_epoch_on(uninterrupted):
    constant, cosine = uninterrupted(), uninterrupted(**COSINE)
    rate = TrainConfig.learning_rate
    expected = [np.float32(rate * (1 + np.cos(np.pi * epoch / 3)) / 2) for epoch in range(3)]  # 1e-3, 7.5e-4, 2.5e-4
    np.testing.assert_allclose(cosine.history["train"]["learning_rate"], expected, rtol=1e-6)
    # Epoch 1 runs at the full rate, as the constant run does; from epoch 2 on they part.
    assert cosine.history["train"]["loss"][0] == constant.history["train"]["loss"][0]
    assert cosine.history["train"]["loss"][1] != constant.history["train"]["loss"][1]
    assert "learning_rate" not in constant.history["train"]


def test_an_averaged_run_validates_and_keeps_the_average_of_its_weights(uninterrupted):
    result = uninterrupted(**AVERAGED)
    valid = result.history["valid"]["loss"]
    x = training.load_dataset("digits").valid
    # model.keras holds the average that scored the best val_loss: the training weights
    # would score differently (the last epoch's are not the best epoch's either).
    kept = result.model.evaluate(x, batch_size=TINY["batch_size"], verbose=0, return_dict=True)["loss"]
    assert kept == pytest.approx(min(valid), rel=1e-6)
    optimizer = result.model.optimizer  # the kept weights are the average itself, not w
    for weight, average in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average):
        np.testing.assert_array_equal(weight.numpy(), average.numpy())
    assert result.model.optimizer.use_ema and result.model.optimizer.ema_momentum == pytest.approx(0.9)


def test_averaged_weights_validate_the_average_and_give_training_its_weights_back_to_the_last_bit():
    data = training.load_dataset("digits")

    def fit(callbacks, validate):
        keras.utils.set_random_seed(0)
        vae = tfvae.VAE((64,), 3, hidden_units=(32,), seed=0)
        vae.compile(optimizer=keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.9))
        history = vae.fit(
            data.train[:512],
            epochs=3,
            batch_size=64,
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
            validation_data=(data.valid,) if validate else None,
        ).history
        return vae, history

    unvalidated, _ = fit([], validate=False)
    validated, history = fit([tfvae.AveragedWeights()], validate=True)
    # The averages follow the training weights, so they match only if every validation
    # handed the training weights back exactly (Keras' SwapEMAWeights misses by ~1e-7).
    for a, b in zip(
        unvalidated.optimizer._model_variables_moving_average, validated.optimizer._model_variables_moving_average
    ):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # fit ends with the average in the model (Keras' finalize): the last val_loss was its loss.
    last = validated.evaluate(data.valid, batch_size=64, verbose=0, return_dict=True)["loss"]
    assert history["val_loss"][-1] == pytest.approx(last, rel=1e-6)


def test_a_fit_cut_short_inside_a_validation_of_the_average_leaves_the_training_weights():
    data = training.load_dataset("digits")
    keras.utils.set_random_seed(0)
    vae = tfvae.VAE((64,), 3, hidden_units=(32,), seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.9))
    trained = []

    class CutShort(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            trained[:] = [variable.numpy() for variable in vae.optimizer._trainable_variables]

        def on_test_batch_end(self, batch, logs=None):
            raise KeyboardInterrupt  # Ctrl-C while the average is being validated

    # Held, as a caller's list or a traceback holds it: a freed callback would put the
    # weights back by itself when Python closes its context.
    averaging = tfvae.AveragedWeights()
    with pytest.raises(KeyboardInterrupt):
        vae.fit(
            data.train[:512],
            epochs=2,
            batch_size=64,
            verbose=0,
            validation_data=(data.valid,),
            callbacks=[averaging, CutShort()],
        )
    optimizer = vae.optimizer
    for variable, value, average in zip(
        optimizer._trainable_variables, trained, optimizer._model_variables_moving_average
    ):
        np.testing.assert_array_equal(variable.numpy(), value)
        assert not np.array_equal(value, average.numpy())  # so the average could not pass


def test_model_keras_holds_the_best_epoch_and_early_stopping_ends_the_run(tmp_path):
    config = TrainConfig(out=str(tmp_path / "run"), epochs=30, patience=2, learning_rate=0.03, **TINY)
    result = train(config, verbose=0, pictures=False)
    valid = result.history["valid"]["loss"]
    assert result.history["epochs"] < 30, "validation loss should stall at this learning rate"
    best = int(np.argmin(valid))
    assert result.history["best_epoch"] == best + 1 and len(valid) - 1 - best == 2  # patience 2
    model = keras.models.load_model(os.path.join(config.out, "model.keras"))
    x = training.load_dataset("digits").valid
    last = checkpointing.latest_checkpoint(os.path.join(config.out, "checkpoints"))  # kept for extensions
    assert last.epochs == result.history["epochs"]
    reloaded = model.elbo(x, num_samples=1, seed=0).numpy()
    from_memory = result.model.elbo(x, num_samples=1, seed=0).numpy()
    np.testing.assert_array_equal(reloaded, from_memory)


def test_a_run_being_trained_refuses_a_second_train_until_its_holder_ends_even_by_kill_9(tmp_path):
    out = str(tmp_path / "run")
    hold = f"from tfvae import files\nwith files.exclusive({out!r}, 'x'):\n    print('held', flush=True)\n    input()"
    holder = subprocess.Popen([sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(RunError, match=rf"run is in use by another `tfvae train` \(process {holder.pid}\)"):
            train(TrainConfig(out=out, epochs=1, **TINY), verbose=0, pictures=False)
    finally:
        holder.kill()  # SIGKILL: no cleanup of its own
        holder.wait()
    assert sorted(os.listdir(out)) == [".lock"]  # the refused runs wrote nothing
    train(TrainConfig(out=out, epochs=1, **TINY), verbose=0, pictures=False)
    assert os.path.exists(os.path.join(out, training.MODEL_FILE))
    with pytest.raises(tfvae.DataError, match="does not exist"):
        train(TrainConfig(**{**TINY, "data": str(tmp_path / "none.npz")}, out=str(tmp_path / "new"), epochs=1))
    assert not os.path.exists(tmp_path / "new")  # a refused run leaves no folder behind


def test_resume_needs_an_unfinished_run(tmp_path):
    with pytest.raises(RunError, match="no run to resume"):
        train(TrainConfig(data="", out=str(tmp_path)), resume=True, verbose=0)


def test_sigterm_stops_the_cli_with_status_130_and_a_hint_and_resume_finishes_the_run(tmp_path, capsys):
    out = str(tmp_path / "run")
    script = os.path.join(os.path.dirname(sys.executable), "tfvae")
    process = subprocess.Popen(
        [
            script,
            "train",
            "--data",
            "digits",
            "--epochs",
            "15",
            "--latent-dim",
            "3",
            "--hidden-units",
            "32",
            "--batch-size",
            "64",
            "--quiet",
            "--no-pictures",
            "--out",
            out,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = os.path.join(out, "checkpoints", "epoch-000001")
    deadline = time.monotonic() + 120
    while not os.path.exists(first) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        f"tfvae train: interrupted; continue from the last completed epoch with `tfvae train --out {out} --resume`"
    )
    with open(os.path.join(out, "epochs.csv")) as f:
        done_before = len(f.readlines()) - 1
    assert 1 <= done_before < 15
    assert cli.main(["train", "--out", out, "--resume", "--quiet", "--no-pictures"]) == 0
    with open(os.path.join(out, "history.json")) as f:
        history = json.load(f)
    assert history["epochs"] == 15
    # The interrupted process's epochs keep their times: the total covers both parts.
    seconds = history["epoch_seconds"]
    assert len(seconds) == 15 and min(seconds) > 0
    assert history["train_seconds"] == pytest.approx(sum(seconds))
    with open(os.path.join(out, "epochs.csv")) as f:
        assert "seconds" in f.readline().strip().split(",")


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
        model.fit(digits.train, epochs=5, batch_size=64, verbose=0, callbacks=[SignalAtSecondEpoch(), record, stop])
    assert stop.received == signal.SIGTERM
    assert completed == [0]  # epoch 0 finished whole; epoch 1 stopped at its first batch end
    assert signal.getsignal(signal.SIGTERM) is before


class Killed(BaseException):
    """What `kill -9` does to a write, without losing the test process: nothing after it runs
    (the atomic writers clean up nothing on the way out, as a killed process cannot)."""


def dies_on_call(monkeypatch, owner, name, call, truncate=False):
    """Patches `owner.name` to raise `Killed` on its `call`-th call (after writing half a
    file, with `truncate`: the file argument is written whole, then cut in half)."""
    original = getattr(owner, name)
    calls = []

    def dying(*args, **kwargs):
        calls.append(args)
        if len(calls) < call:
            return original(*args, **kwargs)
        if truncate:
            original(*args, **kwargs)
            path = args[1] if not isinstance(args[0], str) else args[0]
            os.truncate(path, os.path.getsize(path) // 2)
        raise Killed

    monkeypatch.setattr(owner, name, dying)


# Each kill lands in a different write of a 3-epoch run: a checkpoint's state mid-file,
# a file whole but not yet renamed, the old checkpoint not yet removed, the best weights
# mid-file, model.keras mid-file. The run is resumed after each.
KILLS = [
    (keras.Model, "save_weights", 2, True),
    ("files", "fsync", 5, False),
    (shutil, "rmtree", 1, False),
    (keras.Model, "save_weights", 1, True),
    (keras.Model, "save", 1, True),
]


def test_a_run_killed_inside_every_kind_of_write_resumes_to_the_uninterrupted_weights(
    tmp_path, monkeypatch, uninterrupted
):
    whole = uninterrupted()
    out = str(tmp_path / "killed")
    config = TrainConfig(out=out, epochs=3, **TINY)
    for owner, name, call, truncate in KILLS:
        with monkeypatch.context() as patch:
            dies_on_call(patch, training.files if owner == "files" else owner, name, call, truncate)
            with pytest.raises(Killed):
                if os.path.exists(os.path.join(out, "config.json")):
                    train(TrainConfig(data="", out=out), resume=True, verbose=0, pictures=False)
                else:
                    train(config, verbose=0, pictures=False)
    resumed = train(TrainConfig(data="", out=out), resume=True, verbose=0, pictures=False)
    assert resumed.history["train"] == whole.history["train"]
    assert resumed.history["valid"] == whole.history["valid"]
    for a, b in zip(resumed.model.get_weights(), whole.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]


@pytest.mark.xla  # the whole run, the killed child and the resumed run all compile with XLA, as users' runs do
def test_kill_9_inside_a_checkpoint_write_leaves_a_run_that_resumes_to_the_same_weights(tmp_path):
    whole = train(TrainConfig(out=str(tmp_path / "whole"), epochs=3, **TINY), verbose=0, pictures=False)
    out = str(tmp_path / "killed")
    # The child writes half of epoch 2's checkpoint, then SIGKILLs itself.
    child = f"""
import os, signal, keras
from tfvae import checkpointing, cli
calls = []
original = keras.Model.save_weights
def save_weights(self, path, **kwargs):
    original(self, path, **kwargs)
    calls.append(path)
    if len(calls) == 4:
        os.truncate(path, os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
keras.Model.save_weights = save_weights
cli.main(["train", "--data", "digits", "--out", {out!r}, "--epochs", "3", "--latent-dim", "3",
          "--hidden-units", "32", "--batch-size", "64", "--quiet", "--no-pictures"])
"""
    process = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr[-3000:]
    left = sorted(os.listdir(os.path.join(out, "checkpoints")))
    assert left[0].startswith(".tmp-") and left[1:] == ["epoch-000001"]  # epoch 2 half-written
    assert cli.main(["train", "--out", out, "--resume", "--quiet", "--no-pictures"]) == 0
    resumed = keras.models.load_model(os.path.join(out, "model.keras"))
    for a, b in zip(resumed.get_weights(), whole.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_run_that_diverges_stops_with_an_error_and_keeps_its_last_finite_checkpoint(tmp_path, monkeypatch):
    class DivergingAtEpoch2(training.EpochCheckpoint):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                self.model.optimizer.learning_rate.assign(float("inf"))
            super().on_epoch_begin(epoch, logs)

    monkeypatch.setattr(training, "EpochCheckpoint", DivergingAtEpoch2)
    out = str(tmp_path / "run")
    with pytest.raises(RunError, match=r"diverged in epoch 2 \(loss nan.*epoch 1\) is kept.*smaller learning rate"):
        train(TrainConfig(out=out, epochs=4, **TINY), verbose=0, pictures=False)
    assert not os.path.exists(os.path.join(out, "model.keras"))
    last = checkpointing.latest_checkpoint(os.path.join(out, "checkpoints"))
    assert last.epochs == 1 and len(last.log) == 1
    model = training.build_model(
        TrainConfig(data="", out="", **{k: v for k, v in TINY.items() if k != "data"}), (64,), (8, 8, 1)
    )
    last.restore(model)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_the_cli_refuses_to_report_success_for_a_diverging_learning_rate(tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = [
        "train",
        "--data",
        "digits",
        "--out",
        out,
        "--learning-rate",
        "1e30",
        "--latent-dim",
        "3",
        "--hidden-units",
        "32",
        "--epochs",
        "2",
        "--quiet",
        "--no-pictures",
    ]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "diverged in epoch 1" in error[0] and "no epoch finished" in error[0]
    assert not os.path.exists(os.path.join(out, "model.keras"))


def test_evaluation_uses_the_validation_examples_the_run_held_out_not_fresh_ones(tmp_path, capsys):
    rng = np.random.default_rng(1)
    train_examples = (rng.random((200, 64)) > 0.5).astype(np.float32)  # distinct rows
    data = str(tmp_path / "data.npz")
    np.savez(data, train=train_examples)
    out = str(tmp_path / "run")
    result = train(
        TrainConfig(data=data, out=out, epochs=1, seed=5, **{k: v for k, v in TINY.items() if k != "data"}),
        verbose=0,
        pictures=False,
    )
    trained_on = training.load_splits(result.config).train
    assert len(trained_on) == 180
    for data_argument in (None, data):  # the run's own data, named or not
        valid = training.load_run_data(out, data_argument).valid
        assert len(valid) == 20
        assert not (valid[:, None, :] == trained_on[None, :, :]).all(axis=-1).any()
    # Seed 0's hold-out, which evaluate drew before, overlaps the examples trained on.
    seed_0 = tfvae.load_dataset(data, seed=0).valid
    assert (seed_0[:, None, :] == trained_on[None, :, :]).all(axis=-1).any(axis=1).sum() > 10
    assert cli.main(["evaluate", out, "--split", "valid", "--num-samples", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["examples"] == 20
    # Other data without a 'valid' array cannot say which examples the run left out.
    other = str(tmp_path / "other.npz")
    np.savez(other, train=train_examples[::-1])
    assert cli.main(["evaluate", out, "--data", other, "--split", "valid", "--num-samples", "10"]) == 2
    assert "could be ones the run" in capsys.readouterr().err
    # The same file changed since (examples added, or one replaced): the recorded indices
    # would pick other examples, so the run's data are refused rather than re-split.
    for changed, named in (
        (np.concatenate([train_examples[:1], train_examples]), "train_examples 200 then, 201 now"),
        (1 - train_examples, "train_sha256"),  # as many examples, others
    ):
        np.savez(data, train=changed)
        assert cli.main(["evaluate", out, "--split", "valid", "--num-samples", "10"]) == 2
        error = capsys.readouterr().err
        assert "its training examples changed since the run" in error and named in error
        assert len(error.strip().splitlines()) == 1


def test_a_resumed_run_keeps_its_count_of_epochs_without_a_better_validation_loss():
    log = [{"loss": 9.0, "val_loss": v} for v in (5.0, 3.0, 4.0, 3.0, 6.0)]
    assert checkpointing.best_so_far(log) == (3.0, 3)  # the first 3.0: ties are no improvement
    assert checkpointing.stopped_early(log, patience=3) and not checkpointing.stopped_early(log, patience=4)
    stopping = checkpointing.ResumableEarlyStopping(patience=4, log=log)
    stopping.on_train_begin()
    assert (stopping.best, stopping.wait) == (3.0, 3)  # Keras' own would restart at (None, 0)
    assert checkpointing.best_so_far([]) is None and not checkpointing.stopped_early(log[:1], patience=1)


def test_weight_decay_shrinks_every_kernel_by_one_minus_lr_times_decay_and_leaves_the_rest(tmp_path):
    # Zero gradients make Adam's own step exactly 0, so one step is the decay alone.
    options = {k: v for k, v in TINY.items() if k != "data"}
    config = TrainConfig(
        data="",
        out="",
        prior="vamp",
        pseudo_inputs=3,
        likelihood="gaussian",
        weight_decay=0.5,
        learning_rate=0.1,
        **options,
    )
    built = training.build_model(config, (64,), (8, 8, 1))
    for v in built.trainable_variables:  # biases start at 0, which decay would leave at 0
        v.assign(v + 0.5)
    built.optimizer.build(built.trainable_variables)
    built.save(tmp_path / "model.keras")
    # Keras saves no exclusions of its own: the reloaded optimizer must keep tfvae's.
    for model in (built, keras.models.load_model(tmp_path / "model.keras")):
        before = {v.path: np.array(v) for v in model.trainable_variables}
        zeros = [keras.ops.zeros_like(v) for v in model.trainable_variables]
        model.optimizer.apply(zeros, model.trainable_variables)
        decayed = set()
        for v in model.trainable_variables:
            if any(name in v.name for name in training.NO_WEIGHT_DECAY):
                np.testing.assert_array_equal(np.array(v), before[v.path])
            else:
                np.testing.assert_allclose(np.array(v), before[v.path] * (1 - 0.1 * 0.5), rtol=1e-6)
                decayed.add(v.name)
        assert decayed == {"kernel"}
        assert {v.name for v in model.trainable_variables} >= {"kernel", *training.NO_WEIGHT_DECAY}


def test_a_run_config_gives_the_decoder_its_own_dropout_rate():
    config = TrainConfig(data="digits", out="unused", hidden_units=(16, 8), dropout=0.2, decoder_dropout=0.4)
    model = training.build_model(config, (64,))
    assert (dropout_rates(model.encoder), dropout_rates(model.decoder)) == ([0.2, 0.2], [0.4, 0.4])
    decoder_alone = training.build_model(TrainConfig(data="digits", out="unused", decoder_dropout=0.4), (64,))
    assert (dropout_rates(decoder_alone.encoder), dropout_rates(decoder_alone.decoder)) == ([], [0.4, 0.4])
    with pytest.raises(tfvae.ConfigError, match=r"decoder_dropout \(--decoder-dropout\) is for the MLPs"):
        TrainConfig(data="digits", out="unused", arch="conv", decoder_dropout=0.1)
