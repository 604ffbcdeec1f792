"""fit under tf.distribute: MirroredStrategy over two logical CPU devices."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # trainings, servers and subprocesses: `make test-fast` leaves them out


def test_mirrored_strategy_follows_the_one_device_loss_trajectory():
    script = os.path.join(os.path.dirname(__file__), "distributed_fit.py")
    result = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    trajectories = json.loads(result.stdout.strip().splitlines()[-1])
    assert trajectories["replicas"] == 2
    one, mirrored = np.array(trajectories["one_device"]), np.array(trajectories["mirrored"])
    # Same data order, weights and optimiser; only the Monte Carlo draws of z differ
    # between one batch of 64 and two replicas of 32, so the curves agree within that
    # noise. Plain SGD (distributed_fit.py) makes the step proportional to the gradient:
    # summing the replicas' gradients without the 1/replicas scale puts epoch 1 at
    # 31.4 instead of 34.4 nats, which this tolerance rejects (Adam would hide it).
    np.testing.assert_allclose(mirrored, one, rtol=0.03)
    assert mirrored[-1] < mirrored[0] - 5
