"""The analysis callbacks against hand-computed cases, larq's flip_ratio and a resumed run."""

import json
from pathlib import Path

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from adambnn_larq import analysis, callbacks
from adambnn_larq.layers import RSign
from adambnn_larq.models import reactnet_block
from adambnn_larq.quantizers import SpatialFlip


class TrackingModel(tf.keras.Model):
    """A real training step implementing the trainer's gradient contract.

    ``gradient_abs_max``: max |dL/dw| per analysed kernel since `reset_gradient_tracking`;
    ``gradient_norms``: the last step's L2 norm per kernel.
    """

    def __init__(self, student, loss_fn):
        super().__init__()
        self.student = student
        self.loss_fn = loss_fn
        self._tracked = [
            analysis.latent_kernel(layer) for layer in analysis.analysis_layers(student)
        ]
        self.gradient_abs_max = [
            tf.Variable(tf.zeros(k.shape), trainable=False) for k in self._tracked
        ]
        self.gradient_norms = tf.Variable(tf.zeros(len(self._tracked)), trainable=False)

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def reset_gradient_tracking(self):
        for variable in self.gradient_abs_max:
            variable.assign(tf.zeros_like(variable))

    def train_step(self, data):
        inputs, targets = data
        variables = self.student.trainable_variables
        with tf.GradientTape() as tape:
            loss = self.loss_fn(targets, self.student(inputs, training=True))
        gradients = tape.gradient(loss, variables)
        by_id = {id(getattr(v, "latent_variable", v)): g for v, g in zip(variables, gradients)}
        norms = []
        for kernel, tracker in zip(self._tracked, self.gradient_abs_max):
            gradient = by_id[id(kernel)]
            tracker.assign(tf.maximum(tracker, tf.abs(gradient)))
            norms.append(tf.norm(gradient))
        self.gradient_norms.assign(tf.stack(norms))
        self.optimizer.apply_gradients(zip(gradients, variables))
        return {"loss": loss}


# A linear model with a constant gradient: with inputs of ones, loss = sum(out_a * C_A) +
# sum(out_b * C_B) has dL/dW_a[i, j] = C_A[j] and dL/dW_b[i, 0] = C_B whatever the weights,
# so SGD with learning rate 1 moves every weight by a known amount per step.
W_A = np.array([[0.5, -0.25, 0.2], [2.5, -1.5, 1.1]], dtype=np.float32)
C_A = np.array([1.0, -1.0, 0.5], dtype=np.float32)
W_B = np.array([[0.5], [-3.0]], dtype=np.float32)
C_B = np.float32(0.5)


def constant_gradient_model(w_a=W_A, w_b=W_B):
    inputs = tf.keras.Input((2,))
    identity = SpatialFlip(flip_spatial=False)  # a real larq quantizer that keeps the values
    out_a = lq.layers.QuantDense(3, use_bias=False, kernel_quantizer=identity, name="dense_a")(
        inputs
    )
    out_b = lq.layers.QuantDense(
        1, use_bias=False, kernel_quantizer=SpatialFlip(flip_spatial=False), name="dense_b"
    )(inputs)
    model = tf.keras.Model(inputs, tf.keras.layers.Concatenate()([out_a, out_b]))
    model.get_layer("dense_a").set_weights([w_a])
    model.get_layer("dense_b").set_weights([w_b])
    return model


def constant_gradient_loss(c_a=C_A, c_b=C_B):
    weights = tf.constant(np.append(c_a, c_b).astype(np.float32))

    def loss(targets, outputs):
        return tf.reduce_sum(outputs * weights)

    return loss


def fit_constant(model, *, steps_per_epoch, epochs, optimizer, callbacks_, tracking=False, **kw):
    loss = kw.pop("loss", constant_gradient_loss())
    trainer = TrackingModel(model, loss) if tracking else model
    # Eager steps: tracing Keras' train function costs far more than these few tiny steps.
    if tracking:
        trainer.compile(optimizer=optimizer, run_eagerly=True)
    else:
        model.compile(optimizer=optimizer, loss=loss, run_eagerly=True)
    ones = np.ones((steps_per_epoch, 2), np.float32)
    history = trainer.fit(
        ones,
        np.zeros((steps_per_epoch, 4), np.float32),
        batch_size=1,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=callbacks_,
    )
    return trainer, history


