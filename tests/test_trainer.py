import numpy as np
import pytest
import tensorflow as tf

import adambnn_larq as ab
from adambnn_larq.config import ConfigError, resolve_config
from adambnn_larq.optim import (
    EpochLinearDecay,
    StepLinearDecay,
    create_optimizer_variables,
    decayed_variables,
    idle_epochs_warning,
    learning_rate_schedule,
    make_optimizer,
)
from adambnn_larq.trainer import BNNTrainer, distillation_loss


def test_linear_schedule_matches_official_formula():
    epochs, steps = 5, 7
    schedule = EpochLinearDecay(1.25e-3, epochs, steps)
    for step in range(epochs * steps):
        epoch = step // steps
        expected = 1.25e-3 * (1 - (epoch + 1) / epochs)
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6, abs=1e-12)  # float32
    assert float(schedule(epochs * steps - 1)) == 0.0  # last epoch: only BN statistics move


@pytest.mark.parametrize("warmup_epochs", [0.0, 0.5])
def test_step_linear_schedule_matches_its_formula_and_learns_at_the_last_step(warmup_epochs):
    epochs, steps, peak = 3, 10, 2e-3
    schedule = learning_rate_schedule(
        "step-linear", peak, epochs=epochs, steps_per_epoch=steps, warmup_epochs=warmup_epochs
    )
    total, warmup = epochs * steps, int(warmup_epochs * steps)
    for t in range(total):
        # Written from the docstring's formula, independently of the implementation.
        if t < warmup:
            expected = peak * (t + 1) / warmup
        else:
            expected = peak * (1 - (t - warmup) / (total - warmup))
        assert float(schedule(t)) == pytest.approx(expected, rel=1e-5), t
    last = float(schedule(total - 1))
    assert last > 0 and last == pytest.approx(peak / (total - warmup), rel=1e-5)
    assert float(schedule(warmup)) == pytest.approx(peak, rel=1e-6)  # the peak after warm-up
    restored = StepLinearDecay.from_config(schedule.get_config())
    assert float(restored(7)) == float(schedule(7))


def test_an_optimizer_with_step_linear_changes_weights_in_its_last_step():
    variable = tf.Variable([1.0, -1.0])
    schedule = learning_rate_schedule("step-linear", 0.1, epochs=1, steps_per_epoch=4)
    optimizer = make_optimizer("adam", schedule)
    for _ in range(4):
        before = variable.numpy().copy()
        optimizer.apply_gradients([(tf.constant([1.0, 1.0]), variable)])
    assert int(optimizer.iterations) == 4
    assert np.all(variable.numpy() < before)  # the 4th (last) step still moved them


def test_short_per_epoch_schedules_are_refused_or_warned():
    with pytest.raises(ConfigError, match="would train nothing"):
        resolve_config({"epochs": 1, "lr_schedule": "linear"})
    with pytest.raises(ConfigError, match="needs lr_schedule=step-linear"):
        resolve_config({"epochs": 3, "warmup_epochs": 0.5})
    with pytest.raises(ConfigError, match="warmup_epochs must be in"):
        resolve_config({"epochs": 1, "lr_schedule": "step-linear", "warmup_epochs": 1.0})
    assert resolve_config({"epochs": 1, "lr_schedule": "step-linear"}).epochs == 1
    assert "33%" in idle_epochs_warning("linear", 3)
    assert idle_epochs_warning("linear", 256) is None
    assert idle_epochs_warning("step-linear", 2) is None


def test_decayed_variables_are_exactly_the_specified_set():
    model = ab.ReActNetSmall(width_multiplier=0.125)
    names = sorted(v.name for v in decayed_variables(model))
    expected = ["stem_conv/kernel:0"]
    for n in range(1, 14):
        convs = ["conv3x3"] + (["conv1x1_1", "conv1x1_2"] if n in (1, 2, 4, 6, 12) else ["conv1x1"])
        expected += [f"block{n}_{c}/kernel:0" for c in convs]
        expected += [f"block{n}_rsign1/bias:0", f"block{n}_rsign2/bias:0"]
        for r in ("rprelu1", "rprelu2"):
            expected += [f"block{n}_{r}/shift_in:0", f"block{n}_{r}/shift_out:0"]
    assert names == sorted(expected)
    all_names = {v.name for v in model.trainable_variables}
    assert all(name in all_names for name in names)
    undecayed = all_names - set(names)
    assert "logits/kernel:0" in undecayed and "block1_rprelu1/alpha:0" in undecayed
    assert any(name.endswith("gamma:0") for name in undecayed)


