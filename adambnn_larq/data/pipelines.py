"""Deterministic `tf.data` input pipelines, and the dataset metadata they are sized by.

Every training epoch is a pure function of ``(seed, epoch)``: the example order and every random
augmentation are drawn from stateless generators seeded by those two numbers (never from
TensorFlow's global seed), so a run resumed at epoch ``e`` in a new process sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from adambnn_larq.config import DATASET_NAMES
from adambnn_larq.data import idx
from adambnn_larq.data.catalog import (
    EVAL_SPLIT_NAMES,
    FIXED_SPLITS,
    DatasetInfo,
    check_choice,
    split_slice,
)
from adambnn_larq.data.folders import folder_index, read_image_files
from adambnn_larq.data.idx import IDX_STEMS
from adambnn_larq.data.preprocessing import (
    NORMALIZATION,
    SMALL_AUGMENTATION,
    imagenet_eval_preprocess,
    imagenet_train_preprocess,
    normalize,
    pad_crop_flip,
)
from adambnn_larq.data.tfds import is_prepared, load_tfds_arrays, prepare_builder, tfds_builder
from adambnn_larq.errors import ConfigError


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
    check_choice("dataset", name, DATASET_NAMES)
    if name in ("mnist", "fashion_mnist"):
        channels = channels or 1
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3 for {name}, got {channels}.")
        return DatasetInfo(name, 10, (28, 28, channels), dict(FIXED_SPLITS[name]), "train", "test")
    if channels not in (None, 3):
        raise ConfigError(f"{name} has 3 channels; channels={channels} is not supported.")
    size = image_size or 224
    if name == "image_folder":
        if data_dir is None:
            raise ConfigError(
                "image_folder needs data_dir: the root of root/<split>/<class>/*.jpg."
            )
        class_names, index = folder_index(os.fspath(Path(data_dir).resolve()))
        counts = {split: len(files) for split, (files, _) in index.items()}
        eval_split = next((s for s in EVAL_SPLIT_NAMES if s in counts), "train")
        return DatasetInfo(name, len(class_names), (size, size, 3), counts, "train", eval_split)
    counts = dict(FIXED_SPLITS[name])
    builder = tfds_builder(name, data_dir)
    if is_prepared(builder):
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
    return tf.autograph.experimental.do_not_convert(function)


def _options(dataset: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True
    # One thread per map call: the parallelism comes from num_parallel_calls (as TFDS does).
    options.threading.max_intra_op_parallelism = 1
    # No autotuning: each fit/evaluate waited on its sleeping thread (docs/results/study-run-cost).
    options.autotune.enabled = False
    return dataset.with_options(options)


_CONSTANTS: dict[int, tuple[np.ndarray, Any]] = {}


def _as_constant(array: np.ndarray) -> tf.Tensor:
    """One tf constant per in-memory array, reused by every epoch's pipeline."""
    entry = _CONSTANTS.get(id(array))
    if entry is None or entry[0] is not array:
        if len(_CONSTANTS) >= 8:
            _CONSTANTS.clear()
        with tf.device("/cpu:0"):
            entry = (array, tf.constant(array))
        _CONSTANTS[id(array)] = entry
    return entry[1]


