"""``adambnn evaluate`` (`adambnn_larq.deploy.evaluate`): top-1/top-5 over a dataset split for
Keras and LCE model files, checked against independent computations on the same images.

The images are the evaluation pipeline's, checked first against the raw IDX pixels
normalized and padded in NumPy. Every expected accuracy is then computed here from the model's
own outputs (Keras, or LCE's interpreter made here with its public flags) with NumPy's
argsort, so a wrong count, a wrong preprocessing or a wrong kernel in the library would show.
The same binary model computed two ways may differ by sign flips near zero (CONTRIBUTING.md):
each comparison therefore runs the same engine on the same batches as the library does.
"""

import gzip
import json

import numpy as np
import pytest
import tensorflow as tf
from larq_compute_engine.tflite.python.interpreter import Interpreter
from test_data import jpeg_bytes, require_real, tiny_imagenet  # noqa: F401 - a fixture

import adambnn_larq as ab
from adambnn_larq import cli, data
from adambnn_larq.deploy import convert_model
from adambnn_larq.deploy.evaluate import EvaluationResult, evaluate_model, top_k_hits

LIMIT, BATCH = 96, 32
SIZE = 32  # the demo's input: Fashion-MNIST's 28x28 zero-padded to 32x32


def expected_hits(logits: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """(top-1, top-5) hits by argsort: the independent count."""
    ranked = np.argsort(-logits, axis=1, kind="stable")
    top1 = int(np.sum(ranked[:, 0] == labels))
    top5 = int(np.sum(np.any(ranked[:, :5] == labels[:, None], axis=1)))
    return top1, top5


def pipeline_images(limit: int = LIMIT, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The first ``limit`` Fashion-MNIST test images as the eval pipeline gives them at
    ``size`` x ``size``, checked against the raw file normalized and zero-padded in NumPy."""
    dataset = data.make_dataset(
        "fashion_mnist", "test", batch_size=BATCH, training=False, limit=limit, image_size=size
    )
    images = np.concatenate([x.numpy() for x, _ in dataset])
    labels = np.concatenate([y.numpy() for _, y in dataset])
    folder = data.DEBIAN_FASHION_MNIST_DIR
    raw = gzip.decompress((folder / "t10k-images-idx3-ubyte.gz").read_bytes())
    raw_images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:limit]
    raw_labels = gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes())
    border = (size - 28) // 2
    padded = np.pad(raw_images, ((0, 0), (border, border), (border, border)))[..., None]
    np.testing.assert_allclose(images, (padded / 255.0 - 0.2860) / 0.3530, atol=1e-5)
    np.testing.assert_array_equal(labels, np.frombuffer(raw_labels, np.uint8, offset=8)[:limit])
    return images, labels


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A random-weight binary ReActNetSmall at 32x32x1 (10 classes) as .h5 and its LCE
    conversion (graphdef route, float I/O)."""
    require_real("fashion_mnist")
    tf.keras.utils.set_random_seed(7)
    directory = tmp_path_factory.mktemp("evaluate")
    model = ab.ReActNetSmall(input_shape=(SIZE, SIZE, 1), width_multiplier=0.125)
    ab.save_model(model, directory / "small.h5")
    flatbuffer = convert_model(model, route="graphdef").flatbuffer
    (directory / "small.tflite").write_bytes(flatbuffer)
    return directory


def test_top_k_hits_counts_ties_for_the_label_and_never_nan():
    logits = np.array([[3.0, 1.0, 2.0], [1.0, 1.0, 0.0], [np.nan, 0.0, 1.0], [0.0, 2.0, 1.0]])
    labels = np.array([0, 1, 0, 0])
    assert top_k_hits(logits, labels, 1) == 2  # row 1: a tie at the top counts
    assert top_k_hits(logits, labels, 2) == 2  # row 3's label is third
    assert top_k_hits(logits, labels, 3) == 3  # a NaN label score never counts


def test_keras_model_matches_argsort_over_its_outputs(files):
    images, labels = pipeline_images()
    model = ab.load_model(files / "small.h5")
    # The library's arithmetic: eager calls on the pipeline's batches of BATCH.
    logits = np.concatenate(
        [model(images[i : i + BATCH], training=False).numpy() for i in range(0, LIMIT, BATCH)]
    )
    top1, top5 = expected_hits(logits, labels)
    result = evaluate_model(
        files / "small.h5", dataset="fashion_mnist", limit=LIMIT, batch_size=BATCH, say=None
    )
    assert (result.images, result.top1_correct, result.top5_correct) == (LIMIT, top1, top5)
    assert result.top1 == top1 / LIMIT and result.top5 == top5 / LIMIT
    assert (result.split, result.format, result.num_classes) == ("test", "keras", 10)
    assert result.input_shape == [SIZE, SIZE, 1] and "zero-padded" in result.preprocessing
    assert top5 > top1  # a random model: the top-5 count really is another number


def test_float_keras_model_matches_numpy_forward_pass(tmp_path):
    """A float model (no sign to flip) computed in NumPy from its weights, at another batch
    size, with a last partial batch and the grey channel repeated for an RGB input.
    (``model.predict`` would take 10 s here: the per-call tf.data wait, STACK.md.)"""
    require_real("fashion_mnist")
    inputs = tf.keras.Input((28, 28, 3))
    x = tf.keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10)(x))
    ab.save_model(model, tmp_path / "float.keras")
    result = evaluate_model(
        tmp_path / "float.keras", dataset="fashion_mnist", limit=50, batch_size=16, say=None
    )
    grey, labels = pipeline_images(50, size=28)
    images = np.repeat(grey, 3, axis=-1).astype(np.float64)
    kernel, bias, dense, dense_bias = model.get_weights()
    windows = np.lib.stride_tricks.sliding_window_view(images, (3, 3), axis=(1, 2))[:, ::2, ::2]
    features = np.maximum(np.einsum("nhwcij,ijco->nhwo", windows, kernel) + bias, 0)
    logits = features.mean(axis=(1, 2)) @ dense + dense_bias
    np.testing.assert_allclose(logits, model(images, training=False), atol=1e-4)
    top1, top5 = expected_hits(logits, labels)
    assert (result.images, result.top1_correct, result.top5_correct) == (50, top1, top5)
    assert "grey repeated to 3 channels" in result.preprocessing


