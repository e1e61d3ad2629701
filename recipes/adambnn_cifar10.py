"""AdamBNN's two-step recipe on CIFAR-10 (32x32 RGB): small ReActNet, 3 downsamplings.

CIFAR-10 ships in no package: it needs `adambnn prepare-data cifar10` online once (or the
archive in the TFDS manual dir, see docs/data.md).

    adambnn train adambnn_cifar10
    adambnn train adambnn_cifar10 --smoke

Expected run time on 2 CPU cores: about 21 hours for the two steps (2 x 30 epochs of 50,000
images at 40 images/s, measured on random 32x32x3 inputs: docs/results/train-throughput/README.md),
plus the teacher's 15 epochs; a full run was not made because the data is not offline here.
"""

from recipes.common import SMALL_IMAGE_SMOKE


def get_config(smoke: bool = False) -> dict:
    config = {
        "dataset": "cifar10",
        "model": "reactnet_small",
        "width_multiplier": 0.5,
        "num_downsamplings": 3,
        "kernel_initializer": "pytorch_default",
        "epochs": 30,
        "batch_size": 128,
        # Per-iteration decay: the official per-epoch schedule idles the last of 30 epochs.
        "lr_schedule": "step-linear",
        "warmup_epochs": 0.2,
        "weight_decay": 5e-6,
        "teacher": "small_teacher",
        "teacher_epochs": 15,
        "teacher_width": 64,
    }
    if smoke:
        config.update(SMALL_IMAGE_SMOKE)
    return config