def read_csv(path):
    lines = Path(path).read_text().splitlines()
    header = lines[0].split(",")
    return header, [dict(zip(header, line.split(","))) for line in lines[1:]]


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_ff_hand_computed_flips(tmp_path):
    # Signs per step, by hand (w - C per step, sign(0) = +1):
    #   dense_a: step 1 flips 0.5, -0.25, 0.2; step 2 flips -1.5; step 3 flips 2.5, 1.1.
    #   dense_b: 0.5 -> 0.0 (still +1) -> -0.5 (flip at step 2); -3 never flips.
    expected_flips = {"dense_a": [3, 1, 2], "dense_b": [0, 1, 0]}
    expected_ff = [3 / 8, 2 / 8, 2 / 8]
    callback = callbacks.FlipRatioCallback(tmp_path, layer_names=["dense_a", "dense_b"])
    _, history = fit_constant(
        constant_gradient_model(),
        steps_per_epoch=3,
        epochs=1,
        optimizer=tf.keras.optimizers.SGD(1.0),
        callbacks_=[callback],
    )
    header, rows = read_csv(tmp_path / "analysis" / "ff_steps.csv")
    assert header[:4] == ["iteration", "epoch", "ff", "ff_mean"]
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    assert [int(r["epoch"]) for r in rows] == [1, 1, 1]
    for name, flips in expected_flips.items():
        assert [int(r[f"flips:{name}"]) for r in rows] == flips
    np.testing.assert_allclose([float(r["ff"]) for r in rows], expected_ff)
    # Weighted by parameter count: step 1 is 3/8, not the mean of 3/6 and 0/2.
    np.testing.assert_allclose(
        [float(r["ff_mean"]) for r in rows], np.cumsum(expected_ff) / [1, 2, 3]
    )
    assert history.history["ff_ratio"] == pytest.approx([np.mean(expected_ff)])
    assert callback.running_mean == pytest.approx(np.mean(expected_ff))
    layers = json.loads((tmp_path / "analysis" / "layers.json").read_text())["layers"]
    assert [(entry["name"], entry["size"]) for entry in layers] == [("dense_a", 6), ("dense_b", 2)]


def test_ff_equals_numpy_reference_and_larq_flip_ratio(tmp_path):
    # On an unscaled ste_sign kernel larq's flip_ratio counts the same sign changes, averaged
    # per epoch over the transitions between the epoch's forward passes: it leaves out the
    # last update of each epoch (seen only by the next epoch's first, uncounted, pass).
    steps, epochs = 8, 2
    with lq.context.metrics_scope(["flip_ratio"]):
        model = tf.keras.Sequential(
            [
                tf.keras.Input((6,)),
                lq.layers.QuantDense(
                    5,
                    kernel_quantizer="ste_sign",
                    kernel_initializer=tf.keras.initializers.RandomUniform(-0.02, 0.02),
                    name="binary_dense",
                ),
            ]
        )
    model.compile(tf.keras.optimizers.Adam(0.01), loss="mse", run_eagerly=True)
    kernel = model.layers[0].kernel.latent_variable
    snapshots = [kernel.numpy()]
    record = tf.keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: snapshots.append(kernel.numpy())
    )
    rng = np.random.default_rng(3)
    x = rng.normal(size=(steps * 4, 6)).astype(np.float32)
    y = rng.normal(size=(steps * 4, 5)).astype(np.float32)
    history = model.fit(
        x,
        y,
        batch_size=4,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[callbacks.FlipRatioCallback(tmp_path), record],
    )
    _, rows = read_csv(tmp_path / "analysis" / "ff_steps.csv")
    ff = np.array([float(r["ff"]) for r in rows])
    reference = [
        analysis.ff_ratio([before], [after])[0] for before, after in zip(snapshots, snapshots[1:])
    ]
    np.testing.assert_allclose(ff, reference, rtol=0, atol=0)
    assert ff.sum() > 0, "the test needs sign flips"
    larq_ratio = history.history["flip_ratio/ste_sign"]
    ours = [ff[e * steps : (e + 1) * steps - 1].mean() for e in range(epochs)]
    np.testing.assert_allclose(larq_ratio, ours, rtol=1e-6)