def lce_logits(flatbuffer: bytes, images: np.ndarray) -> np.ndarray:
    """LCE's interpreter made here (default kernel, one thread), int8 inputs quantized here."""
    interpreter = Interpreter(
        flatbuffer,
        num_threads=1,
        use_reference_bconv=False,
        use_indirect_bgemm=False,
        use_xnnpack=False,
    )
    x = images
    if interpreter.input_types[0] == np.int8:
        scale, zero = interpreter.input_scales[0], interpreter.input_zero_points[0]
        x = np.clip(np.round(images / scale) + zero, -128, 127).astype(np.int8)
    out = interpreter.predict(x)
    if interpreter.output_types[0] == np.int8:
        scale, zero = interpreter.output_scales[0], interpreter.output_zero_points[0]
        out = (out.astype(np.float32) - zero) * scale
    return out


def test_tflite_matches_the_interpreter_run_independently(files):
    images, labels = pipeline_images()
    tflite = files / "small.tflite"
    top1, top5 = expected_hits(lce_logits(tflite.read_bytes(), images), labels)
    result = evaluate_model(tflite, dataset="fashion_mnist", limit=LIMIT, say=None)
    assert (result.images, result.top1_correct, result.top5_correct) == (LIMIT, top1, top5)
    assert (result.format, result.kernel) == ("tflite", "default")


@pytest.mark.slow
def test_int8_io_tflite_is_quantized_with_its_own_scales(files, tmp_path):
    """An int8-I/O conversion (dummy ranges): inputs are quantized with the file's scale."""
    images, labels = pipeline_images(48)
    model = ab.load_model(files / "small.h5")
    flatbuffer = convert_model(
        model, route="graphdef", int8_io=True, default_int8_range=(-3, 3)
    ).flatbuffer
    tflite = tmp_path / "int8.tflite"
    tflite.write_bytes(flatbuffer)
    assert Interpreter(flatbuffer).input_types[0] == np.int8
    top1, top5 = expected_hits(lce_logits(flatbuffer, images), labels)
    result = evaluate_model(tflite, dataset="fashion_mnist", limit=48, say=None)
    assert (result.top1_correct, result.top5_correct) == (top1, top5)


