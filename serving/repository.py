"""Finding and loading the models of an export repository.

A model version is a numeric folder with a manifest.json (written last by
`tfvae export`); its manifest says which part (decoder or encoder) the folder is, and
its tensors. A version is served only when its manifest passes `tfvae.manifest.check`,
every part the manifest lists holds the same manifest (an export is served whole or
not at all), and its files match the manifest's sha256. Every refused version is
logged with its reason.
"""

import dataclasses
import json
import logging
import os

import numpy as np

from tfvae.errors import TfvaeError
from tfvae.manifest import MANIFEST_FILE, PRIOR_FILE, check, sha256_file
from tfvae.serving.backends import load_backend

logger = logging.getLogger("tfvae.serving")


class RepositoryError(TfvaeError):
    """An export repository that cannot be served."""


@dataclasses.dataclass
class ModelVersion:
    """One servable model version: its tensors, its signatures and its runtime."""

    name: str
    version: str
    part: str  # "decoder" or "encoder"
    manifest: dict
    inputs: list  # [{"name", "datatype", "shape"}], shape[0] is "batch"
    outputs: list
    signatures: dict  # signature name -> output names
    backend: object
    prior_components: dict = None  # a mixture prior's {"loc", "scale" | "scale_tril"} arrays
    batcher: object = None

    @property
    def input_names(self):
        return [tensor["name"] for tensor in self.inputs]

    @property
    def output_names(self):
        return [tensor["name"] for tensor in self.outputs]


def _verify(folder, files):
    for relative, expected in files.items():
        path = os.path.join(folder, relative)
        if not os.path.isfile(path) or sha256_file(path) != expected:
            raise RepositoryError(f"{path} is missing or differs from its manifest's sha256")


