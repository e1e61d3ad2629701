"""``image_folder``: your own images as ``root/split/class/*.jpg``."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from adambnn_larq.errors import DataIntegrityError, DataNotFoundError

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


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


def folder_index(root: str) -> tuple[tuple[str, ...], dict[str, tuple[list[str], np.ndarray]]]:
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
def read_image_files(files: tuple[str, ...]) -> np.ndarray:
    """The encoded bytes of ``files`` (cached: an epoch reads every file again)."""
    return np.array([Path(f).read_bytes() for f in files], dtype=object)
