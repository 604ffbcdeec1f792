"""Trains the same VAE on one device and under MirroredStrategy over two logical CPUs.

Run as a script (logical devices must be set before TensorFlow starts); prints one JSON
line with both loss trajectories.
"""

import json

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

import tfvae  # noqa: E402


def trajectory(strategy):
    keras.utils.set_random_seed(0)
    data = tfvae.load_dataset("digits")
    with strategy.scope():
        model = tfvae.VAE((64,), 4, hidden_units=(64,), seed=0)
        model.compile(optimizer=keras.optimizers.SGD(0.05))
    history = model.fit(data.train, epochs=4, batch_size=64, shuffle=False, verbose=0).history
    return history["loss"]


mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
print(
    json.dumps(
        {
            "replicas": mirrored.num_replicas_in_sync,
            "one_device": trajectory(tf.distribute.get_strategy()),
            "mirrored": trajectory(mirrored),
        }
    )
)
