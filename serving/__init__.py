"""tfvae's model server (installed as `tfvae.serving`): KServe v2 and TF Serving, over REST
and gRPC, for the model repositories that `tfvae export` writes. Start it with
`tfvae serve EXPORT_DIR` (`--grpc-port` for gRPC)."""

from tfvae.serving.app import create_app, uvicorn_config
from tfvae.serving.service import ServerConfig

__all__ = ["ServerConfig", "create_app", "uvicorn_config"]