def test_command_writes_json_and_prints_one_line(files, tmp_path, capsys):
    output = tmp_path / "out" / "result.json"
    argv = ["evaluate", str(files / "small.tflite"), "--dataset", "fashion_mnist"]
    status = cli.main([*argv, "--limit", "40", "--batch-size", "8", "--output", str(output)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    saved = json.loads(output.read_text())
    expected = evaluate_model(files / "small.tflite", dataset="fashion_mnist", limit=40, say=None)
    for key in ("images", "top1", "top5", "top1_correct", "top5_correct", "split", "kernel"):
        assert saved[key] == getattr(expected, key), key
    assert saved["images"] == 40 and saved["dataset"] == "fashion_mnist"
    fields = {k: v for k, v in saved.items() if k != "markdown"}
    assert captured.out.splitlines() == [EvaluationResult(**fields).summary(), f"wrote {output}"]
    assert f"top-1 {expected.top1:.2%}" in captured.out
    assert "evaluating" in captured.err and "40 images" in captured.err


def test_progress_lines_on_long_runs(files):
    lines = []
    evaluate_model(
        files / "small.tflite",
        dataset="fashion_mnist",
        limit=64,
        batch_size=8,
        say=lines.append,
        progress_seconds=0.0,
    )
    progress = lines[1:]
    assert len(progress) == 7  # after each batch but the last (8 batches)
    assert progress[0].startswith("  8 / 64 images (12%)") and "img/s" in progress[0]


def folder_dataset(root, classes: int, size: int = 40):
    for split in ("train", "val"):
        for k in range(classes):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True)
            color = np.full((size, size + 10, 3), 60 * k, np.uint8)
            (folder / "0.jpg").write_bytes(jpeg_bytes(color))
    return root


def test_fewer_than_five_classes_give_no_top5(tmp_path, capsys):
    root = folder_dataset(tmp_path / "images", classes=3)
    model = ab.ReActNetSmall(input_shape=(32, 32, 3), num_classes=3, width_multiplier=0.125)
    ab.save_model(model, tmp_path / "three.h5")
    output = tmp_path / "r.json"
    argv = ["evaluate", str(tmp_path / "three.h5"), "--dataset", "image_folder"]
    status = cli.main([*argv, "--data-dir", str(root), "-o", str(output), "--quiet"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    saved = json.loads(output.read_text())
    assert (saved["images"], saved["split"], saved["top5"], saved["top5_correct"]) == (
        3,
        "val",
        None,
        None,
    )
    assert "top-5 n/a (fewer than 5 classes)" in captured.out and captured.err == ""


@pytest.mark.slow  # TFDS prepares the tars: about 10 s
def test_reactnet_input_on_the_imagenet_tar_layout(tiny_imagenet):  # noqa: F811
    """The ILSVRC2012 tars in their real layout, prepared by TFDS; the ImageNet eval crop."""
    model = ab.ReActNetSmall(input_shape=(32, 32, 3), num_classes=1000, width_multiplier=0.125)
    path = tiny_imagenet / "imagenet.h5"
    ab.save_model(model, path)
    result = evaluate_model(path, data_dir=str(tiny_imagenet), batch_size=2, say=None)
    val = data.make_dataset(
        "imagenet2012",
        "validation",
        batch_size=2,
        training=False,
        data_dir=str(tiny_imagenet),
        image_size=32,
    )
    logits, labels = zip(*[(model(x, training=False).numpy(), y.numpy()) for x, y in val])
    top1, top5 = expected_hits(np.concatenate(logits), np.concatenate(labels))
    assert (result.images, result.split, result.dataset) == (5, "validation", "imagenet2012")
    assert (result.top1_correct, result.top5_correct) == (top1, top5)
    assert result.preprocessing.startswith("resized to 37 (shorter side), center crop 32")


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "model file not found"),
        ("extension", "unknown model format '.onnx'"),
        ("classes", "the model has 7 classes, fashion_mnist has 10"),
        ("channels", "the model takes 2-channel inputs; fashion_mnist has 1-channel images"),
        ("size", "fashion_mnist's 28x28 images can only be zero-padded symmetrically"),
        ("split", "fashion_mnist has no split 'validation'; its splits: test, train"),
        ("imagenet", "the model has 10 classes, imagenet2012 has 1000"),
        ("not-tflite", "not a TFLite model"),
    ],
)
def test_errors_name_the_problem_exit_2_and_write_nothing(case, message, tmp_path, capsys):
    path = tmp_path / "model.h5"
    options = ["--dataset", "fashion_mnist"]
    shape, classes = (28, 28, 1), 10
    if case == "extension":
        path = tmp_path / "model.onnx"
        path.write_bytes(b"onnx")
    elif case == "not-tflite":
        path = tmp_path / "model.tflite"
        path.write_bytes(b"not a flatbuffer at all")
    elif case == "split":
        options += ["--split", "validation"]
    elif case == "imagenet":
        options = []
    shape = {"channels": (28, 28, 2), "size": (31, 31, 1)}.get(case, shape)
    classes = 7 if case == "classes" else classes
    if case not in ("missing", "extension", "not-tflite"):
        inputs = tf.keras.Input(shape)
        pooled = tf.keras.layers.GlobalAveragePooling2D()(inputs)
        ab.save_model(tf.keras.Model(inputs, tf.keras.layers.Dense(classes)(pooled)), path)
    output = tmp_path / "result.json"
    status = cli.main(["evaluate", str(path), *options, "--output", str(output)])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith("adambnn evaluate: error: ") and message in captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""
    assert not output.exists()
