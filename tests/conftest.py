import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Before TensorFlow: the tests run with the kernels users get (Keras 2, oneDNN's by default).
import adambnn_larq

# isort: split
import numpy as np
import pytest
import tensorflow as tf


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
