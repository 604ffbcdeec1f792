"""The models: `VAE` (more join it in later issues)."""
from tfvae.models.vae import VAE

__all__ = ["VAE"]
