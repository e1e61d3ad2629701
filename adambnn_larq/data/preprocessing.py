"""Per-image preprocessing: normalization, small-image augmentation, ImageNet's
random-resized crop, lighting and evaluation crop.

Every random choice is drawn from stateless generators seeded by the caller (see
`adambnn_larq.data.pipelines`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

from adambnn_larq.config import DATASET_NAMES
from adambnn_larq.data.catalog import check_choice

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
NORMALIZATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet2012": (IMAGENET_MEAN, IMAGENET_STD),
    "image_folder": (IMAGENET_MEAN, IMAGENET_STD),
}

# Small-image augmentation: (pad for pad-and-crop, horizontal flip). Digits must not be
# mirrored; clothes may.
SMALL_AUGMENTATION = {
    "mnist": (2, False),
    "fashion_mnist": (2, True),
    "cifar10": (4, True),
}


# Torchvision's RandomResizedCrop defaults, as in the official recipe.
DEFAULT_CROP_SCALE = (0.08, 1.0)
DEFAULT_CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
# Resize-then-center-crop ratio of the evaluation transform (256 -> 224).
_EVAL_CROP_FRACTION = 224 / 256


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of pixels in [0, 1] that `make_dataset` normalizes with."""
    check_choice("dataset", name, DATASET_NAMES)
    return NORMALIZATION[name]


def normalize(images: tf.Tensor, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
    """uint8-range float pixels -> (pixels / 255 - mean) / std."""
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
