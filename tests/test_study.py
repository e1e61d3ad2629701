"""The paper study: its file, its verdicts, and a smoke run of the whole thing."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from adambnn_larq import analysis, stats
from adambnn_larq.config import ConfigError
from adambnn_larq.study import (
    TWO_STEP_C2I_CLAIM,
    StudyError,
    choose_learning_rates,
    compare,
    finding_verdict,
    findings,
    load_study,
    run_study,
    seed_statistics,
    sweep_learning_rates,
)
from adambnn_larq.study.running import _measured_row, _seed_matched, _train_all
from adambnn_larq.training import teacher_identity

RUN_NAMES = [
    "adam-1step-wd1e-05",
    "adam-1step-wd5e-06",
    "adam-1step-wd0",
    "adam-1step-wd-1e-05",
    "adam-2step-wd1e-05",
    "adam-2step-wd5e-06",
    "sgd-1step-wd0",
    "sgd-2step-wd5e-06",
]


def test_paper_study_has_equal_budgets_tuned_arms_and_seeds():
    study = load_study("paper_study", datasets=["fashion_mnist"])
    assert list(dict.fromkeys(run.name for run in study.finals)) == RUN_NAMES
    # At least three seeds, the same in every run (a paired test needs seed-matched runs).
    assert study.seeds == [0, 1, 2] and len(study.finals) == 3 * len(RUN_NAMES)
    assert all(
        [run.config.seed for run in study.finals if run.name == name] == [0, 1, 2]
        for name in RUN_NAMES
    )
    by_name = {run.name: run.config for run in study.finals if run.config.seed == 0}
    # Equal budgets: one-step runs train as many epochs as both steps of a two-step run.
    assert by_name["adam-1step-wd0"].epochs == 2 * by_name["adam-2step-wd5e-06"].epochs
    budgets = {
        (c.train_limit, c.batch_size, c.width_multiplier, c.lr_schedule, c.validation_size)
        for c in by_name.values()
    }
    assert budgets == {(8000, 128, 0.25, "step-linear", 5000)}
    # The paper's decays, scaled to the short run (the recipe's docstring says why).
    assert [by_name[n].weight_decay for n in RUN_NAMES[:4]] == [1e-3, 5e-4, 0.0, -1e-3]
    assert {by_name[n].weight_decay_step2 for n in RUN_NAMES[4:6]} == {0.0}
    assert by_name["sgd-2step-wd5e-06"].optimizer == "sgd"
    assert study.finals[0].paper == {"ff": 2.33e-3, "c2i": 0.4810, "top1": 61.73}
    # Each arm sweeps four rates a factor 2 apart (the same density for Adam and SGD) on
    # validation only, and may extend its grid twice a side.
    rates = {}
    for run in study.sweeps:
        rates.setdefault(run.arm, []).append(run.config.learning_rate)
        assert not run.config.evaluate_test and run.config.validation_size == 5000
    assert rates["sgd-1step"] == rates["sgd-2step"] == [2.5e-3, 5e-3, 1e-2, 2e-2]
    assert rates["adam-1step"] == rates["adam-2step"] == [1.25e-3, 2.5e-3, 5e-3, 1e-2]
    for grid in rates.values():
        assert np.allclose(np.array(grid[1:]) / grid[:-1], 2.0)
    assert study.max_extensions == 2
    # Each sweep point names the run whose settings it uses: the arm's sweep_run.
    assert {run.arm: run.base for run in study.sweeps} == {
        "adam-1step": "adam-1step-wd0",
        "adam-2step": "adam-2step-wd5e-06",
        "sgd-1step": "sgd-1step-wd0",
        "sgd-2step": "sgd-2step-wd5e-06",
    }
    sweep_decays = {run.name: run.config.weight_decay for run in study.sweeps}
    assert sweep_decays["sweep-adam-1step-lr0.005"] == 0.0  # adam-1step-wd0's decay
    assert all(run.config.evaluate_test for run in study.finals)


def test_learning_rates_are_chosen_on_validation_only():
    rows = [
        {"run": "a", "arm": "adam", "learning_rate": 1e-3, "validation_top1": 0.80},
        {"run": "b", "arm": "adam", "learning_rate": 2e-3, "validation_top1": 0.85},
        {"run": "c", "arm": "sgd", "learning_rate": 1e-2, "validation_top1": 0.70},
        {"run": "d", "arm": "sgd", "learning_rate": 1e-1, "validation_top1": 0.70},
    ]
    assert choose_learning_rates(rows) == {"adam": 2e-3, "sgd": 1e-2}  # ties: the smaller
    rows[1].update(validation_top1=None, diverged=True)  # a rate that diverged is skipped
    assert choose_learning_rates(rows) == {"adam": 1e-3, "sgd": 1e-2}
    rows[0].update(validation_top1=None, diverged=True)
    with pytest.raises(StudyError, match="every learning rate of arm.s. adam diverged"):
        choose_learning_rates(rows)
    rows[0]["diverged"] = False
    with pytest.raises(StudyError, match="sweep run a has no validation accuracy"):
        choose_learning_rates(rows)


class FakeSweep:
    """Trains a sweep run by writing the validation accuracy a made-up curve gives its rate:
    a parabola in log2(rate) peaking at ``peaks[arm]`` (``None``: the run diverges). Like
    the real runs, a finished run (its file exists) is not trained again."""

    def __init__(self, folder, peaks):
        self.folder, self.peaks, self.rounds = folder, peaks, []

    def train(self, runs):
        trained = []
        for run in runs:
            path = self.folder / run.directory / "fake.json"
            if path.exists():
                continue
            peak = self.peaks[run.arm]
            rate = run.config.learning_rate
            top1 = None if peak is None or rate > 0.03 else 0.9 - 0.01 * math.log2(rate / peak) ** 2
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps({"validation_top1": top1, "diverged": top1 is None}))
            trained.append(run.directory)
        self.rounds.append(trained)

    def measure(self, run):
        return json.loads((self.folder / run.directory / "fake.json").read_text())


def test_the_sweep_extends_an_edge_optimum_until_it_is_inside(tmp_path):
    study = load_study("paper_study", datasets=["fashion_mnist"],
                       runs=["adam-1step-wd0", "sgd-1step-wd0", "adam-2step-wd5e-06"])  # fmt: skip
    # Adam one-step peaks at 1.2e-2, above its grid's 1e-2: one extension (2e-2, worse).
    # SGD peaks at 1e-3, below its grid's 2.5e-3: 1.25e-3 (better, still the edge), then
    # 6.25e-4 (worse). Adam two-step peaks inside: no extension. Rates above 0.03 diverge.
    fake = FakeSweep(tmp_path, {"adam-1step": 1.2e-2, "sgd-1step": 1e-3, "adam-2step": 3e-3})
    runs, rows, rates, brackets = sweep_learning_rates(study.sweeps, fake.train, fake.measure)
    assert fake.rounds == [
        [run.directory for run in study.sweeps],
        ["sweep-adam-1step-lr0.02", "sweep-sgd-1step-lr0.00125"],
        ["sweep-sgd-1step-lr0.000625"],
    ]
    assert rates == {"adam-1step": 1e-2, "sgd-1step": 1.25e-3, "adam-2step": 2.5e-3}
    assert brackets["adam-1step"] == {
        "grid": [1.25e-3, 2.5e-3, 5e-3, 1e-2], "extended_up": [0.02], "extended_down": [],
        "interior": True, "note": "grid extended upward: 0.02",
    }  # fmt: skip
    assert brackets["sgd-1step"]["extended_down"] == [1.25e-3, 6.25e-4]
    assert brackets["sgd-1step"]["note"] == "grid extended downward: 0.00125, 0.000625"
    assert brackets["adam-2step"]["note"] == "inside the grid"
    assert all(bracket["interior"] for bracket in brackets.values())
    sgd = [row for row in rows if row["arm"] == "sgd-1step"]
    assert [row["learning_rate"] for row in sgd] == [6.25e-4, 1.25e-3, 2.5e-3, 5e-3, 1e-2, 2e-2]
    assert [row["extension"] for row in sgd] == [True, True] + [False] * 4
    assert [row["chosen"] for row in sgd] == [False, True] + [False] * 4
    # An extension is an ordinary sweep run: the arm's sweep settings at the new rate.
    extension = next(run for run in runs if run.directory == "sweep-adam-1step-lr0.02")
    assert extension.config.weight_decay == 0.0 and extension.base == "adam-1step-wd0"
    # Resumed: the same points are found and read back, nothing is trained again.
    again = FakeSweep(tmp_path, fake.peaks)
    assert sweep_learning_rates(study.sweeps, again.train, again.measure)[1:] == (
        rows, rates, brackets)  # fmt: skip
    assert again.rounds == [[], [], []]


def test_the_sweep_extension_stops_at_the_cap_and_says_so(tmp_path):
    study = load_study("paper_study", datasets=["fashion_mnist"],
                       runs=["sgd-1step-wd0", "adam-1step-wd0"])  # fmt: skip
    # SGD's best keeps falling below the grid; Adam's extension upward diverges (> 0.03 here
    # after 2e-2): a diverged rate is worse than any, so the best before it is inside.
    fake = FakeSweep(tmp_path, {"sgd-1step": 1e-5, "adam-1step": 1.0})
    runs, rows, rates, brackets = sweep_learning_rates(
        study.sweeps, fake.train, fake.measure, max_extensions=1
    )
    assert brackets["sgd-1step"]["extended_down"] == [1.25e-3] and rates["sgd-1step"] == 1.25e-3
    assert not brackets["sgd-1step"]["interior"]
    assert brackets["sgd-1step"]["note"] == (
        "grid extended downward: 0.00125; optimum at the edge after the cap: 0.00125 is the "
        "smallest rate tried (1 extension(s) a side at most)"
    )
    fake = FakeSweep(tmp_path / "adam", {"sgd-1step": 1e-5, "adam-1step": 1.0})
    runs, rows, rates, brackets = sweep_learning_rates(study.sweeps, fake.train, fake.measure)
    assert brackets["adam-1step"]["extended_up"] == [0.02, 0.04]
    assert rates["adam-1step"] == 0.02 and brackets["adam-1step"]["interior"]
    assert [r["diverged"] for r in rows if r["arm"] == "adam-1step"][-1] is True
    # With no extension allowed the grid is taken as given.
    fake = FakeSweep(tmp_path / "none", {"sgd-1step": 1e-5, "adam-1step": 1.0})
    assert sweep_learning_rates(study.sweeps, fake.train, fake.measure, 0)[2] == {
        "sgd-1step": 2.5e-3, "adam-1step": 1e-2}  # fmt: skip
    assert len(fake.rounds) == 1


def test_only_the_first_run_of_a_teacher_waits_for_it(tmp_path, monkeypatch):
    # _train_all looks _train_run up in its own module.
    from adambnn_larq.study import running

    calls = []

    def record(run, run_dir, number, total, verbose, in_process=False):
        calls.append((run.directory, in_process))

    monkeypatch.setattr(running, "_train_run", record)
    study = load_study("paper_study", datasets=["fashion_mnist"],
                       runs=["adam-1step-wd0", "sgd-1step-wd0"])  # fmt: skip
    teachers: set[tuple] = set()
    _train_all(study.sweeps[:3], tmp_path, 0, 2, teachers)
    # The first run of seed 0 trains alone, in this process (it caches the teacher).
    assert calls[0] == (study.sweeps[0].directory, True)
    assert sorted(calls[1:]) == sorted((run.directory, False) for run in study.sweeps[1:3])
    assert teachers == {teacher_identity(study.sweeps[0].config)}
    calls.clear()
    # An extension round of the same invocation: the teacher exists, nothing waits.
    _train_all(study.sweeps[3:5], tmp_path, 0, 2, teachers)
    assert sorted(calls) == sorted((run.directory, False) for run in study.sweeps[3:5])
    calls.clear()
    _train_all(study.finals, tmp_path, 0, 2, teachers)
    alone = [directory for directory, in_process in calls if in_process]
    # Seed 0's final runs hold no validation split out and evaluate the test split: another
    # teacher than the sweep's seed-0 one, which the first of them trains alone too (two at
    # once would train it into one folder at the same time: CI, 2026-12-05).
    assert alone == ["adam-1step-wd0-seed0", "adam-1step-wd0-seed1", "adam-1step-wd0-seed2"]


@pytest.mark.slow
def test_the_sweep_never_reads_the_test_split(tmp_path, monkeypatch):
    from adambnn_larq.data import idx

    study = load_study("paper_study", smoke=True, datasets=["fashion_mnist"],
                       runs=["adam-1step-wd0"])  # fmt: skip
    read = []
    original = idx.load_idx_split

    def recording(name, split, **kwargs):
        read.append(split)
        return original(name, split, **kwargs)

    monkeypatch.setattr(idx, "load_idx_split", recording)
    sweep = study.sweeps[:1]
    _train_all(sweep, tmp_path, verbose=0, jobs=1)
    row = _measured_row(tmp_path / sweep[0].directory, "sweep")
    assert row["validation_top1"] is not None and row["top1"] is None
    assert read and "test" not in read, read


def test_study_errors_name_the_problem(tmp_path):
    with pytest.raises(StudyError, match="no dataset.*imagenet2012.*fashion_mnist"):
        load_study("paper_study", datasets=["imagenet2012"])
    with pytest.raises(StudyError, match="no run.*adam-3step.*it has adam-1step-wd1e-05, "):
        load_study("paper_study", runs=["adam-1step-wd0", "adam-3step"])
    with pytest.raises(ConfigError, match=r"sweep-adam-1step-lr0.00125 on fashion_mnist.*epoch"):
        load_study("paper_study", datasets=["fashion_mnist"], overrides=["epoch=3"])
    broken = tmp_path / "broken_study.py"
    broken.write_text(
        "def get_config(smoke=False):\n"
        "    return {'datasets': {'mnist': {'recipe': 'adambnn_mnist'}}, 'arms': {},\n"
        "            'selection': {'validation_size': 10, 'seeds': [0, 1]},\n"
        "            'runs': [{'name': 'a'}, {'name': 'a'}]}\n"
    )
    with pytest.raises(StudyError, match="repeated: a"):
        load_study(str(broken))
    broken = tmp_path / "broken_arm_study.py"  # a new file: no stale bytecode of the first
    broken.write_text(
        "def get_config(smoke=False):\n"
        "    return {'datasets': {'mnist': {'recipe': 'adambnn_mnist'}}, 'arms': {},\n"
        "            'selection': {'validation_size': 10, 'seeds': [0, 1]},\n"
        "            'runs': [{'name': 'a', 'arm': 'adam'}]}\n"
    )
    with pytest.raises(StudyError, match=r"runs\[0\] \(a\): arm 'adam' not in 'arms'"):
        load_study(str(broken))


def _stats(*values, seeds=None):
    return seed_statistics(list(values), list(range(len(values))) if seeds is None else seeds)


def _flat(mean):
    """Three seeds, spread 0.01: a run whose per-seed values are mean - 0.01, mean, mean + 0.01."""
    return _stats(mean - 0.01, mean, mean + 0.01)


def _rows(**overrides):
    """Synthetic rows of every run a finding reads: each metric's three seeds move together
    (a shared seed effect), so a paired test sees the differences of the means exactly."""
    rows = {
        "adam-1step-wd-1e-05": dict(ff=1e-7, c2i_run=0.97, top1=0.20),
        "adam-1step-wd0": dict(ff=3e-4, c2i_run=0.60, top1=0.80, beyond_one=0.3,
                               saturation_drop=0.10),  # fmt: skip
        "adam-1step-wd5e-06": dict(ff=1e-3, c2i_run=0.55, top1=0.81),
        "adam-1step-wd1e-05": dict(ff=2e-3, c2i_run=0.50, top1=0.79),
        "adam-2step-wd5e-06": dict(ff=5e-4, c2i_run=0.50, c2i_step=0.92, top1=0.83),
        "adam-2step-wd1e-05": dict(c2i_run=0.45, c2i_step=0.90),
        "sgd-1step-wd0": dict(top1=0.82, beyond_one=0.1, saturation_drop=0.02),
    }
    for run, metrics in overrides.items():
        rows.setdefault(run, {}).update(metrics)
    return {run: {key: value if isinstance(value, dict) else _flat(value)
                  for key, value in metrics.items()}
            for run, metrics in rows.items()}  # fmt: skip


def test_findings_verdicts_in_words():
    results = findings(_rows())
    # Adam vs SGD one-step (0.80 < 0.82: against), two-step (no SGD row), FF monotone, C2I
    # monotone, negative decay worst, two-step C2I higher from the run's start (0.45 < 0.50,
    # 0.50 < 0.55: against) and from step 2's start (0.90, 0.92: for), two-step FF, two-step
    # top-1, saturation drop, beyond ±1.
    assert [f["status"] for f in results] == [
        "opposite", "not testable", "reproduced", "reproduced", "reproduced", "opposite",
        "reproduced", "reproduced", "reproduced", "reproduced", "reproduced",
    ]  # fmt: skip
    assert [f["reproduced"] for f in results[:3]] == [False, None, True]
    first = results[0]["comparisons"][0]
    assert first["a"] == "adam-1step-wd0 top1" and first["b"] == "sgd-1step-wd0 top1"
    assert first["test"] == "paired t-test" and first["n"] == 3
    assert first["effect"] == pytest.approx(-0.02)
    # Both arms move together over the seeds: every difference is -0.02 (to rounding).
    assert (first["ci_low"], first["ci_high"]) == pytest.approx((-0.02, -0.02))
    assert first["p"] < 1e-9
    # Mixed: negative decay at 0.805 is below decay 5e-6 (0.81) but above 0 (0.80) and 1e-5
    # (0.79), each by a sure margin.
    rows = _rows(**{"adam-1step-wd-1e-05": {"top1": 0.805}})
    result = findings(rows)[4]
    assert result["status"] == "mixed" and result["verdict"] == "mixed: 1 for, 2 against (of 3)"
    assert result["reproduced"] is None
    # Partly: negative decay (0.70) is surely below decay 0 (0.80, the same seed effect);
    # against the two noisy runs the differences (-0.01, +0.05, 0.00) are within the noise.
    noisy = {"top1": _stats(0.68, 0.75, 0.71)}
    rows = _rows(**{"adam-1step-wd-1e-05": {"top1": 0.70}, "adam-1step-wd5e-06": noisy,
                    "adam-1step-wd1e-05": noisy})  # fmt: skip
    result = findings(rows)[4]
    assert result["status"] == "partly" and result["verdict"] == "partly (1 of 3 comparisons)"
    assert [c["outcome"] for c in result["comparisons"]] == ["for", "neither", "neither"]
    # Partly the opposite: now surely above decay 0 (0.90), still within the noise of the others.
    noisy = {"top1": _stats(0.80, 0.97, 0.90)}
    rows = _rows(**{"adam-1step-wd-1e-05": {"top1": 0.90}, "adam-1step-wd5e-06": noisy,
                    "adam-1step-wd1e-05": noisy})  # fmt: skip
    result = findings(rows)[4]
    assert result["verdict"] == "partly the opposite (1 of 3 comparisons)"
    assert result["reproduced"] is False
    # Not distinguishable: the noise of the seeds covers the difference.
    rows = _rows(**{"adam-2step-wd5e-06": {"top1": _stats(0.80, 0.85, 0.79)}})
    result = findings(rows)[8]
    assert result["verdict"] == "not distinguishable" and result["reproduced"] is None
    assert result["measured"] == "top-1 two-step 0.8133 ± 0.0321 vs one-step 0.8100 ± 0.0100"


def test_findings_use_welch_when_the_seeds_differ():
    rows = _rows(**{"sgd-1step-wd0": {"top1": _stats(0.60, 0.62, 0.61, seeds=[5, 6, 7])}})
    comparison = findings(rows)[0]["comparisons"][0]
    assert comparison["test"] == "Welch's t-test"
    assert findings(_rows(), paired=False)[0]["comparisons"][0]["test"] == "Welch's t-test"


def test_a_test_needs_two_seeds(tmp_path):
    rows = _rows(**{"adam-1step-wd0": {"top1": _stats(0.8)}})
    with pytest.raises(StudyError, match="Adam beats SGD.*at least 2 values.*2 or more seeds"):
        findings(rows)
    one_seed = tmp_path / "one_seed_study.py"
    one_seed.write_text(
        "def get_config(smoke=False):\n"
        "    return {'datasets': {'mnist': {'recipe': 'adambnn_mnist'}}, 'arms': {},\n"
        "            'selection': {'validation_size': 10, 'seeds': [0]}, 'runs': []}\n"
    )
    with pytest.raises(StudyError, match=r"seeds is \[0\].*at least 2 different seeds"):
        load_study(str(one_seed))


def test_t_distribution_against_tables_and_closed_forms():
    # Student's t tables (two-sided 95 %).
    for df, table in [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)]:
        assert stats.t_quantile(0.975, df) == pytest.approx(table, abs=5e-4), df
    assert stats.t_quantile(0.025, 4) == pytest.approx(-2.776, abs=5e-4)
    # Closed forms: df 1 is Cauchy, F(t) = 1/2 + atan(t)/pi; df 2: 1/2 + t / (2 sqrt(2 + t^2)).
    for t in (-3.0, -0.5, 0.0, 0.7, 2.0, 25.0):
        assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)),
                                                  abs=1e-12)  # fmt: skip
    # I_x(1/2, 1/2) = (2 / pi) asin(sqrt(x)); I_x(1, b) = 1 - (1 - x)^b.
    assert stats.betainc(0.5, 0.5, 0.3) == pytest.approx(2 / math.pi * math.asin(math.sqrt(0.3)))
    assert stats.betainc(1.0, 3.5, 0.6) == pytest.approx(1 - 0.4**3.5)


def _t_density_integral(t: float, df: float) -> float:
    """P(|T| >= |t|) by integrating Student's density on a fine grid (an independent route)."""
    grid = np.linspace(0.0, abs(t), 200_001)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = np.exp(log_norm - (df + 1) / 2 * np.log1p(grid**2 / df))
    return 1.0 - float(np.sum((density[1:] + density[:-1]) * np.diff(grid)))  # trapezoids


