import errno
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfvae
from tfvae import cli, commands

pytestmark = pytest.mark.slow  # trainings, servers and subprocesses: `make test-fast` leaves them out

TINY = ["--epochs", "2", "--latent-dim", "3", "--hidden-units", "32", "--batch-size", "64", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("runs") / "digits")
    assert cli.main(["train", "--data", "digits", "--out", out, "--kl-warmup-epochs", "2", *TINY]) == 0
    return out


def test_train_writes_model_history_config_and_pictures(run_dir):
    for name in (
        "model.keras",
        "history.json",
        "config.json",
        "samples.png",
        "reconstructions.png",
        "learning_curve.png",
    ):
        assert os.path.getsize(os.path.join(run_dir, name)) > 0, name
    with open(os.path.join(run_dir, "history.json")) as f:
        history = json.load(f)
    assert history["epochs"] == 2
    assert len(history["train"]["loss"]) == len(history["valid"]["loss"]) == 2
    assert set(history["test"]) == {"loss", "reconstruction", "kl"}
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert config["latent_dim"] == 3 and config["kl_warmup_epochs"] == 2 and config["hidden_units"] == [32]
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"))
    assert model.latent_dim == 3 and model.kl_warmup_epochs == 2


@pytest.mark.parametrize("discrete", [False, True])
def test_the_train_summary_gives_the_saved_best_epochs_figures_not_the_last_ones(discrete):
    history = {"epochs": 3, "best_epoch": 2, "valid": {"loss": [9.0, 5.0, 7.0]}, "test": {"loss": 4.5}}
    if discrete:
        history["bits_per_dim"] = {"train": [0.3, 0.2, 0.1], "valid": [0.9, 0.5, 0.7], "test": 0.45}
    line = commands.train_summary("runs/r", history, "negative ELBO")
    expected = (
        "wrote runs/r: the model of epoch 2 of 3, valid loss 5.000, test loss 4.500 (negative ELBO, nats per example)"
    )
    assert line == expected + ("; bits/dim: valid 0.5000, test 0.4500" if discrete else "")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--batch-size", "9"], "--batch-size 9 differs from the run's 64 (in "),
        (["--hidden-units", "64,32"], "--hidden-units 64,32 differs from the run's 32 (in "),
        (["--data", "photo_patches"], "--data photo_patches differs from the run's digits (in "),
        (["--conditional"], "--conditional would change the run's conditional (False in "),
        (["--mc-kl"], "--mc-kl would change the run's analytic_kl (True in "),
    ],
)
def test_resume_refuses_options_that_would_change_the_run(run_dir, flags, message, capsys):
    assert cli.main(["train", "--out", run_dir, "--resume", *flags]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and f"leave out {flags[0]}, or train a new run" in error


def test_resume_takes_options_that_match_the_run(run_dir, capsys):
    # The run's own values pass the check; this run has finished, so `train` then says
    # there is nothing to resume.
    assert cli.main(["train", "--out", run_dir, "--resume", "--epochs", "2", "--hidden-units", "32"]) == 2
    assert "has finished (model.keras exists); nothing to resume" in capsys.readouterr().err


def test_resume_with_fewer_epochs_is_refused_and_names_the_run_s_count(run_dir, capsys):
    assert cli.main(["train", "--out", run_dir, "--resume", "--epochs", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "--epochs 1 is fewer than the 2 the run in" in error and "never shortens it" in error


def test_same_seed_repeats_the_run(run_dir, tmp_path):
    out = str(tmp_path / "again")
    assert cli.main(["train", "--data", "digits", "--out", out, "--kl-warmup-epochs", "2", *TINY]) == 0
    with open(os.path.join(run_dir, "history.json")) as a, open(os.path.join(out, "history.json")) as b:
        first, second = json.load(a), json.load(b)
    assert first["train"] == second["train"] and first["valid"] == second["valid"]


def test_refuses_to_overwrite_a_run(run_dir, capsys):
    assert cli.main(["train", "--data", "digits", "--out", run_dir, *TINY]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--overwrite" in error


def test_sample_writes_png_and_npy(run_dir, tmp_path, capsys):
    npy, png = str(tmp_path / "s.npy"), str(tmp_path / "s.png")
    assert cli.main(["sample", run_dir, "--n", "10", "--seed", "1", "--out", npy]) == 0
    samples = np.load(npy)
    assert samples.shape == (10, 64) and 0 <= samples.min() and samples.max() <= 1
    assert "a float32 array of shape [10, 64]" in capsys.readouterr().out
    assert cli.main(["sample", run_dir, "--n", "10", "--seed", "1", "--out", png]) == 0
    assert "a grid of 10 samples (8×8×1 images), drawn with --seed 1" in capsys.readouterr().out
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # Unseeded, the line names the seed it drew with, and that seed draws the same samples.
    unseeded = str(tmp_path / "u.npy")
    assert cli.main(["sample", run_dir, "--n", "10", "--out", unseeded]) == 0
    seed = capsys.readouterr().out.strip().rsplit("--seed ", 1)[1]
    assert cli.main(["sample", run_dir, "--n", "10", "--seed", seed, "--out", npy]) == 0
    np.testing.assert_array_equal(np.load(unseeded), np.load(npy))


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["train", "--data", "digits", "--out", "x", "--epochs", "0"],
            "--epochs: expected a positive integer up to 2147483647, got 0",
        ),
        (["train", "--data", "digits", "--out", "x", "--latent-dim", "0"], "--latent-dim: expected a positive"),
        (
            ["train", "--data", "digits", "--out", "x", "--posterior", "iaf,banded"],
            "--posterior: expected one of diagonal, full, iaf, or one per layer such as iaf,diagonal, got 'iaf,banded'",
        ),
        (["train", "--data", "digits", "--out", "x", "--hidden-units", "64,x"], "comma-separated"),
        (
            ["train", "--data", "digits", "--out", "x", "--image-size", "32x32"],
            "--image-size: expected HEIGHT,WIDTH in pixels such as 32,32, got '32x32'",
        ),
        (["fly"], "invalid choice: 'fly'"),
        (
            ["export", "run", "exported"],
            "tfvae export: error: unrecognized arguments: exported (see `tfvae export --help`)",
        ),
        (
            ["serve", "exported", "--workers", "4"],
            "tfvae serve: error: unrecognized arguments: --workers 4 (see `tfvae serve --help`)",
        ),
        (
            ["train", "--data", "digits", "--out", "x", "--seed", "99999999999999999999"],
            "--seed: expected an integer in",
        ),
        (
            ["train", "--data", "digits", "--out", "x", "--batch-size", "99999999999999999999999"],
            "--batch-size: expected a positive integer up to 2147483647",
        ),
        (
            ["train", "--data", "digits", "--out", "x", "--learning-rate", "inf"],
            "--learning-rate: expected a finite number",
        ),
        (["train", "--data", "digits", "--out", "x", "--beta", "1e309"], "--beta: expected a finite number"),
        (
            ["train", "--data", "digits", "--out", "x", "--pixelcnn-dropout", "1"],
            "--pixelcnn-dropout: expected a rate in [0, 1), got '1'",
        ),
        (["train", "--data", "digits", "--out", "x", "--dropout", "-0.1"], "--dropout: expected a rate in [0, 1)"),
        (
            ["train", "--data", "digits", "--out", "x", "--decoder-dropout", "1.5"],
            "--decoder-dropout: expected a rate in [0, 1)",
        ),
        (
            ["train", "--data", "digits", "--out", "x", "--lr-schedule", "linear"],
            "argument --lr-schedule: invalid choice: 'linear' (choose from 'constant', 'cosine')",
        ),
        (["sample", "run", "--out", "s.png", "--seed", "99999999999999999999"], "--seed: expected an integer"),
        (["evaluate", "run", "--seed", "99999999999999999999"], "--seed: expected an integer"),
        (["evaluate", "run", "--num-samples", "99999999999999999999"], "--num-samples: expected a positive integer"),
        (["report", "run", "--seed", "-1"], "--seed: expected an integer"),
        (["export", "run", "--version", "99999999999999999999"], "--version: expected a positive integer up to"),
        (["serve", "exported", "--port", "70000"], "--port: expected a TCP port in [1, 65535]"),
        (["serve", "exported", "--batch-delay-ms", "inf"], "--batch-delay-ms: expected a finite number"),
        (["serve", "exported", "--batch-delay-ms", "5000"], "--batch-delay-ms: expected milliseconds in [0, 1000]"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--out", "{tmp}/r"], "--data is required for a new run (or pass --resume"),
        (["train", "--out", "{tmp}/r", "--resume"], "no run to resume"),
        (["train", "--data", "/no/such.npz", "--out", "{tmp}/r"], "does not exist"),
        (["train", "--data", "imagenet", "--out", "{tmp}/r"], "Unknown dataset 'imagenet'"),
        (["train", "--data", "digits", "--out", "{tmp}/r", "--activation", "zz"], "not a Keras activation"),
        (
            ["train", "--data", "digits", "--out", "{tmp}/r", "--ema-momentum", "1"],
            "ema_momentum must be in [0, 1) (0: no averaging; 0.999 averages about the last 1000 updates); got 1.0",
        ),
        (["sample", "{tmp}", "--out", "{tmp}/s.png"], "holds no model.keras"),
        (["sample", "{tmp}", "--out", "{tmp}/s.gif"], "must end in .png, .npy or .csv"),
        (
            ["train", "--data", "digits", "--out", "{tmp}/r", "--hidden-units", "1000000000"],
            "Training this model (mlp [1000000000], latent 16, batch 128 x 1 samples, examples of shape [64]) needs "
            "about 4,530.0 GiB, more than this machine's",
        ),
        (["train", "--data", "digits", "--out", "{tmp}/r", "--num-samples", "100000000"], "use smaller --hidden-units"),
        (
            ["train", "--data", "digits", "--out", "{tmp}/r", "--prior", "vamp", "--pseudo-inputs", "1000000000"],
            "--pseudo-inputs",
        ),
        (
            ["train", "--data", "digits", "--out", "{tmp}/r", "--model", "autoencoder", "--beta", "4"],
            "--beta does nothing with --model autoencoder, which has no posterior, prior or KL; leave it out.",
        ),
        (["train", "--data", "digits", "--out", "{tmp}/r", "--pseudo-inputs", "50"], "nothing without --prior vamp"),
        (["train", "--data", "digits", "--out", "{tmp}/r", "--flow-steps", "4"], "nothing without --posterior iaf"),
        (["train", "--data", "digits", "--out", "{tmp}/r", "--filters", "8,16"], "nothing without --arch conv"),
        (
            ["train", "--data", "digits", "--out", "{tmp}/r", "--arch", "conv", "--dropout", "0.1"],
            "--dropout does nothing with --arch conv (it drops the MLPs' hidden units); leave it out.",
        ),
        (
            ["train", "--data", "digits", "--out", "{tmp}/r", "--arch", "conv", "--decoder-dropout", "0.1"],
            "--decoder-dropout does nothing with --arch conv (it drops the MLPs' hidden units); leave it out.",
        ),
        (
            ["train", "--data", "digits", "--out", "{tmp}/r", "--pixelcnn-dropout", "0.5"],
            "--pixelcnn-dropout does nothing without --likelihood pixelcnn_logistic_mixture",
        ),
        (
            ["train", "--data", "digits", "--out", "{tmp}/r", "--pixelcnn-blocks", "2"],
            "--pixelcnn-blocks does nothing without --likelihood pixelcnn_logistic_mixture",
        ),
        (
            ["train", "--data", "digits", "--out", "{tmp}/r", "--model", "hierarchical", "--latent-dims", "4,4"]
            + ["--latent-dim", "8"],
            "--latent-dim does nothing with --model hierarchical, whose layers' sizes are --latent-dims",
        ),
        (["serve", "{tmp}", "--tls-cert", "{tmp}/cert.pem"], "--tls-cert and --tls-key go together"),
        (["serve", "{tmp}", "--tfserving-grpc"], "--tfserving-grpc serves on the gRPC port: add --grpc-port"),
        (
            ["serve", "{tmp}", "--tls-cert", "{tmp}/c.pem", "--tls-key", "{tmp}/k.pem"],
            "--tls-cert {tmp}/c.pem: no such",
        ),
        (["serve", "{tmp}", "--api-key-file", "{tmp}/keys"], "cannot read the API key file {tmp}/keys"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message.replace("{tmp}", str(tmp_path)) in error


def test_console_script_error_is_one_line_without_traceback(tmp_path):
    """The installed `tfvae` entry point, in a real process: stderr is just the error."""
    script = os.path.join(os.path.dirname(sys.executable), "tfvae")
    result = subprocess.run(
        [script, "train", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"tfvae train: error: Dataset file '{tmp_path / 'missing.npz'}' does not exist. Give a path to an .npz "
        "file or one of the bundled datasets: digits, photo_patches, photo_patches_dense."
    ]


def test_report_writes_every_picture(run_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli.main(["report", run_dir, "--data", "digits", "--out", str(out)]) == 0
    names = ("samples.png", "reconstructions.png", "learning_curve.png", "latent_map.png", "interpolation.png")
    for name in names:
        with open(out / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    assert cli.main(["report", str(tmp_path), "--data", "digits", "--out", str(out)]) == 2
    assert "holds no model.keras" in capsys.readouterr().err


def test_latent_map_of_a_two_dimensional_latent_space(tmp_path, digits):
    import tfvae
    from tfvae import plots

    model = tfvae.VAE((64,), 2, hidden_units=(16,), seed=0)
    path = plots.save_latent_map(model, digits.test, str(tmp_path / "map.png"))
    assert os.path.getsize(path) > 1000


def test_a_picture_cut_off_mid_write_leaves_the_previous_one_whole(tmp_path, digits, monkeypatch):
    import matplotlib.figure

    import tfvae
    from tfvae import files, plots

    model = tfvae.VAE((64,), 2, hidden_units=(16,), seed=0)
    path = plots.save_latent_map(model, digits.test, str(tmp_path / "map.png"))
    with open(path, "rb") as f:
        before = f.read()

    def cut_off(figure, target, **kwargs):
        with open(target, "wb") as f:
            f.write(before[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", cut_off)
    with pytest.raises(KeyboardInterrupt):
        plots.save_latent_map(model, digits.test, path)
    with open(path, "rb") as f:
        assert f.read() == before
    files.remove_stale_temporaries(str(tmp_path))
    assert os.listdir(tmp_path) == ["map.png"]


def test_a_failed_write_names_the_file_asked_for_not_its_temporary(tmp_path):
    from tfvae import files

    path = str(tmp_path / "samples.npy")
    with pytest.raises(OSError) as caught, files.atomic_path(path) as temporary:
        raise OSError(errno.ENOSPC, "No space left on device", temporary)
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, path)
    assert str(caught.value) == f"[Errno {errno.ENOSPC}] No space left on device: '{path}'"


def test_conditional_training_from_the_cli_draws_one_row_per_class(tmp_path, capsys):
    out = str(tmp_path / "cvae")
    assert cli.main(["train", "--data", "digits", "--conditional", "--out", out, *TINY]) == 0
    model = keras.models.load_model(os.path.join(out, "model.keras"))
    assert model.conditional and model.num_classes == 10
    assert os.path.getsize(os.path.join(out, "samples.png")) > 0
    npy = str(tmp_path / "s.npy")
    assert cli.main(["sample", out, "--n", "4", "--labels", "3,7", "--seed", "0", "--out", npy]) == 0
    expected = model.sample(4, labels=np.array([3, 7, 3, 7]), seed=0).numpy()
    np.testing.assert_allclose(np.load(npy), expected, atol=1e-6)
    assert cli.main(["sample", out, "--n", "2", "--labels", "3,7,9", "--out", npy]) == 2
    assert "--labels names 3 classes, but --n 2 samples would leave out 9" in capsys.readouterr().err
    assert cli.main(["evaluate", out, "--data", "digits", "--limit", "20", "--num-samples", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["examples"] == 20


def test_images_of_four_channels_train_and_report_without_pictures_they_cannot_show(tmp_path, capsys):
    path, out = str(tmp_path / "rgbn.npz"), str(tmp_path / "rgbn")
    np.savez(path, train=np.random.default_rng(0).integers(0, 256, (40, 4, 4, 4), np.uint8))  # e.g. RGB + infrared
    assert cli.main(["train", "--data", path, "--likelihood", "discretized_logistic", "--out", out, *TINY]) == 0
    assert not os.path.exists(os.path.join(out, "samples.png")) and os.path.exists(os.path.join(out, "model.keras"))
    assert cli.main(["report", out, "--out", str(tmp_path / "report")]) == 0
    assert sorted(os.listdir(tmp_path / "report")) == ["latent_map.png", "learning_curve.png"]
    assert cli.main(["sample", out, "--out", str(tmp_path / "s.png")]) == 2
    assert "does not model grey or colour images (examples of shape (4, 4, 4))" in capsys.readouterr().err
    assert cli.main(["sample", out, "--n", "3", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (3, 4, 4, 4)


def test_conditional_training_on_unlabelled_data_is_one_line(tmp_path, capsys):
    path = str(tmp_path / "plain.npz")
    np.savez(path, train=np.zeros((40, 4)))
    assert cli.main(["train", "--data", path, "--conditional", "--out", str(tmp_path / "r"), *TINY]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "train_labels, valid_labels missing" in error


def test_autoencoder_and_vamp_prior_presets(tmp_path, capsys):
    autoencoder = str(tmp_path / "ae")
    assert cli.main(["train", "--data", "digits", "--model", "autoencoder", "--out", autoencoder, *TINY]) == 0
    assert isinstance(keras.models.load_model(os.path.join(autoencoder, "model.keras")), tfvae.Autoencoder)
    assert not os.path.exists(os.path.join(autoencoder, "samples.png"))
    with open(os.path.join(autoencoder, "history.json")) as f:
        assert "bits_per_dim" not in json.load(f)  # its loss codes x given a code it does not pay for
    assert "bits/dim" not in capsys.readouterr().out
    assert cli.main(["sample", autoencoder, "--out", str(tmp_path / "s.png")]) == 2
    assert "cannot sample" in capsys.readouterr().err
    vamp = str(tmp_path / "vamp")
    assert cli.main(["train", "--data", "digits", "--prior", "vamp", "--pseudo-inputs", "7", "--out", vamp, *TINY]) == 0
    prior = keras.models.load_model(os.path.join(vamp, "model.keras")).prior_layer
    assert isinstance(prior, tfvae.VampPrior) and prior.num_components == 7
    assert (
        cli.main(
            [
                "train",
                "--data",
                "digits",
                "--model",
                "autoencoder",
                "--prior",
                "vamp",
                "--out",
                str(tmp_path / "bad"),
                *TINY,
            ]
        )
        == 2
    )
    assert "no prior" in capsys.readouterr().err


def test_sizes_past_the_machine_memory_are_refused_before_allocating(run_dir, capsys):
    assert cli.main(["sample", run_dir, "--n", "2000000000", "--out", os.path.join(run_dir, "s.npy")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "2,000,000,000 samples needs about" in error and "a smaller --n" in error


def test_tensorflow_file_errors_are_one_line(monkeypatch, capsys):
    import tensorflow as tf

    def denied(args):
        raise tf.errors.PermissionDeniedError(None, None, "exported/gen/.staging-1/variables; Permission denied\nmore")

    from tfvae import commands

    monkeypatch.setattr(commands, "_export", denied)
    assert cli.main(["export", "run"]) == 2
    assert capsys.readouterr().err.strip() == (
        "tfvae export: error: exported/gen/.staging-1/variables; Permission denied"
    )


@pytest.mark.parametrize("columns", [5, 16], ids=["no_square", "a_square_of_columns"])
def test_flipping_examples_that_are_no_images_is_refused_with_their_shape(tmp_path, capsys, columns):
    table = tmp_path / "table.npz"
    np.savez(table, train=np.random.default_rng(0).normal(size=(40, columns)).astype(np.float32))
    argv = ["train", "--data", str(table), "--likelihood", "gaussian", "--out", str(tmp_path / "r")]
    assert cli.main([*argv, "--augment", "hflip"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"holds examples of shape ({columns},), which are no images" in error
    assert not (tmp_path / "r").exists()  # refused before the run wrote anything
