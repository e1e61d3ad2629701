"""``study.md``: how the study was run, and per dataset its sweep, its final runs beside the
paper's numbers and the verdict on each of the paper's findings."""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence
from typing import Any

from adambnn_larq.hostinfo import cpu_model_name
from adambnn_larq.study.plan import Study, StudyRun
from adambnn_larq.study.verdicts import ALPHA, C2I_START_NOTE


def _effect(comparison: dict[str, Any]) -> str:
    fmt = comparison["format"]
    return (f"{comparison['a']} − {comparison['b']}: {comparison['effect']:+{fmt}} "
            f"[{comparison['ci_low']:+{fmt}}, {comparison['ci_high']:+{fmt}}], "
            f"p {comparison['p']:.3g} ({comparison['p_holm']:.3g}), "
            f"{comparison['test']}, n {comparison['n']}")  # fmt: skip


def _fmt(stats: dict | None, spec: str, scale: float = 1.0) -> str:
    if stats is None:
        return "—"
    mean, spread = scale * stats["mean"], scale * stats["sd"]
    return f"{mean:{spec}} ± {spread:{spec}}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def _plain(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _table(names: Sequence[str], finals: Sequence[StudyRun], rows: dict) -> list[str]:
    lines = [
        "| run | schedule | optimizer | lr (chosen) | step-1 decay | FF ratio | C2I (run start) | "
        "C2I (last step start) | top-1 % (test) | paper FF | paper C2I | paper top-1 % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        run = next(r for r in finals if r.name == name)
        row, paper = rows[name], run.paper
        lines.append(
            f"| {name} | {run.config.schedule} | {run.config.optimizer} | "
            f"{run.config.learning_rate:g} | {run.config.weight_decay:g} | "
            f"{_fmt(row.get('ff'), '.2e')} | {_fmt(row.get('c2i_run'), '.4f')} | "
            f"{_fmt(row.get('c2i_step'), '.4f')} | {_fmt(row.get('top1'), '.2f', 100)} | "
            f"{_plain(paper.get('ff'), '.2e')} | {_plain(paper.get('c2i'), '.4f')} | "
            f"{_plain(paper.get('top1'), '.2f')} |"
        )
    return lines


def _study_markdown(title: str, command: str, study: Study, sections: list, seconds: float) -> str:
    lines = _method_lines(title, command, study, seconds)
    for section in sections:
        lines += _dataset_lines(study, section)
    return "\n".join(lines) + "\n"


def _method_lines(title: str, command: str, study: Study, seconds: float) -> list[str]:
    """The head of ``study.md``: the command, the machine, and how the study was run."""
    return [
        f"# {title}",
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.date.today().isoformat()}; machine: {platform.machine()} "
        f"({cpu_model_name()}), {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- Wall time of this invocation: {seconds / 60:.1f} min (runs finished by an earlier "
        "invocation are read back, not retrained)",
        "",
        "How it was run: each arm (optimizer × schedule) got its own learning rate, the best "
        f"final-model top-1 on a validation split (the last {study.validation_size} training "
        "images, never trained on) among the arm's sweep; the sweep runs never read the test "
        f"split. The final runs then trained with seeds {study.seeds}, still choosing their "
        "checkpoints on the validation split, and report the test split. Numbers are mean ± "
        "sample standard deviation over the seeds. Each comparison of a finding is a two-sided "
        "paired t-test on the per-seed differences (the runs of one seed share their "
        "initialization, data order and teacher) or, where the runs are not seed-matched, "
        f"Welch's t-test; the effect is the difference of the means in the paper's direction "
        f"(> 0: as the paper says) with its {100 * (1 - ALPHA):.0f} % confidence interval. "
        "The p-values of a finding's comparisons are Holm-corrected, and a comparison counts "
        f"when its corrected p < {ALPHA:g}: a finding is reproduced when all count in the "
        "paper's direction, the opposite when all count against it, partly (k of n) when "
        "some count for it and none against, mixed when some count each way.",
        "",
        "FF: mean over every training iteration (all steps). C2I: the share of latent weights "
        "whose sign at the end equals their sign at the start of the run and of the last step "
        f"(higher: more dependence on that start). {C2I_START_NOTE} Paper: binary ResNet-18 on "
        "ImageNet (Table 1 and the four-run comparison), for the direction of each effect.",
    ]


