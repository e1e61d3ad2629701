"""The paper study: its file, its verdicts, and a smoke run of the whole thing."""

import json
import subprocess
import sys

import pytest

from adambnn_larq.config import ConfigError
from adambnn_larq.study import StudyError, findings, load_study, run_study

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


def test_paper_study_has_equal_budgets_and_the_papers_runs():
    runs = load_study("paper_study", datasets=["fashion_mnist"])
    assert [run.name for run in runs] == RUN_NAMES
    by_name = {run.name: run.config for run in runs}
    # Equal budgets: one-step runs train as many epochs as both steps of a two-step run.
    assert by_name["adam-1step-wd0"].epochs == 2 * by_name["adam-2step-wd5e-06"].epochs
    budgets = {(c.train_limit, c.batch_size, c.seed, c.width_multiplier) for c in by_name.values()}
    assert len(budgets) == 1
    assert [by_name[n].weight_decay for n in RUN_NAMES[:4]] == [1e-5, 5e-6, 0.0, -1e-5]
    assert {by_name[n].weight_decay_step2 for n in RUN_NAMES[4:6]} == {0.0}
    assert by_name["sgd-2step-wd5e-06"].optimizer == "sgd"
    assert runs[0].paper == {"ff": 2.33e-3, "c2i": 0.4810, "top1": 61.73}


def test_study_errors_name_the_problem(tmp_path):
    with pytest.raises(StudyError, match="no dataset.*imagenet2012.*fashion_mnist"):
        load_study("paper_study", datasets=["imagenet2012"])
    with pytest.raises(StudyError, match="no run.*adam-3step.*it has adam-1step-wd1e-05, "):
        load_study("paper_study", runs=["adam-1step-wd0", "adam-3step"])
    with pytest.raises(ConfigError, match=r"runs\[0\] \(adam-1step-wd1e-05\).*unknown key"):
        load_study("paper_study", datasets=["fashion_mnist"], overrides=["epoch=3"])
    broken = tmp_path / "broken_study.py"
    broken.write_text(
        "def get_config(smoke=False):\n"
        "    return {'datasets': {'mnist': {'recipe': 'adambnn_mnist'}},\n"
        "            'runs': [{'name': 'a'}, {'name': 'a'}]}\n"
    )
    with pytest.raises(StudyError, match="repeated: a"):
        load_study(str(broken))


def test_findings_are_decided_by_the_measured_numbers():
    rows = {
        "adam-1step-wd-1e-05": {"ff": 1e-7, "c2i": 0.97, "top1": 0.2},
        "adam-1step-wd0": {
            "ff": 3e-4,
            "c2i": 0.60,
            "top1": 0.8,
            "beyond_one": 0.3,
            "saturation_drop": 0.10,
        },  # fmt: skip
        "adam-1step-wd5e-06": {"ff": 1e-3, "c2i": 0.55, "top1": 0.81},
        "adam-1step-wd1e-05": {"ff": 2e-3, "c2i": 0.50, "top1": 0.79},
        "adam-2step-wd5e-06": {"ff": 5e-4, "c2i": 0.50, "top1": 0.83},
        "sgd-1step-wd0": {"top1": 0.82, "beyond_one": 0.1, "saturation_drop": 0.02},
    }
    verdicts = [f["reproduced"] for f in findings(rows)]
    # Adam vs SGD one-step, two-step (no rows), FF monotone, C2I monotone, negative decay
    # worst, two-step C2I, two-step FF, two-step top-1, saturation drop, beyond ±1.
    assert verdicts == [False, None, True, True, True, False, True, True, True, True]
    rows["adam-1step-wd5e-06"]["ff"] = 5e-3  # no longer monotone in the decay
    assert [f["reproduced"] for f in findings(rows)][2] is False


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
    assert "of the paper's findings reproduce" in done.stdout
    for name in RUN_NAMES:
        summary_file = output / "fashion_mnist" / name / "summary.json"
        assert summary_file.is_file() == (name in SMOKE_RUNS), name
    for name in SMOKE_RUNS:
        summary = json.loads((output / "fashion_mnist" / name / "summary.json").read_text())
        assert summary["recipe"] == name
    report = output / "fashion_mnist" / "report"
    assert (report / "report.md").is_file()
    assert len(list(report.glob("*.png"))) >= 4
    study = (output / "study.md").read_text()
    table = [line for line in study.splitlines() if line.startswith("| ") and "-step" in line]
    rows = {
        line.split(" | ")[0][2:]: line for line in table if line.split(" | ")[0][2:] in RUN_NAMES
    }
    assert list(rows) == SMOKE_RUNS  # the study's order, whatever the order asked
    for name, line in rows.items():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        # FF, both C2I and top-1 are measured for every run.
        assert all(cell not in ("—", "n/a", "") for cell in cells[4:8]), (name, cells)
    # Adam vs SGD two-step and the three two-step vs one-step findings need only these runs.
    decided = study.count("| yes |") + study.count("| no |")
    assert (decided, study.count("| not testable |")) == (4, 6)
    result = json.loads((output / "study.json").read_text())
    assert set(result["datasets"][0]["rows"]) == set(SMOKE_RUNS)
