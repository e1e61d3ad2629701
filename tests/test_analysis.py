"""The metric functions on hand-computed cases, the toy's outcome, and ``adambnn analyze``."""

import json
import re

import numpy as np
import pytest
import tensorflow as tf
from test_callbacks import TrackingModel, mini_reactnet, read_csv, read_jsonl, sparse_ce

from adambnn_larq import analysis, reports
from adambnn_larq.cli import main

# --------------------------------------------------------------------------------------
# Metrics on hand-computed cases
# --------------------------------------------------------------------------------------


def test_ff_ratio_counts_sign_changes_weighted_by_size():
    before = [np.array([[0.5, -0.2], [0.0, -1.0]]), np.array([3.0, -3.0])]
    after = [np.array([[-0.1, -0.3], [0.2, 1.0]]), np.array([2.0, -2.0])]
    # 0.5 -> -0.1 and -1 -> 1 flip; 0 -> 0.2 does not (sign(0) = +1); layer 2 keeps its signs.
    np.testing.assert_array_equal(analysis.flip_counts(before, after), [2, 0])
    overall, per_layer = analysis.ff_ratio(before, after)
    assert overall == pytest.approx(2 / 6)  # not the mean of 2/4 and 0/2
    np.testing.assert_allclose(per_layer, [0.5, 0.0])
    # Boolean signs work as well as weights.
    assert analysis.ff_ratio([b >= 0 for b in before], after)[0] == pytest.approx(2 / 6)


def test_ff_ratio_rejects_mismatched_layers():
    with pytest.raises(ValueError, match="layer 0 has shapes"):
        analysis.ff_ratio([np.zeros(3)], [np.zeros(4)])


def test_c2i_ratio_hand_computed():
    initial = [np.array([0.1, -0.1, 0.0, -2.0]), np.array([1.0, 1.0])]
    final = [np.array([0.3, 0.4, -0.5, -1.0]), np.array([1.0, -1.0])]
    # Same sign: 0.1/0.3 and -2/-1 in layer 1, 1/1 in layer 2: 3 of 6.
    overall, per_layer = analysis.c2i_ratio(initial, final)
    assert overall == pytest.approx(0.5)
    np.testing.assert_allclose(per_layer, [0.5, 0.5])


def test_saturation_hand_computed():
    a = np.array([[0.5, 1.0, -1.0], [1.01, -3.0, 0.0]])
    assert analysis.saturation(a) == pytest.approx(2 / 6)  # |a| > 1 strictly
    assert analysis.saturation(a, threshold=0.75) == pytest.approx(4 / 6)


def test_cam_and_sdam_hand_computed_in_pytorch_layout():
    # PyTorch (out=2, in=1, 2, 2): channel 0 has |w| mean 0.25, channel 1 mean 1.0.
    torch_kernel = np.array([[[[0.1, -0.2], [0.3, -0.4]]], [[[1.0, -1.0], [2.0, 0.0]]]])
    keras_kernel = torch_kernel.transpose(2, 3, 1, 0)  # (kh, kw, in, out)
    np.testing.assert_allclose(analysis.channel_abs_mean(keras_kernel), [0.25, 1.0])
    assert analysis.sdam(keras_kernel) == pytest.approx(0.375)  # population std of 0.25 and 1


def test_share_beyond_histogram_and_dead_weights():
    w = np.array([-2.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5])
    assert analysis.share_beyond(w) == pytest.approx(2 / 7)
    edges = analysis.histogram_edges((-1.0, 1.0), 2)
    np.testing.assert_array_equal(edges, [-1.0, 0.0, 1.0])
    # underflow, [-1, 0), [0, 1], overflow
    np.testing.assert_array_equal(analysis.weight_histogram(w, edges), [1, 2, 3, 1])
    g = np.array([0.0, 1e-9, 1e-8, 1e-3])
    assert analysis.dead_weight_share(g, 1e-8) == pytest.approx(0.5)
    assert analysis.zero_gradient_share(g) == pytest.approx(0.25)
    histogram = analysis.gradient_log10_histogram(g)
    assert histogram[0] == 1 and histogram.sum() == 4
    bin_of = np.searchsorted(analysis.GRADIENT_LOG10_EDGES, [-9, -8, -3], side="right") + 1
    assert all(histogram[b] == 1 for b in bin_of)


def test_load_signs_refuses_non_boolean_and_missing_files(tmp_path):
    np.savez(tmp_path / "floats.npz", layer=np.zeros(3))
    with pytest.raises(ValueError, match=r"floats\.npz.*not boolean"):
        analysis.load_signs(tmp_path / "floats.npz")
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        analysis.load_signs(tmp_path / "nothing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.npz"):
        analysis.load_signs(tmp_path / "junk.npz")


