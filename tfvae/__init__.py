"""tfvae: variational autoencoders in Keras 3 and TensorFlow Probability."""

import os

from tfvae._native import native_stderr_silenced

# INFO lines from TensorFlow's C++ runtime (graph optimiser sessions during ONNX
# conversion, device probing) would flood the CLI; warnings and errors still show,
# and a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

with native_stderr_silenced():
    import tensorflow  # noqa: F401  (imported here, quietly, before Keras loads it)

import keras

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"tfvae needs Keras' TensorFlow backend, but Keras is using {keras.backend.backend()!r}. "
        "Set KERAS_BACKEND=tensorflow before importing keras or tfvae."
    )

from tfvae import objectives  # noqa: E402
from tfvae.callbacks import KLWarmup  # noqa: E402
from tfvae.data import DataSplits, available_datasets, load_dataset, register_dataset  # noqa: E402
from tfvae.distributions import (  # noqa: E402
    BernoulliLikelihood,
    DiscretizedLogisticLikelihood,
    DiscretizedLogisticMixtureLikelihood,
    GaussianLikelihood,
    GaussianPosterior,
    Likelihood,
)
from tfvae.errors import ConfigError, DataError, ExportError, RunError, TfvaeError  # noqa: E402
from tfvae.evaluation import evaluate  # noqa: E402
from tfvae.exporting import ExportResult, export  # noqa: E402
from tfvae.flows import AutoregressiveNetwork, IAFPosterior, MaskedDense  # noqa: E402
from tfvae.models import VAE, Autoencoder, ConditionalVAE, HierarchicalVAE, LatentModel  # noqa: E402
from tfvae.networks import GatedDense, NetworkConfig, build_decoder, build_encoder  # noqa: E402
from tfvae.priors import Prior, StandardNormalPrior, VampPrior  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "Autoencoder",
    "AutoregressiveNetwork",
    "BernoulliLikelihood",
    "ConditionalVAE",
    "ConfigError",
    "DataError",
    "DataSplits",
    "DiscretizedLogisticLikelihood",
    "DiscretizedLogisticMixtureLikelihood",
    "ExportError",
    "ExportResult",
    "GaussianLikelihood",
    "GatedDense",
    "GaussianPosterior",
    "HierarchicalVAE",
    "IAFPosterior",
    "KLWarmup",
    "LatentModel",
    "Likelihood",
    "MaskedDense",
    "NetworkConfig",
    "Prior",
    "RunError",
    "StandardNormalPrior",
    "TfvaeError",
    "VampPrior",
    "available_datasets",
    "build_decoder",
    "build_encoder",
    "evaluate",
    "export",
    "load_dataset",
    "objectives",
    "register_dataset",
]