def _read_manifest(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as error:  # ValueError: not JSON, or not UTF-8
        raise RepositoryError(f"{path} cannot be read as JSON ({error})") from None


def _check_parts_agree(export_dir, folder, manifest):
    """Every part the manifest lists holds this same manifest (the export is whole)."""
    for part, entry in manifest["parts"].items():
        path = os.path.join(export_dir, *entry["path"].split("/"), MANIFEST_FILE)
        if os.path.normpath(os.path.dirname(path)) == os.path.normpath(folder):
            continue
        if not os.path.isfile(path) or _read_manifest(path) != manifest:
            raise RepositoryError(
                f"the export is incomplete: its {part} ({entry['path']}) has no manifest, or another "
                "export's; export again (tfvae export --overwrite) or remove this version"
            )


def _load_version(export_dir, name, version, backend_kind, threads):
    folder = os.path.join(export_dir, name, version)
    manifest = check(_read_manifest(os.path.join(folder, MANIFEST_FILE)), os.path.join(folder, MANIFEST_FILE))
    _check_parts_agree(export_dir, folder, manifest)
    entries = [(part, entry) for part, entry in manifest["parts"].items() if entry["model_name"] == name]
    if not entries:
        raise RepositoryError(f"{folder}/{MANIFEST_FILE} describes no part named {name!r}")
    part, entry = entries[0]
    _verify(folder, entry["files"])
    # A decoder that takes uniform noise draws its image pixel by pixel.
    sequential = part == "decoder" and bool(manifest.get("decoder_noise"))
    backend = load_backend(backend_kind, folder, entry, threads, sequential)
    inputs = [
        {**tensor, "classes": manifest["num_classes"]} if tensor["name"] == "labels" else tensor
        for tensor in entry["inputs"]
    ]
    components = None
    if PRIOR_FILE in entry["files"]:  # verified above with the other files
        with np.load(os.path.join(folder, PRIOR_FILE), allow_pickle=False) as archive:
            components = {key: archive[key] for key in archive.files}
        top = components["loc"].shape[-1]
        if top > manifest["latent_dim"]:
            raise RepositoryError(
                f"{PRIOR_FILE}'s components have {top} dimensions, more than the manifest's "
                f"latent_dim {manifest['latent_dim']}"
            )
    return ModelVersion(
        name=name,
        version=version,
        part=part,
        manifest=manifest,
        inputs=inputs,
        prior_components=components,
        outputs=entry["outputs"],
        signatures=entry["signatures"],
        backend=backend,
    )


@dataclasses.dataclass
class Repository:
    """What `load_repository` found.

    Attributes:
      models: `{name: {version: ModelVersion}}`, every servable version.
      refused: `{name: reason}` for each model whose newest version (the highest with
        a manifest) could not be served; the model may still serve an older one.
    """

    models: dict
    refused: dict


def every_version(models):
    """Every version in `{name: {version: ModelVersion}}`, each once."""
    return [model for versions in models.values() for model in versions.values()]


def load_repository(export_dir, backend_kind="onnx", threads=None, loaded=None, latest=None, known=None, skip=()):
    """Every servable model version in `export_dir`.

    Args:
      export_dir, backend_kind, threads: where, and how to run each version.
      loaded: a previous `Repository.models`: versions whose manifest is unchanged are
        reused as they are (their runtimes and batchers), not loaded again.
      latest: serve only the `latest` highest servable versions of each model (None: all).
        A broken newest version leaves the ones below it serving.
      known: a previous `Repository.refused`: reasons already logged are not logged again.
      skip: model names not to load (unloaded through the repository API); with any, an
        empty result is no error.

    Returns:
      `Repository`.

    Raises:
      RepositoryError: the folder is missing or holds no servable model.
    """
    if not os.path.isdir(export_dir):
        raise RepositoryError(f"{export_dir} is not a folder; give the --out folder of `tfvae export`.")
    models, refused, loaded, known = {}, {}, loaded or {}, known or {}
    for name in sorted(os.listdir(export_dir)):
        model_folder = os.path.join(export_dir, name)
        if name.startswith(".") or name in skip or not os.path.isdir(model_folder):
            continue
        # Newest first: a model's refusal is its newest version's, and `latest` counts down.
        versions = sorted((v for v in os.listdir(model_folder) if v.isdigit() and v[0] != "0"), key=int, reverse=True)
        for version in versions:
            if latest is not None and len(models.get(name, {})) >= latest:
                break
            if not os.path.isfile(os.path.join(model_folder, version, MANIFEST_FILE)):
                logger.warning(
                    "not serving %s version %s: it has no %s (an export not finished)", name, version, MANIFEST_FILE
                )
                continue
            previous = loaded.get(name, {}).get(version)
            if previous is not None and _manifest_unchanged(export_dir, previous):
                models.setdefault(name, {})[version] = previous
                continue
            try:
                model = _load_version(export_dir, name, version, backend_kind, threads)
            except Exception as error:  # noqa: BLE001 - one bad version must not stop the others
                reason = f"version {version}: {error}"
                if name not in models and name not in refused:  # newer than every servable one
                    refused[name] = reason
                if known.get(name) != reason:
                    logger.error("not serving %s version %s: %s", name, version, error)
                continue
            models.setdefault(name, {})[version] = model
    if not models and not skip:
        reasons = "".join(f"; {name} {reason}" for name, reason in refused.items())
        raise RepositoryError(
            f"{export_dir} holds no servable model (no <name>/<version>/{MANIFEST_FILE} that passes its "
            f"checks{reasons}); write one with `tfvae export`."
        )
    return Repository(models=models, refused=refused)


def _manifest_unchanged(export_dir, model):
    """Whether `model`'s version folder still holds the manifest it was loaded with (an
    export with --overwrite replaces the folder, and with it the manifest)."""
    path = os.path.join(export_dir, model.name, model.version, MANIFEST_FILE)
    try:
        return _read_manifest(path) == model.manifest
    except RepositoryError:
        return False


def latest(versions):
    """The highest-numbered version of a model."""
    return versions[max(versions, key=int)]
