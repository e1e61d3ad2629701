"""``adambnn prepare-data``."""

from __future__ import annotations

import argparse

from adambnn_larq.config import DATASET_NAMES


def _prepare_command(args: argparse.Namespace) -> int:
    from adambnn_larq.data import prepare

    info, source = prepare(
        args.dataset,
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
        download=not args.no_download,
    )
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