def test_c2i_hand_computed_against_step_and_run_start(tmp_path):
    run_start = tmp_path / "step1_signs.npz"
    # A "step 1" start with all weights positive: C2I against it is the share of w >= 0.
    callbacks.save_initial_signs(
        constant_gradient_model(np.abs(W_A), np.abs(W_B)), run_start, ["dense_a", "dense_b"]
    )
    callback = callbacks.C2IRatioCallback(
        tmp_path / "step2", run_start_signs=run_start, layer_names=["dense_a", "dense_b"]
    )
    _, history = fit_constant(
        constant_gradient_model(),
        steps_per_epoch=1,
        epochs=3,
        optimizer=tf.keras.optimizers.SGD(1.0),
        callbacks_=[callback],
    )
    records = read_jsonl(tmp_path / "step2" / "analysis" / "c2i.jsonl")
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    assert [r["iteration"] for r in records] == [0, 1, 2, 3]
    # Signs that differ from the step's start after 0..3 steps: 0; 3; 4 + 1; 6 + 1 (of 8).
    step = [r["step_start"]["global"] for r in records]
    np.testing.assert_allclose(step, [1.0, 5 / 8, 3 / 8, 1 / 8])
    np.testing.assert_allclose(
        [r["step_start"]["layers"]["dense_b"] for r in records], [1.0, 1.0, 0.5, 0.5]
    )
    # Positive weights per step: 4 + 1; 3 + 1; 4 + 0; 2 + 0 (the all-positive run start).
    run = [r["run_start"]["global"] for r in records]
    np.testing.assert_allclose(run, [5 / 8, 4 / 8, 4 / 8, 2 / 8])
    assert history.history["c2i"] == pytest.approx(step[1:])
    assert history.history["c2i_run"] == pytest.approx(run[1:])
    saved = analysis.load_signs(tmp_path / "step2" / "analysis" / "initial_signs.npz")
    np.testing.assert_array_equal(saved["dense_a"], W_A >= 0)
    np.testing.assert_array_equal(saved["dense_b"], W_B >= 0)


def test_c2i_rejects_run_start_signs_of_another_model(tmp_path):
    other = tf.keras.Sequential(
        [tf.keras.Input((2,)), tf.keras.layers.Dense(4, use_bias=False, name="dense_a")]
    )
    other_signs = callbacks.save_initial_signs(other, tmp_path / "other.npz", ["dense_a"])
    callback = callbacks.C2IRatioCallback(
        tmp_path / "run", run_start_signs=other_signs, layer_names=["dense_a", "dense_b"]
    )
    with pytest.raises(ValueError, match=r"other\.npz.*'dense_a' has shape \(2, 4\)"):
        fit_constant(
            constant_gradient_model(),
            steps_per_epoch=1,
            epochs=1,
            optimizer=tf.keras.optimizers.SGD(1.0),
            callbacks_=[callback],
        )


def test_saturation_hand_computed(tmp_path):
    inputs = tf.keras.Input((4,))
    thresholded = RSign(name="rsign")(inputs)
    # Two binary layers read the same sign input (like ReActNet's two 1x1 branches): once.
    branch_1 = lq.layers.QuantDense(2, input_quantizer="approx_sign", name="q1")(thresholded)
    branch_2 = lq.layers.QuantDense(2, input_quantizer="approx_sign", name="q2")(thresholded)
    real = tf.keras.layers.Dense(3, name="real")(inputs)  # not binarized: not measured
    model = tf.keras.Model(inputs, tf.keras.layers.Concatenate()([branch_1, branch_2, real]))
    probe = np.array([[0.5, 1.5, -2.0, 0.1], [1.0, -1.0, 3.0, -0.9]], np.float32)
    model.compile(tf.keras.optimizers.SGD(0.0), loss="mse", run_eagerly=True)
    model.fit(
        probe,
        np.zeros((2, 7), np.float32),
        epochs=1,
        verbose=0,
        callbacks=[callbacks.SaturationCallback(tmp_path, probe, batch_size=1)],
    )
    records = read_jsonl(tmp_path / "analysis" / "saturation.jsonl")
    # |a| > 1 for 1.5, -2.0 and 3.0 of the 8 inputs; exactly ±1 is not saturated.
    assert [r["epoch"] for r in records] == [0, 1]
    for record in records:
        assert record["layers"] == {"rsign": 3 / 8}
        assert record["global"] == 3 / 8


