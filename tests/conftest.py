import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import adambnn_larq  # noqa: E402,F401  (before TensorFlow, to select Keras 2)


@pytest.fixture(autouse=True)
def _seed():
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(1234)
    yield


@pytest.fixture(scope="session")
def reactnet_a():
    """One full-size step-2 ReActNet-A shared by the tests that only read it."""
    return adambnn_larq.ReActNetA()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
