"""Helpers shared by several test modules (tests import this, never each other)."""

import os
import signal
import socket
import ssl
import subprocess
import sys
import time

import httpx
import keras
import numpy as np
import orjson
from starlette.testclient import TestClient

import tfvae
from tfvae.serving import ServerConfig, create_app

# The limits the servers under test run with (small, so tests can cross them cheaply).
MAX_ROWS = 64
MAX_BODY_MIB = 0.25


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`tfvae serve` in a subprocess; waits until `/v2/health/<wait_for>` answers 200."""

    def __init__(self, export_dir, *flags, wait_for="ready", grpc=False, tls_ca=None):
        self.port = free_port()
        # With `tls_ca` (the CA that signed the server's --tls-cert), HTTPS verified against it.
        self.url = f"{'https' if tls_ca else 'http'}://127.0.0.1:{self.port}"
        self.grpc_port = free_port() if grpc else None  # also KServe v2 over gRPC there
        if grpc:
            flags = (*flags, "--grpc-port", str(self.grpc_port))
        script = os.path.join(os.path.dirname(sys.executable), "tfvae")
        self.process = subprocess.Popen(
            [script, "serve", export_dir, "--port", str(self.port), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        verify = ssl.create_default_context(cafile=tls_ca) if tls_ca else True
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stdout.read()}")
            try:
                if httpx.get(f"{self.url}/v2/health/{wait_for}", timeout=1, verify=verify).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.process.kill()
        raise RuntimeError("server did not become ready in 90 s")

    def stop(self):
        """SIGTERM; True when the server drained and ended as uvicorn does, by re-raising it."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.output = self.process.stdout.read()
        return code == -signal.SIGTERM and "Traceback" not in self.output


def serve_in_process(export_dir, **config):
    """The server's app in this process, as Starlette's `TestClient` (httpx-based; used as a
    context manager, it runs the app's lifespan, which starts the batchers): for what the
    app answers, without a subprocess that imports TensorFlow again. Keep `Server` for
    what needs a real process: signals, sockets, the CLI."""
    return TestClient(create_app(ServerConfig(export_dir, **config)), raise_server_exceptions=False)


def latent(rows, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, 4)).astype(np.float32)


def v2_body(z, **overrides):
    entry = {"name": "z", "shape": list(z.shape), "datatype": "FP32", "data": z.ravel().tolist()}
    entry.update(overrides)
    return orjson.dumps({"inputs": [entry]})


def binary_body(size, payload):
    header = orjson.dumps(
        {"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": size}}]}
    )
    return header + payload, {"inference-header-content-length": str(len(header))}


def tiny_vae(input_shape=(64,), latent_dim=3, **kwargs):
    """A small fast model for tests."""
    kwargs.setdefault("hidden_units", (32,))
    kwargs.setdefault("seed", 0)
    model = tfvae.VAE(input_shape, latent_dim, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model


def dropout_rates(network):
    """The rates of the `tfvae.DropoutAfter` layers of a Keras functional network, in order."""
    return [layer.rate for layer in network.layers if isinstance(layer, tfvae.DropoutAfter)]


def built_in_mixed_precision(build):
    """`build()`'s model made under Keras' mixed_bfloat16 policy, compiled (the global
    policy is float32 again afterwards)."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model


def trained_conditional_and_autoencoder(digits):
    """A conditional VAE and an autoencoder (latent 4), each trained one epoch on 256 digits."""
    conditional = tfvae.ConditionalVAE((64,), num_classes=10, latent_dim=4, hidden_units=(32,), seed=0)
    autoencoder = tfvae.Autoencoder((64,), 4, hidden_units=(32,))
    for model, data in (
        (conditional, (digits.train[:256], digits.labels["train"][:256])),
        (autoencoder, digits.train[:256]),
    ):
        model.compile()
        model.fit(data, epochs=1, batch_size=64, verbose=0)
    return conditional, autoencoder