def test_weight_statistics_hand_computed_cam(tmp_path):
    callback = callbacks.WeightStatisticsCallback(
        tmp_path, layer_names=["dense_a", "dense_b"], histogram_range=(-2, 2), histogram_bins=4
    )
    fit_constant(
        constant_gradient_model(),
        steps_per_epoch=1,
        epochs=2,
        optimizer=tf.keras.optimizers.SGD(1.0),
        callbacks_=[callback],
    )
    analysis_dir = tmp_path / "analysis"
    records = read_jsonl(analysis_dir / "weights.jsonl")
    assert [r["epoch"] for r in records] == [0, 1, 2]
    # CAM of dense_a before training: column means of |W_A|.
    cam_0 = np.array([(0.5 + 2.5) / 2, (0.25 + 1.5) / 2, (0.2 + 1.1) / 2])
    first = records[0]["layers"]["dense_a"]
    assert first["sdam"] == pytest.approx(np.std(cam_0))
    assert first["cam_min"] == pytest.approx(0.65)
    assert first["cam_max"] == pytest.approx(1.5)
    assert first["beyond_one"] == pytest.approx(3 / 6)  # 2.5, -1.5, 1.1
    assert "update_sdam" not in first
    # Each epoch moves every weight of column j by C_A[j]: update CAM = |C_A|.
    for record in records[1:]:
        stats = record["layers"]["dense_a"]
        assert stats["update_cam_mean"] == pytest.approx(np.abs(C_A).mean())
        assert stats["update_sdam"] == pytest.approx(np.std(np.abs(C_A)))
    with np.load(analysis_dir / "weights" / "epoch_0001.npz") as archive:
        np.testing.assert_allclose(archive["update_cam/dense_a"], np.abs(C_A), rtol=1e-6)
        np.testing.assert_allclose(archive["update_cam/dense_b"], [0.5], rtol=1e-6)
        # After one step dense_a is [[-0.5, 0.75, -0.3], [1.5, -0.5, 0.6]]: bins
        # (<-2), [-2,-1), [-1,0), [0,1), [1,2], (>2).
        np.testing.assert_array_equal(archive["histogram/dense_a"], [0, 0, 3, 2, 1, 0])
        np.testing.assert_array_equal(archive["histogram_edges"], [-2, -1, 0, 1, 2])
        np.testing.assert_allclose(
            archive["cam/dense_a"], [(0.5 + 1.5) / 2, (0.75 + 0.5) / 2, (0.3 + 0.6) / 2]
        )


