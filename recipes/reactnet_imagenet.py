"""The original ReActNet recipe (69.4 % top-1 reported) for comparison with AdamBNN's.

Differences from ``adambnn_imagenet``: learning rate 5e-4 and weight decay 1e-5 in step 1.
(The original code's step 2 silently failed to inherit step 1's binary weights; this recipe
does inherit them, as intended.)

    adambnn train reactnet_imagenet teacher=resnet34.h5 data_dir=/data/tfds

Expected run time: as ``adambnn_imagenet``.
"""

from recipes.common import IMAGENET_SMOKE


def get_config(smoke: bool = False) -> dict:
    config = {
        "dataset": "imagenet2012",
        "model": "reactnet_a",
        "schedule": "two-step",
        "epochs": 256,
        "batch_size": 256,
        "learning_rate": 5e-4,
        "weight_decay": 1e-5,
        "weight_decay_step2": 0.0,
        "teacher": "resnet34.h5",
    }
    if smoke:
        config.update(IMAGENET_SMOKE)
    return config
