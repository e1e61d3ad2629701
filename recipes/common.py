"""What the recipes share: imported by them as ``from recipes.common import ...``.

Not a recipe itself (``adambnn train`` does not list it). The loader
(`adambnn_larq.recipe_files.load_recipe`) makes ``recipes`` importable without installing it.
"""

#: ``--smoke`` for the small-image recipes: two epochs a step (so that step 2 starts from a
#: step-1 checkpoint), a one-epoch teacher, a few hundred images: the whole path in a minute.
SMALL_IMAGE_SMOKE = {
    "epochs": 2,
    "epochs_step2": None,
    "teacher_epochs": 1,
    "train_limit": 512,
    "eval_limit": 256,
    "batch_size": 64,
    "probe_size": 16,
}

#: ``--smoke`` for the ImageNet recipes: the whole path on 64 images once the data is prepared.
IMAGENET_SMOKE = {
    "epochs": 2,
    "batch_size": 16,
    "train_limit": 64,
    "eval_limit": 32,
    "probe_size": 8,
}
