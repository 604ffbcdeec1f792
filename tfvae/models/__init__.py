"""The models: `VAE`, `ConditionalVAE`, `HierarchicalVAE` and the `Autoencoder` baseline."""

from tfvae.models.autoencoder import Autoencoder
from tfvae.models.base import LatentModel
from tfvae.models.conditional import ConditionalVAE
from tfvae.models.hierarchical import HierarchicalVAE
from tfvae.models.vae import VAE

__all__ = ["Autoencoder", "ConditionalVAE", "HierarchicalVAE", "LatentModel", "VAE"]