def test_gradient_statistics_dead_weights_norms_and_adam_moments(tmp_path):
    # Column 2 of dense_a gets no gradient at all; dense_b only 1e-9 (dead below 1e-8).
    c_a = np.array([1.0, -2.0, 0.0], np.float32)
    c_b = np.float32(1e-9)
    callback = callbacks.GradientStatisticsCallback(tmp_path, dead_threshold=1e-8, every_steps=1)
    steps, epochs = 3, 2
    fit_constant(
        constant_gradient_model(),
        steps_per_epoch=steps,
        epochs=epochs,
        optimizer=tf.keras.optimizers.Adam(0.01),
        callbacks_=[callback],
        tracking=True,
        loss=constant_gradient_loss(c_a, c_b),
    )
    _, rows = read_csv(tmp_path / "analysis" / "optimizer_steps.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(1, steps * epochs + 1))
    for row in rows:
        t = int(row["iteration"])
        # Keras' v is not bias-corrected: constant gradient g gives (1 - beta_2^t) g^2.
        decay = 1 - 0.999**t
        assert float(row["v_mean:dense_a"]) == pytest.approx(decay * np.mean(c_a**2), rel=1e-5)
        assert float(row["sqrt_v_mean:dense_a"]) == pytest.approx(
            np.sqrt(decay) * np.mean(np.abs(c_a)), rel=1e-5
        )
        assert float(row["grad_norm:dense_a"]) == pytest.approx(np.sqrt(2 * np.sum(c_a**2)))
        assert float(row["grad_norm:dense_b"]) == pytest.approx(np.sqrt(2) * 1e-9, rel=1e-5)
    records = read_jsonl(tmp_path / "analysis" / "gradients.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    assert [r["window_start_iteration"] for r in records] == [0, steps]
    for record in records:
        assert record["layers"]["dense_a"]["dead"] == pytest.approx(2 / 6)
        assert record["layers"]["dense_a"]["zero"] == pytest.approx(2 / 6)
        assert record["layers"]["dense_b"]["dead"] == 1.0
        assert record["layers"]["dense_b"]["zero"] == 0.0
        assert record["global"]["dead"] == pytest.approx(4 / 8)
    with np.load(tmp_path / "analysis" / "gradients" / "epoch_0002.npz") as archive:
        histogram = archive["log10_histogram/dense_a"]
        assert histogram[0] == 2 and histogram.sum() == 6  # two exact zeros, six weights


def test_gradient_statistics_without_contract_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="gradient_abs_max.*track_gradients"):
        fit_constant(
            constant_gradient_model(),
            steps_per_epoch=1,
            epochs=1,
            optimizer=tf.keras.optimizers.SGD(1.0),
            callbacks_=[callbacks.GradientStatisticsCallback(tmp_path)],
        )


def mini_reactnet(*, binary_weights, input_size=8, seed=0):
    """Stem and two real ReActNet blocks (one reduction block): the statistics layers of
    ReActNet-A (`binary_conv_layers`, RSign inputs) at a fraction of the cost."""
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((input_size, input_size, 1))
    x = lq.layers.QuantConv2D(4, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = tf.keras.layers.BatchNormalization(name="stem_bn")(x)
    x = reactnet_block(x, 4, stride=1, binary_weights=binary_weights, name="block1")
    x = reactnet_block(x, 8, stride=2, binary_weights=binary_weights, name="block2")
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(3, name="logits")(x)
    return tf.keras.Model(inputs, outputs, name="mini_reactnet")


def sparse_ce(labels, logits):
    return tf.reduce_mean(
        tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    )


def _resume_data():
    rng = np.random.default_rng(7)
    return rng.normal(size=(12, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, 12)


def _fit_mini(
    model, optimizer, log_dir, *, initial_epoch, epochs, probe, tensorboard=False, one_fit=True
):
    trainer = TrackingModel(model, sparse_ce)
    trainer.compile(optimizer=optimizer, run_eagerly=True)
    images, labels = _resume_data()
    callbacks_ = callbacks.paper_callbacks(
        log_dir=log_dir, probe_images=probe, optimizer_every_steps=2, tensorboard=tensorboard
    )
    # one_fit=False: one fit per epoch with the same callbacks, as the training loop does.
    for first in [initial_epoch] if one_fit else range(initial_epoch, epochs):
        trainer.fit(
            images,
            labels,
            batch_size=6,
            initial_epoch=first,
            epochs=epochs if one_fit else first + 1,
            shuffle=False,
            verbose=0,
            callbacks=callbacks_,
        )
    return trainer


@pytest.mark.slow
def test_resumed_run_reports_like_an_uninterrupted_run(tmp_path):
    images, _ = _resume_data()
    probe = images[:4]
    initial = mini_reactnet(binary_weights=True).get_weights()

    def fresh():
        model = mini_reactnet(binary_weights=True)
        model.set_weights(initial)
        return model

    whole = tmp_path / "whole"
    _fit_mini(
        fresh(), tf.keras.optimizers.Adam(0.05), whole, initial_epoch=0, epochs=2, probe=probe
    )

    # Interrupted: one epoch, a checkpoint, then a second epoch that writes analysis files
    # but dies before its checkpoint (simulated with another learning rate, so its stale
    # records differ), then a restart from the checkpoint with new callbacks.
    resumed = tmp_path / "resumed"
    model, optimizer = fresh(), tf.keras.optimizers.Adam(0.05)
    _fit_mini(model, optimizer, resumed, initial_epoch=0, epochs=1, probe=probe)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer).write(
        str(tmp_path / "ckpt" / "ckpt")
    )
    optimizer.learning_rate.assign(0.5)
    _fit_mini(model, optimizer, resumed, initial_epoch=1, epochs=2, probe=probe)
    stale = (resumed / "analysis" / "ff_steps.csv").read_text()
    model, optimizer = fresh(), tf.keras.optimizers.Adam(0.05)
    tf.train.Checkpoint(model=model, optimizer=optimizer).restore(checkpoint)
    _fit_mini(model, optimizer, resumed, initial_epoch=1, epochs=2, probe=probe)

    # And one fit per epoch with the same callback objects (the training loop's pattern).
    per_epoch = tmp_path / "per_epoch"
    model, optimizer = fresh(), tf.keras.optimizers.Adam(0.05)
    _fit_mini(model, optimizer, per_epoch, initial_epoch=0, epochs=2, probe=probe, one_fit=False)

    _, rows = read_csv(whole / "analysis" / "ff_steps.csv")
    assert len(rows) == 4 and float(rows[-1]["ff_mean"]) > 0
    assert stale != (whole / "analysis" / "ff_steps.csv").read_text()  # the test can fail
    files = [
        "ff_steps.csv",
        "c2i.jsonl",
        "saturation.jsonl",
        "weights.jsonl",
        "gradients.jsonl",
        "optimizer_steps.csv",
    ]
    for name in files:
        expected = (whole / "analysis" / name).read_text()
        assert (resumed / "analysis" / name).read_text() == expected, name
        assert (per_epoch / "analysis" / name).read_text() == expected, name
    with (
        np.load(whole / "analysis" / "weights" / "epoch_0002.npz") as a,
        np.load(resumed / "analysis" / "weights" / "epoch_0002.npz") as b,
    ):
        np.testing.assert_array_equal(
            a["update_cam/block2_conv3x3"], b["update_cam/block2_conv3x3"]
        )


def test_paper_callbacks_on_reactnet_blocks(tmp_path):
    """Every output of paper_callbacks on real ReActNet blocks, and TensorBoard events."""
    images, _ = _resume_data()
    model = mini_reactnet(binary_weights=True)
    optimizer = tf.keras.optimizers.Adam(0.05)
    _fit_mini(
        model, optimizer, tmp_path, initial_epoch=0, epochs=1, probe=images[:4], tensorboard=True
    )
    analysis_dir = tmp_path / "analysis"
    table = json.loads((analysis_dir / "layers.json").read_text())["layers"]
    assert [entry["name"] for entry in table] == [
        "block1_conv3x3",
        "block1_conv1x1",
        "block2_conv3x3",
        "block2_conv1x1_1",
        "block2_conv1x1_2",
    ]
    saturation = read_jsonl(analysis_dir / "saturation.jsonl")
    assert list(saturation[0]["layers"]) == [
        "block1_rsign1",
        "block1_rsign2",
        "block2_rsign1",
        "block2_rsign2",
    ]
    # Saturation is measured in inference mode on the fixed probe batch: an independent
    # forward pass to the same point gives the same share.
    probe_model = tf.keras.Model(model.inputs, model.get_layer("block2_rsign2").output)
    a = probe_model(images[:4], training=False).numpy()
    assert saturation[-1]["layers"]["block2_rsign2"] == pytest.approx(analysis.saturation(a))
    _, rows = read_csv(analysis_dir / "optimizer_steps.csv")
    assert [int(r["iteration"]) for r in rows] == [2]  # every 2 of the 2 steps
    kernel = analysis.latent_kernel(model.get_layer("block2_conv1x1_2"))
    v = analysis.second_moment(optimizer, kernel).numpy()
    assert float(rows[0]["v_mean:block2_conv1x1_2"]) > 0
    assert v.shape == tuple(kernel.shape)
    events = list((tmp_path / "tensorboard" / "analysis").glob("events.out.tfevents.*"))
    assert len(events) == 1
    tags, histograms = set(), {}
    for record in tf.compat.v1.train.summary_iterator(str(events[0])):
        for value in record.summary.value:
            tags.add(value.tag)
            if value.tag.startswith("latent/"):
                histograms[(value.tag, record.step)] = tf.make_ndarray(value.tensor)
    # TensorBoard histograms: (left, right, count) rows covering every latent weight.
    kernel = analysis.latent_kernel(model.get_layer("block2_conv1x1_2")).numpy()
    final = histograms[("latent/block2_conv1x1_2", 1)]
    assert final.shape == (202, 3)
    assert final[:, 2].sum() == kernel.size
    assert final[0, 0] <= kernel.min() and final[-1, 1] >= kernel.max()
    expected_tags = [
        "ff/global",
        "ff/running_mean",
        "c2i/step_start",
        "saturation/global",
        "sdam/block1_conv3x3",
        "update_sdam/block1_conv3x3",
        "latent/block2_conv1x1_2",
        "dead/global",
        "grad_norm/global",
        "adam_v/mean",
    ]
    assert not set(expected_tags) - tags
