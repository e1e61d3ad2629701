"""Run a recipe: the optional teacher (stage 0), then the one or two steps of AdamBNN training.

A run directory holds everything a run produces and is what makes it resumable; its layout
and file names are `adambnn_larq.rundir`'s.

Killed at any moment, the same command continues from the last finished epoch: the
checkpoint holds the model, the optimizer state (moments, iteration count, hence the
learning-rate schedule) and the epoch; the data order and augmentation of every epoch are a
pure function of (seed, epoch). A step with a ``result.json`` is never rerun.

The modules, each a job: `driver` (`train`: the run directory claimed and checked, the teacher
and the steps run, the summary), `schedule` (the steps and their networks), `stage` (one stage
trained epoch by epoch: `run_stage`), `checkpoints` (restore with fallback, the pending best
model, `copy_weights`), `teacher` (the small teacher's cache, the cached teacher logits),
`checks` (the configuration and the run directory checked before anything is written) and
`strategy` (distribution strategies, the chief worker).
"""

from adambnn_larq.training.checkpoints import checkpoint_prefixes, copy_weights, restore_checkpoint
from adambnn_larq.training.checks import check_config, earlier_run, run_inputs
from adambnn_larq.training.driver import train
from adambnn_larq.training.schedule import Step, build_student, schedule_steps
from adambnn_larq.training.stage import run_stage
from adambnn_larq.training.strategy import configure_cpu_devices, make_strategy
from adambnn_larq.training.teacher import cache_teacher_logits, prepare_teacher, teacher_identity

__all__ = [
    "Step",
    "build_student",
    "cache_teacher_logits",
    "check_config",
    "checkpoint_prefixes",
    "configure_cpu_devices",
    "copy_weights",
    "earlier_run",
    "make_strategy",
    "prepare_teacher",
    "restore_checkpoint",
    "run_inputs",
    "run_stage",
    "schedule_steps",
    "teacher_identity",
    "train",
]