def dataset_from_arrays(  # noqa: PLR0913 - one keyword per pipeline option; TODO a spec (issue 23)
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
    soft_targets: np.ndarray | None = None,
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
        soft_targets: float (N, K), one row per image (e.g. a teacher's cached logits), carried
            through the same shuffle as a third element of every batch.

    Returns:
        A `tf.data.Dataset` of (float32 (B, H, W, C'), int32 (B,)), with float32 (B, K) soft
        targets as a third element when given.
    """
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
        raise ValueError(
            f"images must be uint8 (N, H, W, C) with one label each; got {images.dtype} "
            f"{images.shape} and {len(labels)} labels."
        )
    if soft_targets is not None and (
        soft_targets.ndim != 2 or len(soft_targets) < min(len(images), limit or len(images))
    ):
        raise ValueError(
            f"soft_targets must be (N, K) with a row for each of the {len(images)} images "
            f"(or the first limit={limit}); got shape {soft_targets.shape}."
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
    targets_t = None
    if soft_targets is not None:
        targets_t = _as_constant(np.asarray(soft_targets[:count], dtype=np.float32))

    def assemble(index, offset, flip_):
        x = tf.gather(images_t, index)
        if training and (pad or flip):
            x = pad_crop_flip(x, offset, flip_, pad=pad)
        x = normalize(x, mean, std)
        if repeat:
            x = tf.repeat(x, 3, axis=-1)
        if targets_t is None:
            return x, tf.gather(labels_t, index)
        return x, tf.gather(labels_t, index), tf.gather(targets_t, index)

    dataset = tf.data.Dataset.from_tensor_slices((order, offsets, flips))
    dataset = dataset.batch(per_replica, drop_remainder=drop_remainder)
    dataset = dataset.map(_plain(assemble), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _options(dataset.prefetch(tf.data.AUTOTUNE))


@functools.lru_cache(maxsize=8)
def _traced_preprocess(training: bool, image_size: int, lighting_std: float, antialias: bool):
    """The per-image preprocessing as one `tf.function`, traced once per process rather than
    once per epoch's pipeline."""
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
    # Lazy: optional (the `data` extra), and seconds to import; see adambnn_larq.data.tfds.
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


def make_dataset(  # noqa: PLR0913 - TrainConfig's data fields; TODO a spec (issue 23)
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
    augment: bool = True,
    soft_targets: np.ndarray | None = None,
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
        augment: MNIST, Fashion-MNIST, CIFAR-10: False trains on the images as they are
            (still shuffled), so every epoch sees the same images.
        soft_targets: MNIST, Fashion-MNIST, CIFAR-10: (N, K) floats, a row per image of the
            split (after ``limit``), returned as a third element of every batch in the same
            order (cached teacher logits).

    Returns:
        A `tf.data.Dataset` of (images, labels).

    Raises:
        DataNotFoundError: the data is missing; the message says where to put which file.
        DataIntegrityError: a file is corrupt or not the expected one.
        ValueError: an unknown name or split, or inconsistent arguments.
    """
    check_choice("dataset", name, DATASET_NAMES)
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}.")
    if lighting_std < 0:
        raise ValueError(f"lighting_std must be >= 0, got {lighting_std}.")
    per_replica, pipelines, pipeline_id = _per_replica(batch_size, input_context)
    _seed_pair(seed, epoch)
    if drop_remainder is None:
        drop_remainder = training

    if name in SMALL_AUGMENTATION:
        split, part = split_slice(split)
        if name == "cifar10":
            check_choice("split", split, ("train", "test"))
            images, labels = load_tfds_arrays(
                name, split, data_dir=data_dir, manual_dir=manual_dir, download=download
            )
        else:
            images, labels, _ = idx.load_idx_split(name, split, data_dir=data_dir)
        images, labels = images[part], labels[part]
        mean, std = NORMALIZATION[name]
        pad, flip = SMALL_AUGMENTATION[name] if augment else (0, False)
        return dataset_from_arrays(
            images,
            labels,
            batch_size=batch_size,
            training=training,
            mean=mean,
            std=std,
            pad=pad,
            flip=flip,
            seed=seed,
            epoch=epoch,
            drop_remainder=drop_remainder,
            channels=channels,
            input_context=input_context,
            limit=limit,
            pad_to=image_size,
            soft_targets=soft_targets,
        )

    if not augment or soft_targets is not None:
        raise ConfigError(
            f"augment=False and soft_targets are supported for {', '.join(SMALL_AUGMENTATION)} "
            f"(in-memory small images), not {name}."
        )

    if channels not in (None, 3):
        raise ConfigError(f"{name} has 3 channels; channels={channels} is not supported.")
    common: dict[str, Any] = dict(
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
        builder = prepare_builder(name, data_dir, manual_dir, download=False)
        source = _imagenet_source(
            builder,
            split,
            limit=limit,
            training=training,
            seed=seed,
            epoch=epoch,
            pipelines=pipelines,
            pipeline_id=pipeline_id,
        )
        return _encoded_pipeline(source, block_shuffle=True, **common)

    # image_folder: the file list is small; shuffle it fully in NumPy.
    if data_dir is None:
        raise ConfigError("image_folder needs data_dir: the root of root/<split>/<class>/*.jpg.")
    _, index = folder_index(os.fspath(Path(data_dir).resolve()))
    if split not in index:
        raise ConfigError(
            f"image_folder {data_dir} has no split {split!r}; it has {sorted(index)}."
        )
    file_list, labels = index[split]
    files, labels = np.array(file_list[:limit]), labels[:limit]
    order = np.arange(len(files))
    if training:
        order = np.random.default_rng(_seed_pair(seed, epoch)).permutation(len(files))
    order = order[pipeline_id::pipelines]
    if sum(os.path.getsize(f) for f in files) <= cache_bytes:
        contents = _as_constant(read_image_files(tuple(files.tolist())))
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
    check_choice("dataset", name, DATASET_NAMES)
    if name in ("mnist", "fashion_mnist"):
        sources = [idx.load_idx_split(name, split, data_dir=data_dir)[2] for split in IDX_STEMS]
        return dataset_info(name, data_dir=data_dir), "; ".join(sources)
    if name == "image_folder":
        info = dataset_info(name, data_dir=data_dir)
        assert data_dir is not None  # dataset_info raised ConfigError otherwise
        return info, f"image folder {Path(data_dir).resolve()}"
    builder = prepare_builder(name, data_dir, manual_dir, download)
    return dataset_info(name, data_dir=data_dir), f"TFDS {builder.data_dir}"
