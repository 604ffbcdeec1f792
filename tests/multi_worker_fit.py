"""Trains the VAE of distributed_fit.py under MultiWorkerMirroredStrategy.

Run once per worker with its TF_CONFIG (test_distributed.py starts two on loopback
ports); each prints one JSON line with its loss trajectory and the batch sizes its
replica trained on.
"""

import json
import sys

import tensorflow as tf

strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before anything else starts TensorFlow's runtime

import keras  # noqa: E402

import tfvae  # noqa: E402


class RecordsReplicaBatches(tfvae.VAE):
    """Prints each replica's batch size: under the strategy, a global batch of 64 is 32 per worker."""

    def train_step(self, data):
        tf.print("replica batch", tf.shape(tf.nest.flatten(data)[0])[0], output_stream=sys.stderr)
        return super().train_step(data)


keras.utils.set_random_seed(0)
data = tfvae.load_dataset("digits")
with strategy.scope():
    model = RecordsReplicaBatches((64,), 4, hidden_units=(64,), seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
history = model.fit(data.train, epochs=4, batch_size=64, shuffle=False, verbose=0).history
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": history["loss"]}))
