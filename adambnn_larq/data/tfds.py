"""TensorFlow Datasets builders: CIFAR-10, ImageNet (from its tars) and the MNIST fallback.

``tensorflow_datasets`` is an optional dependency (the ``data`` extra) and takes seconds to
import: it is imported only when one of these datasets is used.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from adambnn_larq.errors import ConfigError, DataNotFoundError

_IMAGENET_TARS = {"train": "ILSVRC2012_img_train.tar", "validation": "ILSVRC2012_img_val.tar"}
_CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"


def tfds_builder(name: str, data_dir: str | os.PathLike | None) -> Any:
    """The TFDS builder of ``name`` in ``data_dir`` (prepared or not)."""
    import tensorflow_datasets as tfds

    # None lets TFDS choose: $TFDS_DATA_DIR, else ~/tensorflow_datasets.
    return tfds.builder(name, data_dir=os.fspath(data_dir) if data_dir is not None else None)


def is_prepared(builder: Any) -> bool:
    """Whether the builder's data has been prepared (downloaded and converted) already."""
    return tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json"))


def _default_manual_dir(builder: Any) -> Path:
    # TFDS's own default: <data_dir>/downloads/manual, with data_dir = <root>/<name>/<version>.
    return Path(builder.data_dir).parents[1] / "downloads" / "manual"


def prepare_builder(
    name: str,
    data_dir: str | os.PathLike | None,
    manual_dir: str | os.PathLike | None,
    download: bool,
) -> Any:
    """Return a prepared TFDS builder, preparing it first if needed."""
    import tensorflow_datasets as tfds

    builder = tfds_builder(name, data_dir)
    if is_prepared(builder):
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


def load_tfds_arrays(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None,
    manual_dir: str | os.PathLike | None,
    download: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a small TFDS dataset's split as arrays, preparing it if needed."""
    builder = prepare_builder(name, data_dir, manual_dir, download)
    return _tfds_arrays_cached(builder.data_dir, name, split)


@functools.lru_cache(maxsize=4)
def _tfds_arrays_cached(prepared_dir: str, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(prepared_dir)
    if split not in builder.info.splits:
        raise ConfigError(f"{name} has no split {split!r}; it has {sorted(builder.info.splits)}.")
    dataset = builder.as_dataset(split=split, batch_size=-1, as_supervised=True)
    images, labels = tfds.as_numpy(dataset)
    return images, labels.astype(np.int32)