def _tiny_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype("float32")
    y = rng.integers(0, 3, size=(8,)).astype("int32")
    inputs = tf.keras.Input((4,))
    dense = tf.keras.layers.Dense(3, use_bias=False)
    model = tf.keras.Model(inputs, dense(inputs))
    w0 = rng.normal(size=(4, 3)).astype("float32")
    dense.set_weights([w0])
    return x, y, model, dense, w0


def _cross_entropy_gradient(x, y, w):
    logits = x @ w
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return x.T @ p / len(y)


@pytest.mark.parametrize("decay", [1e-2, -1e-2])
def test_coupled_step_equals_pytorch_adam_with_weight_decay(decay):
    x, y, model, dense, w0 = _tiny_problem()
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8
    trainer = BNNTrainer(model, weight_decay=decay, decayed=[dense.kernel])
    trainer.compile(make_optimizer("adam", lr, beta_1=b1, beta_2=b2, epsilon=eps))
    trainer.train_on_batch(x, y)
    # torch.optim.Adam(weight_decay=decay), first step, written out by hand.
    g = _cross_entropy_gradient(x, y, w0) + decay * w0
    m, v = (1 - b1) * g, (1 - b2) * g**2
    expected = w0 - lr * (m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + eps)
    np.testing.assert_allclose(dense.kernel.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_decoupled_step_equals_adamw():
    x, y, model, dense, w0 = _tiny_problem()
    lr, decay = 1e-2, 0.5
    trainer = BNNTrainer(
        model, weight_decay=decay, weight_decay_mode="decoupled", decayed=[dense.kernel]
    )
    trainer.compile(make_optimizer("adam", lr))
    trainer.train_on_batch(x, y)
    g = _cross_entropy_gradient(x, y, w0)
    m, v = 0.1 * g, 0.001 * g**2
    # torch.optim.AdamW: decay the weights first, then the Adam step from the old gradient.
    expected = w0 * (1 - lr * decay) - lr * (m / 0.1) / (np.sqrt(v / 0.001) + 1e-8)
    np.testing.assert_allclose(dense.kernel.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_decay_touches_only_the_decayed_variables():
    x, y, model, dense, w0 = _tiny_problem()
    trainer = BNNTrainer(model, weight_decay=0.5, weight_decay_mode="decoupled", decayed=[])
    trainer.compile(make_optimizer("sgd", 0.0, momentum=0.0))
    trainer.train_on_batch(x, y)
    np.testing.assert_array_equal(dense.kernel.numpy(), w0)


def test_distillation_loss_matches_numpy():
    rng = np.random.default_rng(1)
    t, s = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    pt = np.exp(t) / np.exp(t).sum(1, keepdims=True)
    log_ps = s - np.log(np.exp(s).sum(1, keepdims=True))
    expected = -(pt * log_ps).sum(1)
    actual = distillation_loss(tf.constant(t, tf.float32), tf.constant(s, tf.float32)).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-5)


@pytest.mark.slow
def test_gradient_tracking_keeps_running_max():
    model = ab.ReActNetSmall(width_multiplier=0.125, input_shape=(8, 8, 1))
    trainer = BNNTrainer(model, track_gradients=True)
    trainer.compile(make_optimizer("adam", 0.0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 4).astype("int32")
    kernel = ab.binary_conv_layers(model)[0].kernel.latent_variable
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(
            tf.keras.losses.sparse_categorical_crossentropy(y, model(x, training=True), True)
        )
    expected = np.abs(tape.gradient(loss, kernel).numpy())
    trainer.train_on_batch(x, y)
    np.testing.assert_allclose(trainer.gradient_abs_max[0].numpy(), expected, rtol=1e-4, atol=1e-9)
    assert trainer.gradient_norms.shape == (31,)
    trainer.reset_gradient_tracking()
    assert float(tf.reduce_max(trainer.gradient_abs_max[0])) == 0.0


@pytest.mark.parametrize("create_first", [False, True])
def test_creating_optimizer_variables_first_traces_the_step_once(create_first):
    x, y, model, _, _ = _tiny_problem()
    trainer = BNNTrainer(model)
    optimizer = make_optimizer("adam", 1e-3)
    trainer.compile(optimizer)
    if create_first:
        create_optimizer_variables(optimizer, trainer.trainable_variables)
    trainer.fit(x, y, batch_size=4, epochs=1, verbose=0)
    # Slots created inside the first call make TensorFlow trace the step a second time.
    assert trainer.train_function.experimental_get_tracing_count() == (1 if create_first else 2)
    assert len(optimizer.variables()) == 1 + 2 * len(trainer.trainable_variables)
