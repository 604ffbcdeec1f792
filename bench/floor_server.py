"""The floor of `tfvae serve`'s stack for `make bench-serve`: the same server, every request
parsed, checked, batched and answered as usual, but each batch's "model run" hands back a
fixed answer (the model's output for one z, repeated) instead of running ONNX Runtime.

    python bench/floor_server.py EXPORT_DIR --port 8000 --grpc-port 8001
"""

import argparse

import numpy as np
import uvicorn

from tfvae.serving import ServerConfig, create_app, uvicorn_config
from tfvae.serving.repository import every_version


class FixedAnswer:
    """A backend whose run returns its one row of outputs, once per input row."""

    def __init__(self, backend, inputs):
        self.rows = backend.run(inputs)  # computed once, at start-up

    def run(self, inputs):
        count = len(next(iter(inputs.values())))
        return {name: np.repeat(row, count, axis=0) for name, row in self.rows.items()}


def without_models(models):
    for model in every_version(models):
        one_row = {t["name"]: np.zeros([1, *t["shape"][1:]], np.float32) for t in model.inputs}
        model.batcher.backend = model.backend = FixedAnswer(model.backend, one_row)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("export_dir")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=None)
    args = parser.parse_args()
    config = ServerConfig(args.export_dir, grpc_port=args.grpc_port, on_ready=without_models)
    uvicorn.Server(uvicorn_config(create_app(config), config, args.port)).run()  # `tfvae serve`'s settings
