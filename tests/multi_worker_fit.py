"""Trains the VAE of distributed_fit.py under MultiWorkerMirroredStrategy, then
evaluates it shared between the workers and alone.

Run once per worker with its TF_CONFIG (test_distributed.py starts two on loopback
ports); each prints one JSON line with its loss trajectory and both evaluation reports,
and on stderr the batch sizes its replica trained on and the examples it estimated.
"""

import json
import sys

import tensorflow as tf

strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before anything else starts TensorFlow's runtime

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfvae  # noqa: E402


class RecordsItsShare(tfvae.VAE):
    """Prints each replica's batch size (under the strategy, a global batch of 64 is 32
    per worker) and which examples each importance-sampling pass estimates."""

    def train_step(self, data):
        tf.print("replica batch", tf.shape(tf.nest.flatten(data)[0])[0], output_stream=sys.stderr)
        return super().train_step(data)

    def log_likelihood(self, x, **kwargs):
        # Where this worker's share starts in the validation split (each example's draws
        # are keyed by its values, so the share needs no offset).
        start = next(s for s in range(len(data.valid)) if np.array_equal(data.valid[s : s + len(x)], x))
        print("estimating", len(x), "from", start, file=sys.stderr)
        return super().log_likelihood(x, **kwargs)


keras.utils.set_random_seed(0)
data = tfvae.load_dataset("digits")
with strategy.scope():
    model = RecordsItsShare((64,), 4, hidden_units=(64,), seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
history = model.fit(data.train, epochs=4, batch_size=64, shuffle=False, verbose=0).history
# 180 examples in batches of 50: 100 for the first worker, 80 for the second.
evaluation = dict(x=data.valid, num_samples=20, batch_size=50, seed=3)
shared = tfvae.evaluate(model, **evaluation, strategy=strategy)
alone = tfvae.evaluate(model, **evaluation)
print(
    json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": history["loss"], "shared": shared, "alone": alone})
)