def test_paired_and_welch_tests_by_hand():
    # Differences 1, 2, 3: mean 2, sd 1, se 1/sqrt(3), t = 2 sqrt(3) = 3.464 on 2 df.
    result = stats.paired_t([11.0, 22.0, 33.0], [10.0, 20.0, 30.0])
    assert (result.test, result.n, result.df) == ("paired t-test", 3, 2.0)
    assert result.effect == pytest.approx(2.0) and result.t == pytest.approx(3.4641, abs=1e-4)
    assert result.p == pytest.approx(0.0742, abs=1e-4)
    assert result.p == pytest.approx(_t_density_integral(2 * math.sqrt(3), 2), abs=1e-8)
    half = 4.303 * (1 / math.sqrt(3))  # t_{0.975, 2} * se
    assert result.ci_low == pytest.approx(2 - half, abs=1e-3)
    assert result.ci_high == pytest.approx(2 + half, abs=1e-3)
    # Welch: a = 1, 2, 3 (var 1), b = 4, 6, 8 (var 4): se = sqrt(1/3 + 4/3), t = -4 / se,
    # df = (5/3)^2 / ((1/3)^2 / 2 + (4/3)^2 / 2) = 50/17.
    result = stats.welch_t([1.0, 2.0, 3.0], [4.0, 6.0, 8.0])
    se = math.sqrt(5 / 3)
    assert result.test == "Welch's t-test" and result.df == pytest.approx(50 / 17)
    assert result.t == pytest.approx(-4 / se) and result.effect == pytest.approx(-4.0)
    assert result.p == pytest.approx(_t_density_integral(4 / se, 50 / 17), abs=1e-8)
    half = stats.t_quantile(0.975, 50 / 17) * se
    assert (result.ci_low, result.ci_high) == pytest.approx((-4 - half, -4 + half))
    assert 3.182 < half / se < 4.303  # between the table's t_{0.975} for 3 and 2 df
    # Holm: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> raised to 0.06 (monotone).
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def _null_rates(
    draws: int, comparisons: int, seeds: int = 3, paired: bool = True
) -> tuple[float, float]:
    """Identical arms: per draw, ``comparisons + 1`` runs share a seed effect (sd 1) plus their
    own noise (sd 0.5); the verdict of a finding comparing them in a chain. Returns the rates
    of "reproduced" and of any significant comparison."""
    rng = np.random.default_rng(2027)
    reproduced = significant = 0
    for _ in range(draws):
        seed_effect = rng.normal(0.0, 1.0, seeds)
        runs = [_stats(*(0.7 + seed_effect + rng.normal(0.0, 0.5, seeds)))
                for _ in range(comparisons + 1)]  # fmt: skip
        results = [compare(runs[i + 1], runs[i], paired=paired) for i in range(comparisons)]
        verdict = finding_verdict(results)
        reproduced += verdict["status"] == "reproduced"
        significant += verdict["status"] != "not distinguishable"
    return reproduced / draws, significant / draws