# --------------------------------------------------------------------------------------
# The toy
# --------------------------------------------------------------------------------------


def test_toy_gradient_is_the_documented_surrogate():
    # The autodiff gradient through larq's ste_sign equals the formula written by hand.
    for x, y in [(-0.5, -0.5), (0.3, -0.7), (1.5, -0.5), (-0.2, 1.2), (0.4, 0.6)]:
        position = tf.Variable([x, y], dtype=tf.float32)
        with tf.GradientTape() as tape:
            loss = tf.square(
                analysis._toy_nodes(position[0], position[1], analysis.TOY_GAIN)
                - (1 + analysis.TOY_GAIN)
            )
        autodiff = tape.gradient(loss, position).numpy()
        np.testing.assert_allclose(autodiff, analysis.toy_gradient(x, y), rtol=1e-6, atol=1e-12)
        assert loss.numpy() == pytest.approx(analysis.toy_loss(x, y), rel=1e-5)


def test_toy_adam_reaches_the_minimum_and_sgd_stalls():
    runs = analysis.toy_experiment(steps=300, learning_rate=0.01)
    adam, sgd = runs["adam"], runs["sgd"]
    np.testing.assert_array_equal(adam.positions[0], sgd.positions[0])
    assert adam.final_loss == 0.0  # the minimum of the loss
    assert adam.first_step_at_minimum is not None
    # SGD pushed x into its flat region (x > 1: no gradient) and left y, whose gradient is
    # 100 times smaller, on the wrong side: the loss stays at 4 g^2.
    assert sgd.final_loss == pytest.approx(4 * analysis.TOY_GAIN**2)
    assert sgd.positions[-1][0] > 1 and sgd.positions[-1][1] < -0.4
    assert sgd.first_step_at_minimum is None


