"""tfvae.evaluate and `tfvae evaluate`: honest numbers and clear errors."""

import json
import os
import re
import types

import numpy as np
import pytest
from helpers import tiny_vae
from test_importance_sampling import LATENT_DIM, linear_model, make_linear_gaussian

import tfvae
from tfvae import checkpointing, cli
from tfvae.evaluation import REPORT_KEYS


def test_nll_matches_the_exact_linear_gaussian_value():
    data = make_linear_gaussian()
    model = linear_model(data, "diagonal", loc_shift=0.3, scale_factor=1.4)
    report = tfvae.evaluate(model, data["x"], num_samples=2000, batch_size=64, seed=1)
    truth = -data["log_px"].mean()
    assert abs(report["nll"] - truth) < 3 * report["nll_stderr"]
    assert abs(report["nll"] - truth) < 0.02  # Monte Carlo error alone is far smaller still
    assert report["nll"] <= -report["elbo"]
    assert report["examples"] == len(data["x"]) and report["num_samples"] == 2000
    assert report["active_units"] == LATENT_DIM


def test_a_latent_the_encoder_ignores_is_not_active():
    data = make_linear_gaussian()
    data["gain"] = data["gain"].copy()
    data["gain"][1] = 0.0  # E_q[z_2] no longer depends on x
    model = linear_model(data, "diagonal")
    assert tfvae.evaluation.active_units(model, data["x"]) == [1]


@pytest.fixture(scope="module")
def trained(digits):
    model = tiny_vae(latent_dim=4)
    model.fit(digits.train, epochs=5, batch_size=64, verbose=0)
    return model


def test_nll_is_below_the_negative_elbo_and_more_samples_never_hurt(trained, digits):
    x = digits.test[:120]
    report = tfvae.evaluate(trained, x, num_samples=300, seed=0)
    assert set(report) == set(REPORT_KEYS)
    assert report["nll"] < -report["elbo"]
    np.testing.assert_allclose(report["elbo"], -(report["reconstruction"] + report["kl"]), rtol=1e-5)
    few = trained.log_likelihood(x, num_samples=5, seed=1)
    many = trained.log_likelihood(x, num_samples=1000, seed=2)
    gain = many - few  # log p(x) estimates rise (NLL falls) with K, in expectation
    assert gain.mean() > -3 * gain.std(ddof=1) / np.sqrt(len(x))


def test_evaluate_is_repeatable_with_a_seed(trained, digits):
    first = tfvae.evaluate(trained, digits.valid[:50], num_samples=50, seed=4)
    assert first == tfvae.evaluate(trained, digits.valid[:50], num_samples=50, seed=4)


def test_evaluate_returns_the_scores_its_nll_averages(trained, digits):
    x = digits.valid[:40]
    report, log_px = tfvae.evaluate(trained, x, num_samples=50, seed=4, return_log_likelihoods=True)
    assert report == tfvae.evaluate(trained, x, num_samples=50, seed=4)
    assert log_px.shape == (40,)
    np.testing.assert_allclose(log_px.mean(), -report["nll"], rtol=1e-6)
    # The same estimates as log_likelihood's, example by example.
    np.testing.assert_allclose(log_px, trained.log_likelihood(x, num_samples=50, seed=4), rtol=1e-6)


