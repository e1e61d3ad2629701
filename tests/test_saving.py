import json

import h5py
import numpy as np
import pytest
import tensorflow as tf

import adambnn_larq as ab
from adambnn_larq.errors import UnsafeModelError
from adambnn_larq.saving import load_model, save_model


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".h5", ".keras"])
@pytest.mark.parametrize("binary_weights", [True, False])
def test_round_trip_gives_identical_outputs(tmp_path, suffix, binary_weights):
    model = ab.ReActNetSmall(binary_weights=binary_weights, width_multiplier=0.125)
    x = np.random.default_rng(0).normal(size=(3, 28, 28, 1)).astype("float32")
    model(x, training=True)
    path = save_model(model, tmp_path / f"model{suffix}")
    restored = load_model(path)
    np.testing.assert_array_equal(model(x).numpy(), restored(x).numpy())
    assert [type(layer) for layer in restored.layers] == [type(layer) for layer in model.layers]
    assert not list(tmp_path.glob(".tmp-*"))


def test_lambda_layers_are_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    inputs = tf.keras.Input((2,))
    outputs = tf.keras.layers.Lambda(lambda x: x * 2, name="payload")(inputs)
    path = tmp_path / "lambda.h5"
    tf.keras.Model(inputs, outputs).save(path)
    with pytest.raises(UnsafeModelError, match="Lambda 'payload'"):
        load_model(path)
    assert not marker.exists()


def test_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        load_model(tmp_path / "missing.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="junk.h5"):
        load_model(junk)
    weights_only = tmp_path / "weights.h5"
    with h5py.File(weights_only, "w") as file:
        file.attrs["other"] = json.dumps({})
    with pytest.raises(ValueError, match="weights only"):
        load_model(weights_only)
    with pytest.raises(ValueError, match="must end in"):
        save_model(ab.ReActNetSmall(width_multiplier=0.125), tmp_path / "model.pb")
