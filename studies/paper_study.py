"""The paper study at CPU scale, with every arm tuned: Adam vs SGD, one-step vs two-step, and
the step-1 weight-decay sweep, on Fashion-MNIST (and CIFAR-10 when its data has been prepared,
see docs/data.md).

    adambnn study paper_study --jobs 2             # ~5.5 h on 2 cores (estimated, below)
    adambnn study paper_study --smoke --jobs 2     # every run on a few hundred images: minutes
    adambnn study paper_study --runs adam-1step-wd5e-06,adam-2step-wd5e-06   # some runs only

The study of 2026-12-01 (docs/results/paper-study: 12 sweep points, 8 runs x 2 seeds) recorded
442.5 minutes of training, two runs at a time: about 3.7 hours of the 2-core machine (a sweep
run 12.3 minutes on average, a final run 18.5). At those rates this configuration (16 sweep
points, 8 runs x 3 seeds) needs about 640 minutes of training, ~5.3-5.5 hours of the machine,
and each extension of a sweep grid about 6 minutes more; the study resumes run by run when
interrupted.

How the comparison is made fair:

- **Each arm gets its own learning rate.** The four arms (Adam or SGD, one or two steps) each
  sweep ``ARMS[arm]["learning_rates"]`` (four rates a factor 2 apart for both optimizers) on
  the arm's representative run, scored by the final model's top-1 on a validation split: the
  last ``VALIDATION_SIZE`` training images, held out of training. Where the best is the
  largest or smallest rate, the sweep adds the next rate beyond it and trains that, up to
  ``MAX_EXTENSIONS`` times a side, so the chosen rate lies inside the rates tried (the report
  says where it did not). The sweep runs never read the test split
  (``evaluate_test=false``). Every run of an arm then uses the chosen rate.
- **Seeds.** The final runs train once per seed in ``SEEDS`` (model init, data order and the
  teacher all follow the seed, so the runs of one seed in every arm start from the same
  weights and see the same batches; the study checks the initial signs). Each comparison is a
  paired t-test on the per-seed differences, Holm-corrected within a finding; the report gives
  the effect with its 95 % confidence interval and p-value. A t-test needs two seeds at the
  least (the smoke run's two), but on one degree of freedom its 95 % critical t is 12.7: three
  seeds or more.
- **Equal budgets, a schedule that learns to the end.** Every run trains ``2 * EPOCHS_PER_STEP``
  epochs on the first ``TRAIN_LIMIT`` training images (one-step: all in one step; two-step: half
  before and half after binarizing the weights) with the per-iteration linear schedule and a
  short warm-up (the official per-epoch schedule would idle a whole epoch of these short
  steps), and distillation from the recipe's small teacher.
- **Weight decay scaled to the short run.** The paper's decays (1e-5, 5e-6, 0, -1e-5, coupled
  L2) act over 256 epochs of 5,005 iterations; this study has about 250 iterations a run, and
  at the paper's values the decay term is ~1e-3 of the gradient and changes nothing
  measurable. Decay acts through its accumulated drift against the gradient noise, which grows
  as iterations x decay against sqrt(iterations) x noise; keeping that ratio needs the decay
  times sqrt(1.28e6 / 250) ~ 70, so every decay here is the paper's times ``DECAY_SCALE`` = 100.
  Run names keep the paper's values (``adam-1step-wd5e-06`` trains with 5e-4).

``PAPER`` holds the paper's numbers for binary ResNet-18 on ImageNet (Table 1 and the
four-run comparison; docs/method.md §6): a different network, dataset and budget, so they are shown
for the direction of each effect, not for the values.
"""

#: What this file is, read without running it (`adambnn_larq.recipe_files.file_kind`): a study,
#: not a recipe, so ``adambnn train`` does not list it.
KIND = "study"

EPOCHS_PER_STEP = 2
TRAIN_LIMIT = 8000
EVAL_LIMIT = 5000
VALIDATION_SIZE = 5000
SEEDS = [0, 1, 2]
DECAY_SCALE = 100.0
WARMUP_EPOCHS = 0.2

#: Points a sweep may add on each side of an arm's grid while its best rate is at that edge.
MAX_EXTENSIONS = 2

# Both optimizers' grids have the same density: four rates a factor 2 apart. Each is placed
# around its arm's best on the 2026-12-01 validation sweep (Adam: 2.5e-3, the top of
# 6.25e-4 ... 2.5e-3 and still rising; SGD: 1e-2, between 1e-3 and 1e-1); where the best lands
# on an edge again, the sweep extends the grid (``MAX_EXTENSIONS``).
ADAM_RATES = [1.25e-3, 2.5e-3, 5e-3, 1e-2]
SGD_RATES = [2.5e-3, 5e-3, 1e-2, 2e-2]

