"""The README's Python examples run as printed (in a fresh folder, seeded)."""

import os
import re

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # trainings, servers and subprocesses: `make test-fast` leaves them out

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def quick_start():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Quick start (Python)") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_quick_start_runs_verbatim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    namespace = {}
    exec(compile(quick_start(), "README.md quick start", "exec"), namespace)
    vae, same, data = namespace["vae"], namespace["same"], namespace["data"]
    np.testing.assert_array_equal(same.elbo(data.test, seed=1).numpy(), vae.elbo(data.test, seed=1).numpy())
    assert os.path.isfile(tmp_path / "vae.keras")


def test_the_readme_record_example_runs_verbatim(tmp_path, monkeypatch, capsys):
    with open(README, encoding="utf-8") as f:
        text = f.read()
    example = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "write_records" in block)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md records example", "exec"), {})
    assert capsys.readouterr().out.split() == ["True", "1150", "3"]


def test_the_architecture_section_names_every_module():
    """The README's module map stays true: a module added without its line fails here."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Architecture") :]
    block = re.search(r"```\n(.*?)```", section, re.S).group(1)
    root = os.path.dirname(README)
    modules = [
        f"{package}/{name}"
        for package in ("tfvae", "tfvae/models")
        for name in sorted(os.listdir(os.path.join(root, package)))
        if name.endswith(".py") and name != "__init__.py"
    ]
    assert len(modules) > 20
    assert [m for m in modules if m not in block] == []