@pytest.mark.slow
def test_an_evaluation_killed_part_way_continues_from_its_checkpoint_to_the_same_report(
    trained, digits, tmp_path, monkeypatch
):
    x, path = digits.test[:100], str(tmp_path / "estimate.npz")
    settings = dict(num_samples=40, batch_size=16, seed=3)
    whole = tfvae.evaluate(trained, x, **settings)
    # A clock that moves one second per reading: the file's seconds count the batches.
    ticks = iter(range(1000))
    monkeypatch.setattr(checkpointing, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    computed = []  # the batches each call estimates
    estimate = type(trained)._batch_log_likelihood

    def killed_after_three(self, x_batch, *args):
        if len(computed) == 3:
            raise KeyboardInterrupt
        computed.append(len(x_batch))
        return estimate(self, x_batch, *args)

    monkeypatch.setattr(type(trained), "_batch_log_likelihood", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        tfvae.evaluate(trained, x, checkpoint=path, **settings)
    kept = checkpointing.read_estimate_checkpoint(path)
    assert np.isnan(kept["estimates"]).sum() == 100 - 3 * 16  # three batches of 16 kept, the rest to do
    assert kept["seconds"] == 3.0
    counted = []
    monkeypatch.setattr(
        type(trained),
        "_batch_log_likelihood",
        lambda self, x_batch, *args: counted.append(len(x_batch)) or estimate(self, x_batch, *args),
    )
    assert tfvae.evaluate(trained, x, checkpoint=path, **settings) == whole
    assert sum(counted) == 100 - 3 * 16  # only the batches the killed call had not finished
    # The resumed call's four batches add to the killed call's three.
    assert checkpointing.read_estimate_checkpoint(path)["seconds"] == 3.0 + 4.0
    # Other settings are another estimate: the file is not reused for them.
    counted.clear()
    other = tfvae.evaluate(trained, x, checkpoint=path, **{**settings, "seed": 4})
    assert sum(counted) == 100 and other == tfvae.evaluate(trained, x, **{**settings, "seed": 4})
    assert checkpointing.read_estimate_checkpoint(path)["seconds"] == 7.0  # its own seven batches alone
    # Killed again, and continued in smaller steps (as after a kill for memory): the kept
    # examples are not estimated again, and the report is the uninterrupted one but for
    # the order in which the samples' chunks are summed.
    path = str(tmp_path / "smaller_steps.npz")
    computed.clear()
    monkeypatch.setattr(type(trained), "_batch_log_likelihood", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        tfvae.evaluate(trained, x, checkpoint=path, **settings)
    counted.clear()
    monkeypatch.setattr(
        type(trained),
        "_batch_log_likelihood",
        lambda self, x_batch, *args: counted.append(len(x_batch)) or estimate(self, x_batch, *args),
    )
    smaller = tfvae.evaluate(trained, x, checkpoint=path, **{**settings, "batch_size": 10}, sample_batch_size=7)
    assert sum(counted) == 100 - 40  # from example 40 on: 40 to 47 were kept, 48 and 49 not
    for key in ("nll", "nll_stderr", "elbo"):
        assert smaller[key] == pytest.approx(whole[key], rel=1e-6), key


@pytest.mark.parametrize(
    "x, labels, error, message",
    [
        (lambda d: d.test * 255, None, tfvae.DataError, r"tfvae.evaluate's x: values span \[0, 255\]"),
        (lambda d: d.test[:, :10], None, tfvae.DataError, r"examples have shape \(10,\)"),
        (lambda d: d.test, lambda d: d.labels["test"], tfvae.ConfigError, "VAE is not conditional"),
        (lambda d: d.test[:0], None, tfvae.ConfigError, "at least one example"),
    ],
    ids=["range", "shape", "labels", "empty"],
)
def test_evaluate_checks_its_examples_first(trained, digits, x, labels, error, message):
    with pytest.raises(error, match=message):
        tfvae.evaluate(trained, x(digits), labels=labels and labels(digits), num_samples=2)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("runs") / "eval")
    assert (
        cli.main(
            [
                "train",
                "--data",
                "digits",
                "--out",
                out,
                "--epochs",
                "2",
                "--latent-dim",
                "3",
                "--hidden-units",
                "32",
                "--quiet",
                "--no-pictures",
            ]
        )
        == 0
    )
    return out


@pytest.mark.slow
def test_cli_json_line_has_every_key_and_honours_limit_and_split(run_dir, capsys):
    assert cli.main(["evaluate", run_dir, "--data", "digits", "--num-samples", "20", "--limit", "7", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report) == set(REPORT_KEYS) and report["examples"] == 7 and report["num_samples"] == 20
    assert cli.main(["evaluate", run_dir, "--data", "digits", "--split", "valid", "--num-samples", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["examples"] == 180
    assert not [name for name in os.listdir(run_dir) if "partial" in name]  # the kept batches go with the report
    # One example has no standard error: null, not NaN, which strict JSON readers refuse.
    assert cli.main(["evaluate", run_dir, "--data", "digits", "--num-samples", "5", "--limit", "1", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1], parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))["nll_stderr"] is None
    assert any("(K=5, 1 example, so no standard error)" in line for line in lines)


@pytest.mark.slow
def test_cli_evaluate_interrupted_says_the_same_command_continues(run_dir, monkeypatch, capsys):
    argv = ["evaluate", run_dir, "--data", "digits", "--num-samples", "10", "--limit", "150", "--batch-size", "50"]
    argv += ["--json"]
    assert cli.main(argv) == 0
    whole = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    estimate, calls = tfvae.VAE._batch_log_likelihood, []

    def interrupted_at_the_second_batch(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return estimate(self, *args)

    monkeypatch.setattr(tfvae.VAE, "_batch_log_likelihood", interrupted_at_the_second_batch)
    assert cli.main(argv) == 130
    message = capsys.readouterr().err.strip().splitlines()[-1]
    partial = re.search(r"kept in (\S+\.partial\.npz):", message).group(1)
    assert message == (
        f"tfvae evaluate: interrupted; the finished batches are kept in {partial}: the same command continues from them"
    )
    assert os.path.dirname(partial) == run_dir and os.path.basename(partial).startswith("evaluation-test-")
    monkeypatch.setattr(tfvae.VAE, "_batch_log_likelihood", estimate)
    # Another evaluation of the run in between, with other settings, keeps a file of its own.
    assert cli.main([*argv[:4], "--num-samples", "5", "--limit", "60", "--batch-size", "50"]) == 0
    assert os.path.exists(partial)
    calls.clear()
    monkeypatch.setattr(
        tfvae.VAE, "_batch_log_likelihood", lambda self, *args: calls.append(1) or estimate(self, *args)
    )
    # A smaller memory budget (after a kill for memory) continues from the same file.
    assert cli.main([*argv, "--memory-budget-mib", "1"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == whole
    assert len(calls) == 2 and not os.path.exists(partial)  # batches 2 and 3 of 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--split", "holdout"], "invalid choice: 'holdout'"),
        (["--num-samples", "0"], "--num-samples: expected a positive integer up to 2147483647, got 0"),
        (["--num-samples", "-5"], "--num-samples: expected a positive integer up to 2147483647, got -5"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(run_dir, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", run_dir, "--data", "digits", *argv])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error


def test_cli_run_dir_without_a_model_and_data_of_another_shape(run_dir, tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path), "--data", "digits"]) == 2
    assert "holds no model.keras" in capsys.readouterr().err
    other = tmp_path / "other.npz"
    np.savez(other, train=np.zeros((20, 10)), test=np.zeros((5, 10)))
    assert cli.main(["evaluate", run_dir, "--data", str(other)]) == 2
    assert "examples have shape (10,), but the model" in capsys.readouterr().err
    no_test = tmp_path / "no_test.npz"
    np.savez(no_test, train=np.zeros((20, 64)))
    assert cli.main(["evaluate", run_dir, "--data", str(no_test), "--split", "test"]) == 2
    assert "has no 'test' split; use --split train." in capsys.readouterr().err
    # Without a test split the default is valid, which other data without one cannot have.
    assert cli.main(["evaluate", run_dir, "--data", str(no_test)]) == 2
    assert "has no 'valid' split" in capsys.readouterr().err
