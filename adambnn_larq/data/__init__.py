"""Datasets and deterministic `tf.data` input pipelines.

Five datasets share one interface, `make_dataset`: ``mnist`` and ``fashion_mnist`` (IDX files,
found offline), ``cifar10`` and ``imagenet2012`` (TensorFlow Datasets builders) and
``image_folder`` (``root/split/class/*.jpg`` for your own data). `dataset_info` reports the
number of examples, classes and the input shape, so a recipe can size its epochs beforehand.

Every training epoch is a pure function of ``(seed, epoch)``: the example order and every random
augmentation are drawn from stateless generators seeded by those two numbers (never from
TensorFlow's global seed), so a run resumed at epoch ``e`` in a new process sees exactly the
batches an uninterrupted run would have seen.

One module per job: `catalog` (what each dataset is), `idx` (IDX files), `tfds` (TensorFlow
Datasets builders), `folders` (image folders), `preprocessing` (per-image transforms),
`pipelines` (`make_dataset`, `dataset_info`, `prepare`). This package re-exports the public API.
"""

from __future__ import annotations

from adambnn_larq.config import DATASET_NAMES
from adambnn_larq.data.catalog import DatasetInfo, split_slice
from adambnn_larq.data.idx import (
    DATA_DIR_ENV,
    DEBIAN_FASHION_MNIST_DIR,
    IDX_SHA256,
    load_idx_split,
    locate_idx_files,
    read_idx,
)
from adambnn_larq.data.pipelines import (
    dataset_from_arrays,
    dataset_info,
    make_dataset,
    num_batches,
    prepare,
)
from adambnn_larq.data.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_PCA_EIGVAL,
    IMAGENET_PCA_EIGVEC,
    IMAGENET_STD,
    apply_lighting,
    eval_resize_size,
    imagenet_eval_preprocess,
    imagenet_train_preprocess,
    normalization,
    pad_crop_flip,
    random_resized_crop_window,
)
from adambnn_larq.errors import DataIntegrityError, DataNotFoundError

__all__ = [
    "DATASET_NAMES",
    "DATA_DIR_ENV",
    "DEBIAN_FASHION_MNIST_DIR",
    "IDX_SHA256",
    "DataIntegrityError",
    "DataNotFoundError",
    "DatasetInfo",
    "IMAGENET_MEAN",
    "IMAGENET_PCA_EIGVAL",
    "IMAGENET_PCA_EIGVEC",
    "IMAGENET_STD",
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
    "split_slice",
]
