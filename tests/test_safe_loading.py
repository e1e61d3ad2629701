"""Crafted model files that would make Keras import or run code: the loader refuses them all,
in both formats, before anything from the file is imported."""

import json
import subprocess
import sys
import zipfile

import h5py
import pytest
import tensorflow as tf

import adambnn_larq as ab  # selects Keras 2 before tf.keras is used
from adambnn_larq.errors import UnsafeModelError
from adambnn_larq.layers import RSign
from adambnn_larq.saving import check_model_config, load_model, save_model

PAYLOAD = "adambnn_payload_module"


def _tiny_model() -> tf.keras.Model:
    import larq as lq

    inputs = tf.keras.Input((4, 4, 1))
    x = RSign(name="rsign")(inputs)
    x = lq.layers.QuantConv2D(2, 3, padding="same", input_quantizer="approx_sign", name="qconv")(x)
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = tf.keras.layers.Dense(3, activation="relu", name="fc")(x)
    return tf.keras.Model(inputs, outputs, name="tiny")


def _layer(config: dict, name: str) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["name"] == name)


def _foreign_model_module(config):
    # The model object itself: Keras imports the module to find the class.
    config.update(module=PAYLOAD, class_name="Payload", registered_name=None)


def _foreign_layer_module(config):
    layer = _layer(config, "pool")
    layer.update(module=PAYLOAD, class_name="Payload", registered_name=None)


def _function_activation(config):
    _layer(config, "fc")["config"]["activation"] = {
        "module": PAYLOAD,
        "class_name": "function",
        "config": "run",
        "registered_name": "run",
    }


def _foreign_initializer(config):
    _layer(config, "fc")["config"]["kernel_initializer"] = {
        "module": PAYLOAD,
        "class_name": "Init",
        "config": {},
        "registered_name": None,
    }


def _spoofed_registered_name(config):
    # The project's registered name, with the module pointing elsewhere.
    _layer(config, "rsign").update(module=PAYLOAD, registered_name="adambnn_larq>RSign")


def _nested(config):
    # A model inside a model, the foreign object two levels down.
    inner = json.loads(json.dumps(config))
    _foreign_initializer(inner)
    inner["name"] = "inner"
    inner["config"]["name"] = "inner"
    config["config"]["layers"].append(inner)


def _keras_module_spoof(config):
    # A Keras module that exists, but a class that runs code.
    _layer(config, "pool").update(module="keras.layers", class_name="Lambda")


CRAFTS = {
    "foreign-model-module": _foreign_model_module,
    "foreign-layer-module": _foreign_layer_module,
    "function-as-activation": _function_activation,
    "foreign-initializer": _foreign_initializer,
    "spoofed-registered-name": _spoofed_registered_name,
    "nested-model": _nested,
    "keras-lambda-by-module": _keras_module_spoof,
}


def _write_crafted(path, config: dict) -> None:
    """Rewrite the architecture stored in the model file ``path``."""
    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        members["config.json"] = json.dumps(config).encode()
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
    else:
        with h5py.File(path, "r+") as file:
            file.attrs["model_config"] = json.dumps(config)


def _stored_config(path) -> dict:
    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    with h5py.File(path, "r") as file:
        return json.loads(file.attrs["model_config"])


@pytest.fixture
def payload(tmp_path, monkeypatch):
    """An importable module that leaves a marker file when it is imported."""
    marker = tmp_path / "payload-ran"
    folder = tmp_path / "payload"
    folder.mkdir()
    (folder / f"{PAYLOAD}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "def run(x):\n    return x\n"
        "class Payload:\n    pass\n"
        "Init = Payload\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop(PAYLOAD, None)
    yield marker
    sys.modules.pop(PAYLOAD, None)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    model = _tiny_model()
    return {suffix: save_model(model, folder / f"tiny{suffix}") for suffix in (".keras", ".h5")}


def _crafted(saved_models, tmp_path, suffix, craft):
    path = tmp_path / f"crafted{suffix}"
    path.write_bytes(saved_models[suffix].read_bytes())
    config = _stored_config(path)
    CRAFTS[craft](config)
    _write_crafted(path, config)
    return path


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
@pytest.mark.parametrize("craft", sorted(CRAFTS))
def test_crafted_files_are_refused_and_nothing_runs(saved_models, tmp_path, payload, suffix, craft):
    path = _crafted(saved_models, tmp_path, suffix, craft)
    with pytest.raises(UnsafeModelError, match="refusing to load") as error:
        load_model(path)
    assert str(path) in str(error.value)
    assert ": config" in str(error.value)  # says where in the file
    assert not payload.exists()
    assert PAYLOAD not in sys.modules


def test_the_plain_keras_loader_would_run_the_payload(saved_models, tmp_path, payload):
    # What the check protects against: Keras' own loader, even in safe mode, imports it.
    path = _crafted(saved_models, tmp_path, ".keras", "foreign-model-module")
    with pytest.raises(Exception):  # noqa: B017  (Payload is no model; the import came first)
        tf.keras.models.load_model(path, safe_mode=True, compile=False)
    assert payload.exists()


def test_the_projects_own_models_pass(saved_models):
    for path in saved_models.values():
        check_model_config(_stored_config(path))
        assert load_model(path).name == "tiny"
    for model in (ab.ReActNetSmall(width_multiplier=0.125), ab.SmallTeacher(width=4)):
        check_model_config(json.loads(model.to_json()))


def test_error_names_every_problem_and_where():
    config = {
        "class_name": "Functional",
        "config": {
            "layers": [
                {
                    "class_name": "Dense",
                    "module": "keras.layers",
                    "config": {
                        "kernel_initializer": {"class_name": "X", "module": "os", "config": {}}
                    },
                },
                {"class_name": "function", "module": "builtins", "config": "eval"},
            ]
        },
    }
    with pytest.raises(UnsafeModelError) as error:
        check_model_config(config, source="m.h5")
    message = str(error.value)
    assert "config.config.layers[0].config.kernel_initializer: module 'os'" in message
    assert "config.config.layers[1]: function 'eval'" in message
    assert message.startswith("m.h5: refusing to load")


def test_cli_convert_in_a_folder_with_the_payload(saved_models, tmp_path):
    # The attack: a .py file beside the model, `python -m adambnn_larq` run there.
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    path = tmp_path / "model.keras"
    path.write_bytes(saved_models[".keras"].read_bytes())
    config = _stored_config(path)
    config.update(module="evil", class_name="Payload")
    _layer(config, "fc")["config"]["activation"] = {
        "module": "this",
        "class_name": "function",
        "config": "s",
        "registered_name": None,
    }
    _write_crafted(path, config)
    done = subprocess.run(
        [sys.executable, "-m", "adambnn_larq", "convert", "model.keras", "--output", "m.tflite"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "refusing to load" in done.stderr and "module 'evil'" in done.stderr
    assert "Beautiful is better" not in done.stdout + done.stderr  # `import this` did not run
    assert not marker.exists()
    assert not (tmp_path / "m.tflite").exists()
