"""Training without augmentation: the teacher's logits cached once, step 2's own learning rate
and epochs, and run directories written before these fields existed."""

import json

import numpy as np
import pytest
from test_training import TINY

import adambnn_larq as ab
from adambnn_larq import training
from adambnn_larq.config import ConfigError, TrainConfig, resolve_config
from adambnn_larq.data.pipelines import dataset_from_arrays
from adambnn_larq.optim import make_optimizer
from adambnn_larq.trainer import BNNTrainer
from adambnn_larq.training import driver as training_driver
from adambnn_larq.training import teacher as training_teacher
from adambnn_larq.training.checks import _check_run_dir

TINY_DISTILLED = {
    **TINY,
    "epochs": 1,
    "lr_schedule": "step-linear",
    "distillation": True,
    "teacher": "small_teacher",
    "teacher_epochs": 1,
    "teacher_width": 4,
}


def test_soft_targets_follow_their_images_through_the_shuffle():
    count = 50
    # Image i is filled with the value i, its target row is (i, -i): any misalignment shows.
    values = np.arange(count, dtype=np.uint8)[:, None, None, None]
    images = np.broadcast_to(values, (count, 4, 4, 1))
    targets = np.stack([np.arange(count), -np.arange(count)], axis=1).astype(np.float32)
    common = dict(mean=[0.0], std=[1 / 255], batch_size=8, soft_targets=targets)
    seen = []
    for kwargs in ({"training": True, "seed": 3, "epoch": 1, "limit": 40},
                   {"training": True, "pad_to": 6}, {"training": False}):  # fmt: skip
        for x, _, t in dataset_from_arrays(images, np.zeros(count), **common, **kwargs):
            centre = x.numpy()[:, x.shape[1] // 2, x.shape[2] // 2, 0]
            np.testing.assert_array_equal(centre, t.numpy()[:, 0])
            np.testing.assert_array_equal(t.numpy()[:, 1], -t.numpy()[:, 0])
            seen.append(t.numpy()[:, 0])
    first = np.concatenate(seen)[:40]
    assert sorted(first) == list(range(40)) and list(first) != list(range(40))  # shuffled, all
    with pytest.raises(ValueError, match="soft_targets must be .* 50 images"):
        dataset_from_arrays(images, np.zeros(count), **{**common, "soft_targets": targets[:10]},
                            training=True)  # fmt: skip


@pytest.mark.slow
def test_cached_teacher_logits_give_the_same_step_as_running_the_teacher():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 16).astype("int32")
    teacher = ab.SmallTeacher(input_shape=(8, 8, 1), width=4)
    students = [ab.ReActNetSmall(input_shape=(8, 8, 1), width_multiplier=0.125) for _ in "ab"]
    training.copy_weights(students[0], students[1])
    initial = [v.numpy() for v in students[0].trainable_variables]
    inline = BNNTrainer(students[0], teacher=teacher)
    cached = BNNTrainer(students[1])  # no teacher: the logits come with the batch
    # SGD: its step is linear in the gradient. Adam's first step, about lr * g/|g|, turns float
    # rounding of a near-zero gradient (the two graphs differ, so oneDNN may block their
    # convolutions differently) into visible differences of the weights.
    for trainer in (inline, cached):
        trainer.compile(make_optimizer("sgd", 1e-1))
    logits = teacher(x, training=False).numpy()
    loss_inline = inline.train_on_batch(x, y, return_dict=True)["loss"]
    loss_cached = cached.train_on_batch(x, y, logits, return_dict=True)["loss"]
    assert loss_cached == pytest.approx(loss_inline, rel=1e-6)
    for a, b in zip(students[0].variables, students[1].variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    moved = [not np.array_equal(v.numpy(), w) for v, w in zip(students[1].trainable_variables,
                                                               initial)]  # fmt: skip
    assert all(moved)
    # Without a teacher or cached logits the loss is the label loss: a different number.
    plain = BNNTrainer(ab.ReActNetSmall(input_shape=(8, 8, 1), width_multiplier=0.125))
    plain.compile(make_optimizer("adam", 0.0))
    training.copy_weights(students[1], plain.student)
    label_loss = plain.test_on_batch(x, y, return_dict=True)["loss"]
    assert label_loss != pytest.approx(loss_cached, rel=1e-3)


@pytest.mark.slow
def test_run_without_augmentation_caches_teacher_logits_and_uses_step2_settings(
    tmp_path, monkeypatch, capsys
):
    rates = []
    real_schedule = training_driver.learning_rate_schedule

    def recording_schedule(kind, learning_rate, **kwargs):
        rates.append((learning_rate, kwargs["epochs"]))
        return real_schedule(kind, learning_rate, **kwargs)

    # The steps' optimizers (driver) and the small teacher's (teacher) build their schedules.
    monkeypatch.setattr(training_driver, "learning_rate_schedule", recording_schedule)
    monkeypatch.setattr(training_teacher, "learning_rate_schedule", recording_schedule)
    cached_logits = []
    real_cache = training_driver.cache_teacher_logits

    def recording_cache(teacher, config, info, **kwargs):
        logits = real_cache(teacher, config, info, **kwargs)
        # The cached rows are the teacher on the split's images, computed independently here.
        images = next(iter(ab.data.make_dataset(
            "fashion_mnist", "train", batch_size=192, training=False, limit=192, augment=False,
        )))[0]  # fmt: skip
        np.testing.assert_allclose(logits, teacher(images, training=False).numpy(), atol=1e-5)
        cached_logits.append(logits)
        return logits

    monkeypatch.setattr(training_driver, "cache_teacher_logits", recording_cache)
    config = resolve_config(
        {**TINY_DISTILLED, "augment": False, "learning_rate": 1e-3, "learning_rate_step2": 4e-4,
         "epochs_step2": 2}
    )  # fmt: skip
    summary = training.train(config, tmp_path / "run", verbose=0)
    assert "[teacher] logits of 192 training images cached" in capsys.readouterr().out
    assert len(cached_logits) == 1 and cached_logits[0].shape == (192, 10)
    # The teacher's own schedule first (its rate and epochs), then step 1 and step 2 with theirs.
    assert rates == [(config.teacher_learning_rate, 1), (1e-3, 1), (4e-4, 2)]
    assert [s["learning_rate"] for s in summary["steps"]] == [1e-3, 4e-4]
    assert [s["epochs"] for s in summary["steps"]] == [1, 2]
    step2_log = (tmp_path / "run" / "step2" / "log.csv").read_text().splitlines()
    assert len(step2_log) == 1 + 2  # header and one row per epoch
    # The teacher trained without augmentation is a different cache from an augmented one.
    assert training_teacher._teacher_cache_key(config, ab.data.dataset_info("fashion_mnist")) != (
        training_teacher._teacher_cache_key(resolve_config(TINY_DISTILLED),
                                            ab.data.dataset_info("fashion_mnist"))
    )  # fmt: skip


def test_new_options_are_validated():
    with pytest.raises(ConfigError, match="learning_rate_step2=0.001 needs schedule=two-step"):
        TrainConfig(schedule="one-step", learning_rate_step2=1e-3)
    with pytest.raises(ConfigError, match="learning_rate_step2 must be >= 0"):
        TrainConfig(learning_rate_step2=-1.0)
    with pytest.raises(ConfigError, match="augment=false is supported for .* not imagenet2012"):
        TrainConfig(augment=False)
    with pytest.raises(ValueError, match="augment=False and soft_targets are supported"):
        ab.data.make_dataset("imagenet2012", "train", batch_size=2, training=True, augment=False)
    assert resolve_config({}, ["learning_rate_step2=none"]).learning_rate_step2 is None
    with pytest.raises(ConfigError, match="epochs_step2=3 needs schedule=two-step"):
        TrainConfig(schedule="one-step", epochs_step2=3)
    with pytest.raises(ConfigError, match="epochs_step2 must be at least 1"):
        TrainConfig(epochs_step2=0)
    with pytest.raises(ConfigError, match="epochs_step2=1 would train nothing"):
        TrainConfig(epochs=4, epochs_step2=1)  # the official schedule, a one-epoch step 2
    with pytest.raises(ConfigError, match=r"warmup_epochs must be in \[0, 2\)"):
        TrainConfig(epochs=4, epochs_step2=2, lr_schedule="step-linear", warmup_epochs=2.5)
    assert [s.epochs for s in training.schedule_steps(TrainConfig(epochs=4, epochs_step2=2))] == [
        4, 2]  # fmt: skip


def test_a_run_written_before_new_fields_existed_still_resumes(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "step1").mkdir(parents=True)
    (run_dir / "step1" / "result.json").write_text("{}")  # a finished step
    config = resolve_config(TINY_DISTILLED)
    written = json.loads(config.to_json())
    for key in ("augment", "learning_rate_step2", "epochs_step2"):  # absent from older files
        del written[key]
    (run_dir / "config.json").write_text(json.dumps(written))
    assert _check_run_dir(config, run_dir) is False  # same run: resume
    with pytest.raises(ValueError, match=r"different configuration \(changed: augment\)"):
        _check_run_dir(resolve_config({**TINY_DISTILLED, "augment": False}), run_dir)
