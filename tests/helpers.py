"""Helpers shared by several test modules (tests import this, never each other)."""

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import keras

import tfvae


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`tfvae serve` in a subprocess; waits until `/v2/health/<wait_for>` answers 200."""

    def __init__(self, export_dir, *flags, wait_for="ready"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        script = os.path.join(os.path.dirname(sys.executable), "tfvae")
        self.process = subprocess.Popen(
            [script, "serve", export_dir, "--port", str(self.port), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stdout.read()}")
            try:
                if httpx.get(f"{self.url}/v2/health/{wait_for}", timeout=1).status_code == 200:
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


def tiny_vae(input_shape=(64,), latent_dim=3, **kwargs):
    """A small fast model for tests."""
    kwargs.setdefault("hidden_units", (32,))
    kwargs.setdefault("seed", 0)
    model = tfvae.VAE(input_shape, latent_dim, **kwargs)
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
