"""The paper study: many training runs of one budget and their Table-1 comparison.

A study file (``studies/paper_study.py``) defines ``get_config(smoke) -> dict`` with

- ``datasets``: dataset name -> ``{"recipe": base recipe, "overrides": {...}}``, the budget
  every run of that dataset shares;
- ``runs``: a list of ``{"name", "overrides", "paper"}``: what each run changes, and the key of
  its row in ``paper``;
- ``paper``: the paper's numbers per row (``ff``, ``c2i``, ``top1``, any may be missing).

`run_study` trains every run (each resumable: a finished run is read back, an interrupted one
continues from its last epoch), writes the analysis report of each dataset's runs, and a
``study.md`` with the Table-1-style comparison, the paper's numbers beside the measured ones
and, for each of the paper's findings, whether it reproduces here: paired t-tests over the
seeds, Holm-corrected within a finding (`findings`). Each arm's learning rate is chosen on a
validation split by a sweep that extends its grid until the best lies inside
(`sweep_learning_rates`).

References:
    - Liu et al., "How Do Adam and Training Strategies Help BNNs Optimization", ICML 2021,
      Table 1 and Sections 3-4; docs/method.md §4.
"""

from adambnn_larq.errors import StudyError
from adambnn_larq.study.plan import MAX_EXTENSIONS, Study, StudyRun, load_study
from adambnn_larq.study.running import run_study
from adambnn_larq.study.sweep import choose_learning_rates, sweep_learning_rates
from adambnn_larq.study.verdicts import (
    ALPHA,
    C2I_START_NOTE,
    METRICS,
    TWO_STEP_C2I_CLAIM,
    TWO_STEP_C2I_SHOWN,
    compare,
    finding_verdict,
    findings,
    seed_statistics,
)

__all__ = [
    "ALPHA",
    "C2I_START_NOTE",
    "MAX_EXTENSIONS",
    "METRICS",
    "TWO_STEP_C2I_CLAIM",
    "TWO_STEP_C2I_SHOWN",
    "Study",
    "StudyError",
    "StudyRun",
    "choose_learning_rates",
    "compare",
    "finding_verdict",
    "findings",
    "load_study",
    "run_study",
    "seed_statistics",
    "sweep_learning_rates",
]
