"""The paper study: its file, its verdicts, and a smoke run of the whole thing."""

import json
import subprocess
import sys

import pytest

from adambnn_larq.config import ConfigError
from adambnn_larq.study import (
    StudyError,
    _measured_row,
    _train_all,
    choose_learning_rates,
    findings,
    load_study,
    run_study,
    seed_statistics,
)

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
    assert study.seeds == [0, 1] and len(study.finals) == 2 * len(RUN_NAMES)
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
    # Each arm sweeps at least three rates (SGD spanning 1e-3 ... 1e-1) on validation only.
    rates = {}
    for run in study.sweeps:
        rates.setdefault(run.arm, []).append(run.config.learning_rate)
        assert not run.config.evaluate_test and run.config.validation_size == 5000
    assert rates["sgd-1step"] == rates["sgd-2step"] == [1e-3, 1e-2, 1e-1]
    assert rates["adam-1step"] == rates["adam-2step"] == [6.25e-4, 1.25e-3, 2.5e-3]
    # Each sweep point names the run whose settings it uses: the arm's sweep_run.
    assert {run.arm: run.base for run in study.sweeps} == {
        "adam-1step": "adam-1step-wd0",
        "adam-2step": "adam-2step-wd5e-06",
        "sgd-1step": "sgd-1step-wd0",
        "sgd-2step": "sgd-2step-wd5e-06",
    }
    sweep_decays = {run.name: run.config.weight_decay for run in study.sweeps}
    assert sweep_decays["sweep-adam-1step-lr0.0025"] == 0.0  # adam-1step-wd0's decay
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
    with pytest.raises(ConfigError, match=r"sweep-adam-1step-lr0.000625 on fashion_mnist.*epoch"):
        load_study("paper_study", datasets=["fashion_mnist"], overrides=["epoch=3"])
    broken = tmp_path / "broken_study.py"
    broken.write_text(
        "def get_config(smoke=False):\n"
        "    return {'datasets': {'mnist': {'recipe': 'adambnn_mnist'}}, 'arms': {},\n"
        "            'selection': {'validation_size': 10, 'seeds': [0]},\n"
        "            'runs': [{'name': 'a'}, {'name': 'a'}]}\n"
    )
    with pytest.raises(StudyError, match="repeated: a"):
        load_study(str(broken))
    broken = tmp_path / "broken_arm_study.py"  # a new file: no stale bytecode of the first
    broken.write_text(
        "def get_config(smoke=False):\n"
        "    return {'datasets': {'mnist': {'recipe': 'adambnn_mnist'}}, 'arms': {},\n"
        "            'selection': {'validation_size': 10, 'seeds': [0]},\n"
        "            'runs': [{'name': 'a', 'arm': 'adam'}]}\n"
    )
    with pytest.raises(StudyError, match=r"runs\[0\] \(a\): arm 'adam' not in 'arms'"):
        load_study(str(broken))


def _stats(mean, sd=0.0):
    return {"mean": mean, "sd": sd, "values": [mean - sd, mean + sd]}


def test_findings_count_only_differences_beyond_the_seed_spread():
    def row(**metrics):
        return {key: _stats(*value) if isinstance(value, tuple) else _stats(value)
                for key, value in metrics.items()}  # fmt: skip

    rows = {
        "adam-1step-wd-1e-05": row(ff=1e-7, c2i_run=0.97, top1=0.2),
        "adam-1step-wd0": row(ff=3e-4, c2i_run=0.60, top1=0.8, beyond_one=0.3,
                              saturation_drop=0.10),  # fmt: skip
        "adam-1step-wd5e-06": row(ff=1e-3, c2i_run=0.55, top1=0.81),
        "adam-1step-wd1e-05": row(ff=2e-3, c2i_run=0.50, top1=0.79),
        "adam-2step-wd5e-06": row(ff=5e-4, c2i_run=0.50, top1=(0.83, 0.01)),
        "sgd-1step-wd0": row(top1=0.82, beyond_one=0.1, saturation_drop=0.02),
    }
    verdicts = [f["reproduced"] for f in findings(rows)]
    # Adam vs SGD one-step, two-step (no rows), FF monotone, C2I monotone, negative decay
    # worst, two-step C2I, two-step FF, two-step top-1, saturation drop, beyond ±1.
    assert verdicts == [False, None, True, True, True, False, True, True, True, True]
    assert findings(rows)[1]["verdict"] == "not testable"
    # Two-step 0.83 ± 0.01 vs one-step 0.81 ± 0.005: beyond the spread; with 0.015 it is not.
    rows["adam-1step-wd5e-06"]["top1"] = _stats(0.81, 0.005)
    assert findings(rows)[7]["reproduced"] is True
    rows["adam-1step-wd5e-06"]["top1"] = _stats(0.81, 0.015)
    result = findings(rows)[7]
    assert result["reproduced"] is None and "within the seed spread" in result["verdict"]
    assert result["measured"] == "top-1 two-step 0.8300 ± 0.0100 vs one-step 0.8100 ± 0.0150"
    rows["adam-1step-wd5e-06"]["ff"] = _stats(5e-3)  # no longer monotone in the decay
    assert findings(rows)[2]["reproduced"] is False


def test_seed_statistics_is_mean_and_sample_sd():
    assert seed_statistics([0.8, 0.9]) == {
        "mean": pytest.approx(0.85), "sd": pytest.approx(0.0707107, rel=1e-5),
        "values": [0.8, 0.9],
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
        for rate in (("0.00125", "0.0025") if arm.startswith("adam") else ("0.01", "0.1"))
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
    assert "| adam-1step | adam-1step-wd0 | 0.00125 |" in study
    table = [line for line in study.splitlines() if line.startswith("| ") and "-step" in line]
    rows = {
        line.split(" | ")[0][2:]: line for line in table if line.split(" | ")[0][2:] in RUN_NAMES
    }
    assert list(rows) == SMOKE_RUNS  # the study's order, whatever the order asked
    for name, line in rows.items():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        # FF, both C2I and top-1 are measured for every run, as mean ± sd over two seeds.
        assert all(" ± " in cell for cell in cells[5:9]), (name, cells)
    # Adam vs SGD two-step and the three two-step vs one-step findings need only these runs.
    assert study.count("| not testable |") == 6
    assert set(result["datasets"][0]["rows"]) == set(SMOKE_RUNS)