def test_toy_command_writes_plot_and_results(tmp_path, capsys):
    assert main(["toy", "--output", str(tmp_path), "--steps", "120"]) == 0
    result = json.loads((tmp_path / "toy.json").read_text())
    assert result["optimizers"]["adam"]["final_loss"] == 0.0
    assert result["optimizers"]["sgd"]["final_loss"] > 0.0
    assert (tmp_path / "toy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "stalled" in capsys.readouterr().out


# --------------------------------------------------------------------------------------
# adambnn analyze on real runs
# --------------------------------------------------------------------------------------


def _train_step(model, optimizer, step_dir, epochs, run_start_signs=None):
    from adambnn_larq import callbacks

    rng = np.random.default_rng(11)
    images = rng.normal(size=(8, 8, 8, 1)).astype(np.float32)
    labels = rng.integers(0, 3, 8)
    trainer = TrackingModel(model, sparse_ce)
    trainer.compile(optimizer=optimizer, run_eagerly=True)
    trainer.fit(
        images,
        labels,
        batch_size=4,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=callbacks.paper_callbacks(
            log_dir=step_dir,
            probe_images=images[:4],
            run_start_signs=run_start_signs,
            optimizer_every_steps=1,
            tensorboard=False,
        ),
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A two-step Adam run and a one-step SGD run, each trained for real with the callbacks."""
    root = tmp_path_factory.mktemp("runs")
    two = root / "two_step"
    step1 = mini_reactnet(binary_weights=False, seed=1)
    _train_step(step1, tf.keras.optimizers.Adam(0.05), two / "step1", epochs=2)
    step2 = mini_reactnet(binary_weights=True, seed=1)
    step2.set_weights(step1.get_weights())
    run_start = two / "step1" / "analysis" / "initial_signs.npz"
    _train_step(
        step2, tf.keras.optimizers.Adam(0.05), two / "step2", epochs=2, run_start_signs=run_start
    )
    summary = {
        "recipe": "adam-two-step",
        "schedule": "two-step",
        "optimizer": "adam",
        "weight_decay": 5e-6,
        "weight_decay_mode": "coupled",
        "steps": [
            {
                "name": "step1",
                "dir": "step1",
                "binary_weights": False,
                "epochs": 2,
                "weight_decay": 5e-6,
                "test_accuracy": 0.5,
            },
            {
                "name": "step2",
                "dir": "step2",
                "binary_weights": True,
                "epochs": 2,
                "weight_decay": 0.0,
                "test_accuracy": 0.625,
            },
        ],
        "final_test_accuracy": 0.625,
    }
    (two / "summary.json").write_text(json.dumps(summary))

    one = root / "one_step"
    model = mini_reactnet(binary_weights=True, seed=2)
    _train_step(model, tf.keras.optimizers.SGD(0.05, momentum=0.9), one / "step1", epochs=2)
    summary = {
        "recipe": "sgd-one-step",
        "schedule": "one-step",
        "optimizer": "sgd",
        "weight_decay": 1e-5,
        "steps": [{"name": "step1", "dir": "step1", "binary_weights": True, "epochs": 2}],
        "final_test_accuracy": 0.375,
    }
    (one / "summary.json").write_text(json.dumps(summary))
    return {"two": two, "one": one, "step2_model": step2}


def _table_rows(report: str, header_start: str) -> list[list[str]]:
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_analyze_writes_plots_and_table1(runs, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["analyze", str(runs["two"]), str(runs["one"]), "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    for name in reports.PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    report = (out / "report.md").read_text()
    rows = {row[0]: row for row in _table_rows(report, "| run | schedule")}
    assert set(rows) == {"adam-two-step", "sgd-one-step"}

    # FF: mean over every iteration of both steps, from the per-step CSVs.
    ff = []
    for step in ("step1", "step2"):
        _, csv_rows = read_csv(runs["two"] / step / "analysis" / "ff_steps.csv")
        ff += [float(r["ff"]) for r in csv_rows]
    two = rows["adam-two-step"]
    assert len(ff) == 8
    assert two[1:4] == ["two-step", "adam", "step1: 5e-06, step2: 0 (coupled)"]
    assert float(two[4]) == pytest.approx(np.mean(ff), rel=1e-3)
    # C2I against the run start, recomputed from the trained model and step 1's signs.
    model = runs["step2_model"]
    layers = analysis.analysis_layers(model)
    signs = analysis.load_signs(runs["two"] / "step1" / "analysis" / "initial_signs.npz")
    expected_run, _ = analysis.c2i_ratio(
        analysis.match_signs(signs, layers, "step1"),
        [analysis.latent_kernel(layer).numpy() for layer in layers],
    )
    assert float(two[5]) == pytest.approx(expected_run, abs=1e-4)
    last_step = read_jsonl(runs["two"] / "step2" / "analysis" / "c2i.jsonl")[-1]
    assert float(two[6]) == pytest.approx(last_step["step_start"]["global"], abs=1e-4)
    assert two[7] == "62.50"

    one = rows["sgd-one-step"]
    assert one[1:4] == ["one-step", "sgd", "1e-05"]
    assert one[5] == one[6]  # one step: the run's start is the step's start
    assert one[7] == "37.50"

    steps = _table_rows(report, "| run | step")
    assert [(row[0], row[1], row[2], row[3]) for row in steps] == [
        ("adam-two-step", "step1", "2", "4"),
        ("adam-two-step", "step2", "2", "4"),
        ("sgd-one-step", "step1", "2", "4"),
    ]
    for name in reports.PLOTS:
        assert f"![{name}]({name})" in report


@pytest.mark.parametrize(
    "summary, message",
    [
        (None, r"summary\.json not found"),
        ("{not json", r"summary\.json: not valid JSON"),
        ({"steps": []}, r"field 'steps' must be a non-empty list"),
        ({"steps": [{"name": "step1"}]}, r"steps\[0\]: field 'dir'"),
        ({"steps": [{"dir": "../elsewhere"}]}, r"points outside the run directory"),
        ({"steps": [{"name": "s", "dir": "s"}]}, r"s/analysis not found.*'s'"),
    ],
)
def test_analyze_reports_bad_run_directories(tmp_path, capsys, summary, message):
    run = tmp_path / "run"
    (run / "s").mkdir(parents=True)
    if summary is not None:
        text = summary if isinstance(summary, str) else json.dumps(summary)
        (run / "summary.json").write_text(text)
    out = tmp_path / "out"
    assert main(["analyze", str(run), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert not out.exists()  # nothing written for bad input


def test_analyze_reports_a_malformed_analysis_file(runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs["one"], run)
    (run / "step1" / "analysis" / "c2i.jsonl").write_text('{"epoch": 0}\n{broken\n')
    assert main(["analyze", str(run), "--output", str(tmp_path / "out")]) == 2
    assert re.search(r"c2i\.jsonl, line 2: not valid JSON", capsys.readouterr().err)


def test_analyze_of_several_runs_needs_output(runs, capsys):
    assert main(["analyze", str(runs["one"]), str(runs["two"])]) == 2
    assert "--output" in capsys.readouterr().err
