"""Tables: CSV files, a Gaussian likelihood standardised inside the model, answers in the table's units."""

import json
import os
import re

import keras
import numpy as np
import pytest

import tfvae
from tfvae import DataError, cli, training


def write_table(path, rows, header=("height_mm", "weight_g", "temperature_c")):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        f.writelines(",".join(f"{v:.6g}" for v in row) + "\n" for row in rows)
    return str(path)


def correlated_rows(n, seed=0):
    """Rows in large, unequal units: a 1-d factor plus noise, means ~1000, 50 and 37."""
    rng = np.random.default_rng(seed)
    factor = rng.standard_normal((n, 1))
    return np.hstack([1000 + 80 * factor, 50 + 4 * factor, 37 + 0.5 * factor]) + rng.normal(0, [8, 0.4, 0.05], (n, 3))


@pytest.mark.slow
def test_a_csv_table_trains_and_decodes_in_the_tables_units(tmp_path, capsys):
    path = write_table(tmp_path / "table.csv", correlated_rows(400))
    out = str(tmp_path / "run")
    assert (
        cli.main(
            [
                "train",
                "--data",
                path,
                "--likelihood",
                "gaussian",
                "--latent-dim",
                "1",
                "--hidden-units",
                "32",
                "--epochs",
                "25",
                "--batch-size",
                "32",
                "--learning-rate",
                "0.01",
                "--quiet",
                "--out",
                out,
            ]
        )
        == 0
    )
    pictures = sorted(name for name in os.listdir(out) if name.endswith(".png"))
    assert pictures == ["learning_curve.png"]  # rows of a table are no pictures
    assert cli.main(["sample", out, "--n", "4", "--out", str(tmp_path / "s.png")]) == 2
    assert "--out FILE.npy" in capsys.readouterr().err
    assert cli.main(["sample", out, "--n", "4", "--seed", "3", "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 3)
    # As a table: the training table's header, rows in its units (the same draws as the .npy).
    assert cli.main(["sample", out, "--n", "4", "--seed", "3", "--out", str(tmp_path / "s.csv")]) == 0
    with open(tmp_path / "s.csv") as f:
        assert f.readline() == "height_mm,weight_g,temperature_c\n"
    np.testing.assert_allclose(
        np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1), np.load(tmp_path / "s.npy"), rtol=1e-6
    )
    # A table has no test split: evaluate's default is the run's own held-out rows.
    capsys.readouterr()
    scores = str(tmp_path / "scores.csv")
    assert cli.main(["evaluate", out, "--num-samples", "10", "--json", "--scores", scores]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    held_out = len(training.load_run_data(out).valid)
    report = json.loads(printed[-1])
    assert printed[0].startswith("valid: nll") and report["examples"] == held_out
    # Each row's log p(x), the anomaly score, from the same pass: their mean is -nll.
    table = np.loadtxt(scores, delimiter=",", skiprows=1)
    assert open(scores).readline() == "example,log_px\n"
    np.testing.assert_array_equal(table[:, 0], np.arange(held_out))
    np.testing.assert_allclose(table[:, 1].mean(), -report["nll"], atol=1e-5)
    assert cli.main(["evaluate", out, "--scores", str(tmp_path / "scores.txt")]) == 2
    assert "--scores must end in .csv or .npy" in capsys.readouterr().err
    unwritable = str(tmp_path / "scores.csv" / "inside.csv")  # a folder that is a file
    assert cli.main(["evaluate", out, "--num-samples", "10", "--scores", unwritable]) == 2
    assert f"--scores {unwritable}: cannot write in" in capsys.readouterr().err  # said before the pass
    assert not [name for name in os.listdir(out) if "partial" in name]
    # New rows, one of them far off: every row is scored, in the file's order.
    new_rows = correlated_rows(30, seed=7)
    new_rows[17, 1] = 80.0  # weight 30 g over the rest, heights as usual
    assert (
        cli.main(
            ["evaluate", out, "--data", write_table(tmp_path / "new.csv", new_rows), "--split", "train"]
            + ["--num-samples", "20", "--scores", scores]
        )
        == 0
    )
    table = np.loadtxt(scores, delimiter=",", skiprows=1)
    assert len(table) == 30 and np.argmin(table[:, 1]) == 17
    # Three rows are a table too: none is held out of them for a validation split.
    few = write_table(tmp_path / "few.csv", new_rows[16:19])
    assert (
        cli.main(["evaluate", out, "--data", few, "--split", "train", "--num-samples", "20", "--scores", scores]) == 0
    )
    table = np.loadtxt(scores, delimiter=",", skiprows=1)
    assert len(table) == 3 and np.argmin(table[:, 1]) == 1
    model = keras.models.load_model(os.path.join(out, "model.keras"))  # the statistics travel with it
    rows = training.load_run_data(out).valid
    reconstructed = model.reconstruct(rows).numpy()  # decode(E_q[z|x])
    errors = np.abs(reconstructed - rows).mean(axis=0)
    spread = rows.std(axis=0)
    assert np.all(errors < 0.5 * spread), (errors, spread)  # in the table's units, far below its spread
    np.testing.assert_allclose(reconstructed.mean(axis=0), rows.mean(axis=0), rtol=0.02)
    # A fresh model's predictive spread is the data's (standardised units start at 1).
    fresh = training.build_model_for(training.read_config(out), training.load_run_data(out))
    np.testing.assert_allclose(
        fresh.likelihood_layer.data_scale, training.load_splits(training.read_config(out)).train.std(axis=0), rtol=1e-4
    )


@pytest.mark.slow
def test_log_likelihood_ranks_anomalous_rows_below_normal_ones(tmp_path):
    train = correlated_rows(400, seed=1)
    data = tfvae.load_dataset(write_table(tmp_path / "t.csv", train), likelihood="gaussian")
    loc, scale = tfvae.data.standardization(data.train)
    vae = tfvae.VAE(
        (3,), 1, hidden_units=(32,), seed=0, likelihood=tfvae.GaussianLikelihood((3,), data_loc=loc, data_scale=scale)
    )
    vae.compile(optimizer=keras.optimizers.Adam(0.01))
    vae.fit(data.train, epochs=25, batch_size=32, verbose=0)
    normal = correlated_rows(50, seed=2).astype("float32")
    anomalous = normal.copy()
    anomalous[:, 1] = 50 - 4 * (anomalous[:, 0] - 1000) / 80  # weight against height: breaks the factor
    scores = vae.log_likelihood(np.vstack([normal, anomalous]), num_samples=100, seed=0)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score([0] * 50 + [1] * 50, -scores) > 0.9


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,b\n1,2\n3,x\n", r"line 3, column 'b': 'x' is not a number"),
        ("a,b\n1,2\n3\n", r"line 3: 1 cells, but the table has 2 columns"),
        ("a,b\n1,\n", r"line 2, column 'b': '' is not a number"),
        ("a,b\n1,nan\n", r"'nan' is not a number.*impute"),
        ("a;b\n1,5;2\n", r"line 1: one cell, 'a;b', with ';' in it: tables are read comma-separated"),
    ],
)
def test_a_bad_table_names_the_line_column_and_fix(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        tfvae.load_dataset(str(path), likelihood="gaussian")


def test_a_table_of_measurements_under_the_default_bernoulli_names_the_file_and_the_gaussian(tmp_path):
    path = write_table(tmp_path / "table.csv", correlated_rows(20))
    # The file alone: a table has no 'train' key for the message to name.
    with pytest.raises(DataError, match=rf"^{re.escape(path)}: values span .* --likelihood gaussian"):
        tfvae.load_dataset(path)


def test_sampled_rows_take_the_tables_header_where_it_has_one(tmp_path):
    named = write_table(tmp_path / "named.csv", correlated_rows(3))
    plain = tmp_path / "plain.csv"
    plain.write_text("1,2,3\n4,5,6\n")
    assert tfvae.data.table_columns(named, 3) == ["height_mm", "weight_g", "temperature_c"]
    generic = ["column 1", "column 2", "column 3"]
    assert tfvae.data.table_columns(str(plain), 3) == generic  # no header row
    assert tfvae.data.table_columns(named, 4) == [*generic, "column 4"]  # the file changed since
    assert tfvae.data.table_columns(str(tmp_path / "gone.csv"), 3) == generic
    assert tfvae.data.table_columns("digits", 3) == generic  # no table at all


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["plain", "excel-bom"])
def test_a_table_without_a_header_is_read_too(tmp_path, bom):
    path = tmp_path / "plain.csv"
    path.write_bytes(bom + b"1,2\r\n3,4\r\n5,6\r\n7,8\r\n9,10\r\n11,12\r\n13,14\r\n15,16\r\n17,18\r\n19,20\r\n")
    data = tfvae.load_dataset(str(path), likelihood="gaussian")
    assert data.example_shape == (2,) and len(data.train) + len(data.valid) == 10  # no first row taken for a header