def test_identical_arms_give_at_most_five_percent_false_findings():
    # Welch's test on these seed-matched data ignores the pairing: still valid, but far below
    # 5 % (the shared seed effect inflates each arm's variance, not the difference): why the
    # study pairs.
    for comparisons, paired in ((1, True), (3, True), (1, False)):
        reproduced, significant = _null_rates(4000, comparisons, paired=paired)
        test = "paired" if paired else "Welch"
        print(f"null, {comparisons} comparison(s), 3 seeds, {test}: reproduced "
              f"{reproduced:.4f}, any significant verdict {significant:.4f}")  # fmt: skip
        assert significant <= 0.06 and reproduced <= significant
    # The test can fail: without Holm's correction, counting any of three comparisons at
    # p < 0.05 exceeds it.
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(2000):
        runs = [rng.normal(0.0, 1.0, 3) for _ in range(4)]
        hits += any(stats.paired_t(runs[i + 1], runs[i]).p < 0.05 for i in range(3))
    assert hits / 2000 > 0.10


def test_the_old_rule_fails_the_null_test():
    """The rule this replaces, |mean_a - mean_b| > sd_a + sd_b with two seeds an arm, on two
    identical arms: beyond the spread for ~22 % of comparisons (|Z0| > |Z1| + |Z2| for
    standard normals), four times the 5 % a test is allowed."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 100_000, 2))
    difference = a.mean(axis=1) - b.mean(axis=1)
    beyond = np.abs(difference) > a.std(axis=1, ddof=1) + b.std(axis=1, ddof=1)
    rate = float(beyond.mean())
    print(f"old rule, 2 seeds, identical arms: {rate:.4f} of comparisons 'beyond the spread'")
    assert 0.20 < rate < 0.24
    assert rate > 0.06  # it would fail test_identical_arms_give_at_most_five_percent_...


def test_a_large_true_effect_is_reproduced():
    rng = np.random.default_rng(1)
    seed_effect = rng.normal(0.0, 0.01, 3)
    adam = _stats(*(0.80 + seed_effect + rng.normal(0.0, 0.005, 3)))
    sgd = _stats(*(0.60 + seed_effect + rng.normal(0.0, 0.005, 3)))
    verdict = finding_verdict([compare(adam, sgd)])
    assert verdict["status"] == "reproduced" and verdict["verdict"] == "reproduced"
    assert verdict["p_holm"][0] < 0.01


def test_seed_matching_is_read_from_the_initial_signs(tmp_path):
    study = load_study("paper_study", smoke=True, datasets=["fashion_mnist"],
                       runs=["adam-1step-wd0", "sgd-1step-wd0"])  # fmt: skip
    rng = np.random.default_rng(0)
    by_seed = {seed: {"conv": rng.random((3, 3, 4, 4)) > 0.5} for seed in study.seeds}
    for run in study.finals:
        path = tmp_path / run.directory / "step1" / "analysis" / "initial_signs.npz"
        path.parent.mkdir(parents=True)
        np.savez(path, **by_seed[run.config.seed])
    matched, sentence = _seed_matched(tmp_path, study.finals)
    assert matched and sentence.startswith("Seed-matched") and "all 4 runs" in sentence
    flipped = dict(by_seed[1])
    flipped["conv"] = ~flipped["conv"]
    np.savez(tmp_path / "sgd-1step-wd0-seed1" / "step1" / "analysis" / "initial_signs.npz",
             **flipped)  # fmt: skip
    matched, sentence = _seed_matched(tmp_path, study.finals)
    assert not matched
    assert "sgd-1step-wd0-seed1 starts from other weights than adam-1step-wd0-seed1" in sentence


def test_c2i_from_both_starts_and_the_two_step_verdicts():
    # By hand: 4 latent weights, 1 changes sign -> C2I 0.75 (3 of 4 keep their initial sign).
    value, _ = analysis.c2i_ratio([np.array([0.3, -0.2, 0.1, -0.4])],
                                  [np.array([0.5, -0.1, -0.2, -0.3])])  # fmt: skip
    assert value == 0.75
    # Made-up runs of 20 weights, seeds 0-2. One-step: the first 10 + s weights flip by the end.
    # Two-step: the first 9 + s flip in step 1, then the last one in step 2: the same signs as
    # one-step from the run's start, but 19 of 20 kept from step 2's start.
    start = np.where(np.arange(20) % 2 == 0, 0.5, -0.5)

    def flipped(weights, indices):
        weights = weights.copy()
        weights[list(indices)] *= -1
        return weights

    rows = {}
    for name in ("adam-1step-wd1e-05", "adam-1step-wd5e-06", "adam-2step-wd1e-05",
                 "adam-2step-wd5e-06"):  # fmt: skip
        run_start, step_start = [], []
        for seed in range(3):
            if "1step" in name:
                end = flipped(start, range(10 + seed))
                middle = start
            else:
                middle = flipped(start, range(9 + seed))
                end = flipped(middle, [19])
            run_start.append(analysis.c2i_ratio([start], [end])[0])
            step_start.append(analysis.c2i_ratio([middle], [end])[0])
        rows[name] = {"c2i_run": _stats(*run_start), "c2i_step": _stats(*step_start)}
    assert rows["adam-1step-wd5e-06"]["c2i_run"]["values"] == pytest.approx([0.5, 0.45, 0.4])
    assert rows["adam-2step-wd5e-06"]["c2i_step"]["values"] == pytest.approx([0.95] * 3)
    by_claim = {f["claim"]: f for f in findings(rows)}
    run_start = by_claim[f"{TWO_STEP_C2I_CLAIM}; C2I of two-step from the run's start"]
    step_two = by_claim[f"{TWO_STEP_C2I_CLAIM}; C2I of two-step from the start of step 2"]
    assert run_start["verdict"] == "not distinguishable"
    assert [c["effect"] for c in run_start["comparisons"]] == pytest.approx([0.0, 0.0])
    assert step_two["verdict"] == "reproduced" and step_two["reproduced"] is True
    # Two-step above one-step is the paper's direction: a positive effect.
    assert [c["effect"] for c in step_two["comparisons"]] == pytest.approx([0.5, 0.5])
    assert "0.6315 vs 0.4810 at 1e-5" in TWO_STEP_C2I_CLAIM


def test_seed_statistics_is_mean_and_sample_sd():
    assert seed_statistics([0.8, 0.9], [3, 4]) == {
        "mean": pytest.approx(0.85), "sd": pytest.approx(0.0707107, rel=1e-5),
        "values": [0.8, 0.9], "seeds": [3, 4],
    }  # fmt: skip
    assert seed_statistics([0.5])["sd"] == 0.0
    assert seed_statistics([0.5, None]) is None


def test_a_dataset_without_data_is_reported_not_trained(tmp_path):
    result = run_study(
        "paper_study", tmp_path / "study", smoke=True, datasets=["cifar10"],
        overrides=[f"data_dir={tmp_path / 'no-data'}"],
    )  # fmt: skip
    assert "not available" in result["datasets"][0]["skipped"]
    assert "## cifar10" in (tmp_path / "study" / "study.md").read_text()
    assert not (tmp_path / "study" / "cifar10").exists()


# One-step and two-step, Adam and SGD: every code path of the study, at a third of its cost.
SMOKE_RUNS = ["adam-1step-wd5e-06", "adam-2step-wd5e-06", "sgd-2step-wd5e-06"]


@pytest.mark.slow
def test_smoke_study_end_to_end(tmp_path):
    output = tmp_path / "study"
    command = [sys.executable, "-m", "adambnn_larq", "study", "--smoke", "--jobs", "2",
               "--datasets", "fashion_mnist", "--runs", ",".join(reversed(SMOKE_RUNS)),
               "--output", str(output), "--verbose", "0"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "fashion_mnist: 3 runs; " in done.stdout
    assert "chosen learning rates: adam-1step " in done.stdout
    runs = output / "fashion_mnist" / "runs"
    # The sweep: two rates (smoke) for each of the three arms these runs need, seed 0 only.
    sweeps = sorted(p.name for p in runs.glob("sweep-*"))
    assert sweeps == sorted(
        f"sweep-{arm}-lr{rate}" for arm in ("adam-1step", "adam-2step", "sgd-2step")
        for rate in (("0.0025", "0.005") if arm.startswith("adam") else ("0.005", "0.01"))
    )  # fmt: skip
    for sweep in sweeps:
        summary = json.loads((runs / sweep / "summary.json").read_text())
        assert summary["final_test_accuracy"] is None  # the sweep never reads the test split
        assert summary["final_validation_accuracy"] is not None
    result = json.loads((output / "study.json").read_text())
    rates = result["datasets"][0]["learning_rates"]
    for name in RUN_NAMES:
        for seed in (0, 1):
            summary_file = runs / f"{name}-seed{seed}" / "summary.json"
            assert summary_file.is_file() == (name in SMOKE_RUNS), name
            if name in SMOKE_RUNS:
                config = json.loads((runs / f"{name}-seed{seed}" / "config.json").read_text())
                assert config["seed"] == seed
                arm = "-".join(name.split("-")[:2])  # adam-1step-wd5e-06 -> adam-1step
                assert config["learning_rate"] == rates[arm]
    report = output / "fashion_mnist" / "report"
    assert (report / "report.md").is_file()
    assert len(list(report.glob("*.png"))) >= 4
    study = (output / "study.md").read_text()
    assert "### Learning-rate sweep" in study and study.count("**yes**") == 3
    # The sweep table names each arm's sweep run, not the first final run of the arm.
    assert "| adam-1step | adam-1step-wd0 | 0.0025 |" in study
    assert "at most 0 times a side" in study  # the smoke run does not extend its grids
    # Two rates an arm: the best is always at an edge, and the report says so.
    assert all(not b["interior"] and "optimum at the edge after the cap" in b["note"]
               for b in result["datasets"][0]["brackets"].values())  # fmt: skip
    table = [line for line in study.splitlines() if line.startswith("| ") and "-step" in line]
    rows = {
        line.split(" | ")[0][2:]: line for line in table if line.split(" | ")[0][2:] in RUN_NAMES
    }
    assert list(rows) == SMOKE_RUNS  # the study's order, whatever the order asked
    for name, line in rows.items():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        # FF, both C2I and top-1 are measured for every run, as mean ± sd over two seeds.
        assert all(" ± " in cell for cell in cells[5:9]), (name, cells)
    # Only Adam vs SGD two-step and two-step vs one-step FF and top-1 need no more runs than
    # these (the two-step C2I findings compare at decay 1e-5 as well).
    assert study.count("| not testable |") == 8
    # The runs of one seed start from the same weights in every arm (one- and two-step, Adam
    # and SGD), so the comparisons are paired; each records its test, effect, interval, p.
    section = result["datasets"][0]
    assert section["seed_matched"] is True, section["pairing"]
    tested = [f for f in section["findings"] if f["status"] != "not testable"]
    assert len(tested) == 3 and all(f["correction"] == "Holm" for f in tested)
    for comparison in (c for f in tested for c in f["comparisons"]):
        assert comparison["test"] == "paired t-test" and comparison["n"] == 2
        assert comparison["ci_low"] <= comparison["effect"] <= comparison["ci_high"]
        assert 0.0 <= comparison["p"] <= comparison["p_holm"] <= 1.0
    assert "paired t-test, n 2" in study
    assert set(result["datasets"][0]["rows"]) == set(SMOKE_RUNS)