#: arm -> the run whose settings the sweep uses, and the learning rates it tries.
ARMS = {
    "adam-1step": {"sweep_run": "adam-1step-wd0", "learning_rates": ADAM_RATES},
    "adam-2step": {"sweep_run": "adam-2step-wd5e-06", "learning_rates": ADAM_RATES},
    "sgd-1step": {"sweep_run": "sgd-1step-wd0", "learning_rates": SGD_RATES},
    "sgd-2step": {"sweep_run": "sgd-2step-wd5e-06", "learning_rates": SGD_RATES},
}


def _runs(epochs_per_step: int) -> list[dict]:
    one_step = {"schedule": "one-step", "epochs": 2 * epochs_per_step}
    two_step = {"schedule": "two-step", "epochs": epochs_per_step, "weight_decay_step2": 0.0}
    sgd = {"optimizer": "sgd"}

    def decay(paper_value: float) -> float:
        return paper_value * DECAY_SCALE

    runs = [
        {
            "name": f"adam-1step-wd{value:g}",
            "arm": "adam-1step",
            "overrides": {**one_step, "weight_decay": decay(value)},
            "paper": f"adam one-step {value:g}",
        }
        for value in (1e-5, 5e-6, 0.0, -1e-5)
    ]
    runs += [
        {
            "name": f"adam-2step-wd{value:g}",
            "arm": "adam-2step",
            "overrides": {**two_step, "weight_decay": decay(value)},
            "paper": f"adam two-step {value:g}",
        }
        for value in (1e-5, 5e-6)
    ]
    # The paper's four-run comparison pairs SGD with Adam one-step (decay 0) and Adam two-step
    # (5e-6 then 0): the same decays here.
    runs += [
        {
            "name": "sgd-1step-wd0",
            "arm": "sgd-1step",
            "overrides": {**one_step, **sgd, "weight_decay": 0.0},
            "paper": "sgd one-step",
        },
        {
            "name": "sgd-2step-wd5e-06",
            "arm": "sgd-2step",
            "overrides": {**two_step, **sgd, "weight_decay": decay(5e-6)},
            "paper": "sgd two-step",
        },
    ]
    return runs


#: The paper's numbers (binary ResNet-18, ImageNet): FF ratio, C2I ratio, top-1 %.
PAPER = {
    "adam one-step 1e-05": {"ff": 2.33e-3, "c2i": 0.4810, "top1": 61.73},
    "adam one-step 5e-06": {"ff": 1.62e-3, "c2i": 0.4960, "top1": 61.89},
    "adam one-step 0": {"ff": 2.86e-4, "c2i": 0.5243, "top1": 61.49},
    "adam one-step -1e-05": {"ff": 1.07e-7, "c2i": 0.9740, "top1": 26.21},
    "adam two-step 1e-05": {"ff": 4.89e-4, "c2i": 0.6315, "top1": 62.63},
    "adam two-step 5e-06": {"ff": 4.50e-4, "c2i": 0.6636, "top1": 63.23},
    "sgd one-step": {"top1": 58.98},
    "sgd two-step": {"top1": 61.25},
}


def get_config(smoke: bool = False) -> dict:
    budget = {
        "train_limit": TRAIN_LIMIT,
        "eval_limit": EVAL_LIMIT,
        "lr_schedule": "step-linear",
        "warmup_epochs": WARMUP_EPOCHS,
        # The study's own conditions, not the demo's: batches of 128 augmented images and, per
        # arm, one tuned learning rate for both steps (the sweep chooses a single rate) and
        # equal step lengths.
        "batch_size": 128,
        "augment": True,
        "learning_rate_step2": None,
        "epochs_step2": None,
    }
    epochs_per_step, validation_size, arms, seeds = EPOCHS_PER_STEP, VALIDATION_SIZE, ARMS, SEEDS
    max_extensions = MAX_EXTENSIONS
    if smoke:
        # On top of each recipe's own smoke settings: one epoch a step on 128 images, two
        # learning rates an arm and no extension (the smoke run checks the pipeline, not where
        # an optimum lies; with two rates it is always at an edge), the two seeds a t-test
        # needs at the least.
        budget.update(train_limit=128, eval_limit=64, batch_size=64, probe_size=8)
        epochs_per_step, validation_size, seeds, max_extensions = 1, 64, SEEDS[:2], 0
        arms = {
            arm: {**entry, "learning_rates": entry["learning_rates"][1:3]}
            for arm, entry in ARMS.items()
        }
    # The study's teacher trains 2 epochs, as when its runs were made: the demo recipe's teacher
    # grew to 3 epochs once oneDNN made the demo's training faster.
    fashion_mnist = budget if smoke else {**budget, "teacher_epochs": 2}
    return {
        "datasets": {
            "fashion_mnist": {"recipe": "adambnn_fashion_mnist", "overrides": fashion_mnist},
            "cifar10": {"recipe": "adambnn_cifar10", "overrides": budget},
        },
        "selection": {
            "validation_size": validation_size,
            "seeds": seeds,
            "max_extensions": max_extensions,
        },
        "arms": arms,
        "runs": _runs(epochs_per_step),
        "paper": PAPER,
    }