def _dataset_lines(study: Study, section: dict) -> list[str]:
    """One dataset's part of ``study.md``: its budget, sweep, final runs and findings."""
    dataset = section["dataset"]
    lines = ["", f"## {dataset}", ""]
    if section.get("skipped"):
        return lines + [f"Not run: {section['skipped']}"]
    finals = [run for run in study.finals if run.dataset == dataset]
    config = finals[0].config
    lines += [
        f"Budget per run: {config.train_limit or 'all'} training images, batch "
        f"{config.batch_size}, {config.model} width {config.width_multiplier}, "
        f"lr_schedule {config.lr_schedule} (warm-up {config.warmup_epochs:g} epochs), "
        f"distillation from the small teacher: {config.distillation}; test top-1 on "
        f"{config.eval_limit or 'all'} test images. Training time of all runs: "
        f"{section['training_minutes']:.1f} min.",
        "",
    ]
    lines += _sweep_lines(study, section)
    names = list(dict.fromkeys(run.name for run in finals))
    lines += ["", "### Final runs", ""] + _table(names, finals, section["rows"])
    if section["below_chance_margin"]:
        lines += ["", "Runs that did not clear chance by a wide margin (mean test top-1 < "
                  f"50 %): {', '.join(section['below_chance_margin'])}."]  # fmt: skip
    lines += _findings_lines(section)
    lines += [
        "",
        f"Plots and the per-step table (saturation, SDAM, weights beyond ±1, dead weights) "
        f"of the seed-{study.seeds[0]} final runs: "
        f"[{dataset}/report/report.md]({dataset}/report/report.md).",
    ]
    return lines


def _sweep_lines(study: Study, section: dict) -> list[str]:
    """The learning-rate sweep of a dataset: every rate tried, and how each arm's grid grew."""
    lines = [
        f"### Learning-rate sweep (validation split, seed {study.seeds[0]})",
        "",
        "| arm | sweep run | learning rate | validation top-1 % | chosen |",
        "|---|---|---|---|---|",
    ]
    for sweep in section["sweep"]:
        lines.append(
            f"| {sweep['arm']} | {sweep['base']} | {sweep['learning_rate']:g}"
            f"{' (extension)' if sweep.get('extension') else ''} | "
            f"{'diverged' if sweep['diverged'] else _percent(sweep['validation_top1'])} | "
            f"{'**yes**' if sweep['chosen'] else ''} |"
        )
    lines += ["", "Where an arm's best rate was the largest or smallest of its grid, the sweep "
              "added a point beyond it (spaced like the grid) and trained it, at most "
              f"{section['max_extensions']} times a side:", ""]  # fmt: skip
    for arm, bracket in section["brackets"].items():
        where = "inside the rates tried" if bracket["interior"] else "at an edge"
        lines.append(f"- {arm}: {bracket['note']}; chosen "
                     f"{section['learning_rates'][arm]:g}, {where}.")  # fmt: skip
    return lines


def _findings_lines(section: dict) -> list[str]:
    """The verdict on each of the paper's findings for a dataset, with its comparisons."""
    lines = ["", "### The paper's findings here", "", section["pairing"], "",
             "| finding | verdict | measured (mean ± sd) | effect in the paper's direction "
             f"[{100 * (1 - ALPHA):.0f} % CI], p (Holm), test, n |",
             "|---|---|---|---|"]  # fmt: skip
    for finding in section["findings"]:
        effects = "; ".join(_effect(c) for c in finding["comparisons"]) or "—"
        lines.append(f"| {finding['claim']} | {finding['verdict']} | {finding['measured']} | "
                     f"{effects} |")  # fmt: skip
    return lines
