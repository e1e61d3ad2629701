"""The AdamBNN paper's recipe: ReActNet-A on ImageNet, two-step Adam (70.5 % top-1 reported).

Step 1 trains binary activations with real weights and coupled L2 decay 5e-6 on the conv
kernels and RSign/RPReLU shifts; step 2 binarizes the weights, starts from step 1's best
checkpoint with a fresh Adam and no decay. 256 epochs a step, batch 256, lr 1.25e-3 with the
per-epoch linear schedule, distillation (T = 1, no label term) from torchvision's ResNet-34.

    # once: the teacher, from torchvision's resnet34 state_dict (docs/pretrained.md)
    adambnn import-pytorch resnet34-b627a593.pth --output resnet34.h5
    # ILSVRC2012_img_{train,val}.tar in <data_dir>/downloads/manual (docs/data.md)
    adambnn train adambnn_imagenet teacher=resnet34.h5 data_dir=/data/tfds --strategy mirrored

Expected run time: the paper reports about three days a step on an 8-GPU workstation. On a
2-core CPU it is not practical: 1.6 images/s in either step at 224 (batch 8, with the ResNet-34
teacher; docs/results/train-throughput/README.md), about 9 days an epoch. ``--smoke`` checks the
whole path on 64 images in minutes once the dataset is prepared.
"""

from recipes.common import IMAGENET_SMOKE


def get_config(smoke: bool = False) -> dict:
    config = {
        "dataset": "imagenet2012",
        "model": "reactnet_a",
        "kernel_initializer": "reference",
        "schedule": "two-step",
        "epochs": 256,
        "batch_size": 256,
        "optimizer": "adam",
        "learning_rate": 1.25e-3,
        "lr_schedule": "linear",
        "weight_decay": 5e-6,
        "weight_decay_step2": 0.0,
        "weight_decay_mode": "coupled",
        "distillation": True,
        "teacher": "resnet34.h5",
    }
    if smoke:
        config.update(IMAGENET_SMOKE)
    return config
