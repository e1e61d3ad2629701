"""Input pipeline throughput on this host, side by side with what consumes it.

Measures images/s of

- the ImageNet training and evaluation pipelines (`make_dataset("imagenet2012", ...)`) on a
  synthetic ImageNet built in a temporary directory: JPEGs of ImageNet's typical sizes in the real
  tar layout, prepared by the real TFDS builder;
- the small-image pipelines: Fashion-MNIST (the real, offline copy) and a CIFAR-10-shaped array
  through the same in-memory code;
- for each, a synthetic-tensor upper bound: a `tf.data` pipeline that only repeats one ready
  batch of the same shape (what iterating costs when preprocessing is free);
- optionally (default on) a training step of the network each pipeline feeds (ReActNet-A at 224,
  ReActNetSmall at 28 and 32) on ready tensors, so the table shows whether training would wait
  for data.

All rates come from one run of this script; pipelines and models use the same cores, so compare
ratios, not absolute numbers from different runs.

Usage:
    python benchmarks/input_pipeline.py [--train-images 640] [--skip-model] [--output FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import adambnn_larq  # selects Keras 2 before TensorFlow is imported

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

from adambnn_larq import data

# Sizes of typical ImageNet photos (most are 500 px on the long side, landscape).
IMAGE_SIZES = ((375, 500), (333, 500), (500, 375), (500, 500), (480, 640), (281, 500))


def synthetic_photo(rng: np.random.Generator, height: int, width: int) -> bytes:
    """A JPEG whose size and entropy resemble a photo: smooth shapes plus texture noise."""
    from PIL import Image

    coarse = rng.integers(0, 256, (height // 32 + 2, width // 32 + 2, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-24, 25, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    tar.addfile(info, io.BytesIO(content))


def build_synthetic_imagenet(root: Path, train_images: int, val_images: int) -> dict:
    """ILSVRC2012 tars in the real layout under root/downloads/manual, prepared with TFDS."""
    import tensorflow_datasets as tfds

    synsets = Path(tfds.core.tfds_path("datasets/imagenet2012/labels.txt")).read_text().split()
    manual = root / "downloads" / "manual"
    manual.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sizes: list[int] = []
    classes = 10
    with tarfile.open(manual / "ILSVRC2012_img_train.tar", "w") as train:
        for c in range(classes):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as class_tar:
                for i in range(train_images // classes):
                    jpeg = synthetic_photo(rng, *IMAGE_SIZES[i % len(IMAGE_SIZES)])
                    sizes.append(len(jpeg))
                    _add(class_tar, f"{synsets[c]}_{i}.JPEG", jpeg)
            _add(train, f"{synsets[c]}.tar", inner.getvalue())
    with tarfile.open(manual / "ILSVRC2012_img_val.tar", "w") as val:
        for i in range(1, val_images + 1):
            jpeg = synthetic_photo(rng, *IMAGE_SIZES[i % len(IMAGE_SIZES)])
            _add(val, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg)
    started = time.perf_counter()
    info, _ = data.prepare("imagenet2012", data_dir=str(root))
    return {
        "train_examples": info.num_examples["train"],
        "validation_examples": info.num_examples["validation"],
        "mean_jpeg_kb": float(np.mean(sizes) / 1024),
        "prepare_seconds": time.perf_counter() - started,
    }


def images_per_second(make_dataset, min_images: int) -> float:
    """Iterate fresh epochs (make_dataset(epoch)) until min_images have passed; the first batch
    (pipeline start-up) is not timed."""
    epoch, counted, started = 0, 0, None
    while counted < min_images:
        for images, _ in make_dataset(epoch):
            if started is None:
                started = time.perf_counter()
                continue
            counted += int(images.shape[0])
        epoch += 1
    return counted / (time.perf_counter() - started)


def upper_bound(shape: tuple[int, ...], batch_size: int, min_images: int) -> float:
    """Images/s of a pipeline that only repeats one ready batch of the same shape."""
    batch = (tf.zeros((batch_size, *shape), tf.float32), tf.zeros((batch_size,), tf.int32))
    batches = min_images // batch_size + 1
    dataset = tf.data.Dataset.from_tensors(batch).repeat(batches).prefetch(tf.data.AUTOTUNE)
    return images_per_second(lambda epoch: dataset, min_images)


def training_step_rate(model: tf.keras.Model, shape, batch_size: int, steps: int) -> float:
    """Images/s of a compiled (tf.function) Adam training step on ready tensors."""
    optimizer = tf.keras.optimizers.Adam(1e-3)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    images = tf.random.normal((batch_size, *shape))
    labels = tf.zeros((batch_size,), tf.int32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    step()  # trace and warm up
    started = time.perf_counter()
    for _ in range(steps):
        step().numpy()
    return steps * batch_size / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-images", type=int, default=640, help="synthetic ImageNet size")
    parser.add_argument("--val-images", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=64, help="ImageNet pipeline batch")
    parser.add_argument("--small-batch-size", type=int, default=256)
    parser.add_argument("--skip-model", action="store_true", help="no training-step timing")
    parser.add_argument("--output", type=Path, default=None, help="also write JSON here")
    args = parser.parse_args(argv)

    results: dict = {
        "host": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_at_start": os.getloadavg(),
        "tensorflow": tf.__version__,
    }
    rows: list[tuple[str, float, float, float | None]] = []
    with tempfile.TemporaryDirectory(prefix="adambnn-bench-") as tmp:
        print("building and preparing a synthetic ImageNet ...", file=sys.stderr)
        results["synthetic_imagenet"] = build_synthetic_imagenet(
            Path(tmp), args.train_images, args.val_images
        )
        batch = args.batch_size
        imagenet_images = 2 * args.train_images

        def imagenet(split, training, antialias=True):
            return lambda epoch: data.make_dataset(
                "imagenet2012",
                split,
                batch_size=batch,
                training=training,
                epoch=epoch,
                data_dir=tmp,
                drop_remainder=True,
                antialias=antialias,
            )

        print("timing the ImageNet pipelines ...", file=sys.stderr)
        train_rate = images_per_second(imagenet("train", True), imagenet_images)
        aliased_rate = images_per_second(imagenet("train", True, False), imagenet_images)
        eval_rate = images_per_second(imagenet("validation", False), imagenet_images)
        bound = upper_bound((224, 224, 3), batch, imagenet_images)
        model_224 = None
        if not args.skip_model:
            print("timing a ReActNet-A training step ...", file=sys.stderr)
            model_224 = training_step_rate(
                adambnn_larq.ReActNetA(), (224, 224, 3), batch_size=16, steps=3
            )
        rows.append(("imagenet2012 train (224, RandomResizedCrop)", train_rate, bound, model_224))
        rows.append(("same, antialias=False", aliased_rate, bound, model_224))
        rows.append(("imagenet2012 eval (256 -> 224)", eval_rate, bound, model_224))

    small = args.small_batch_size
    print("timing the small-image pipelines ...", file=sys.stderr)
    fashion_rate = images_per_second(
        lambda epoch: data.make_dataset(
            "fashion_mnist", "train", batch_size=small, training=True, epoch=epoch
        ),
        120_000,
    )
    rng = np.random.default_rng(1)
    cifar_images = rng.integers(0, 256, (50_000, 32, 32, 3), dtype=np.uint8)
    cifar_labels = rng.integers(0, 10, 50_000).astype(np.int32)
    mean, std = data.normalization("cifar10")
    cifar_rate = images_per_second(
        lambda epoch: data.dataset_from_arrays(
            cifar_images,
            cifar_labels,
            batch_size=small,
            training=True,
            mean=mean,
            std=std,
            pad=4,
            flip=True,
            epoch=epoch,
        ),
        100_000,
    )
    model_28 = model_32 = None
    if not args.skip_model:
        print("timing ReActNetSmall training steps ...", file=sys.stderr)
        model_28 = training_step_rate(
            adambnn_larq.ReActNetSmall(input_shape=(28, 28, 1), num_classes=10),
            (28, 28, 1),
            batch_size=small,
            steps=3,
        )
        model_32 = training_step_rate(
            adambnn_larq.ReActNetSmall(input_shape=(32, 32, 3), num_classes=10),
            (32, 32, 3),
            batch_size=small,
            steps=3,
        )
    rows.append(
        (
            "fashion_mnist train (pad-crop, flip)",
            fashion_rate,
            upper_bound((28, 28, 1), small, 120_000),
            model_28,
        )
    )
    rows.append(
        (
            "cifar10-shaped train (pad-crop, flip)",
            cifar_rate,
            upper_bound((32, 32, 3), small, 100_000),
            model_32,
        )
    )

    results["rows"] = [
        {"pipeline": n, "images_per_s": r, "upper_bound": b, "training_step_images_per_s": m}
        for n, r, b, m in rows
    ]
    load = ", ".join(f"{value:.2f}" for value in results["load_average_at_start"])
    print(f"\n{results['host']}, TF {tf.__version__}, load average at start {load}")
    print(f"synthetic ImageNet: {results['synthetic_imagenet']}\n")
    print(
        "| pipeline | pipeline img/s | upper bound img/s | pipeline / bound "
        "| training step img/s | pipeline / step |"
    )
    print("|---|---|---|---|---|---|")
    for name, rate, bound, model in rows:
        step = f"{model:,.1f} | {rate / model:,.1f}×" if model else "– | –"
        print(f"| {name} | {rate:,.0f} | {bound:,.0f} | {rate / bound:.3f} | {step} |")
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
