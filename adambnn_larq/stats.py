"""Small-sample tests for the study's comparisons: Student's t, paired and Welch, and Holm.

NumPy and the standard library only: SciPy is not part of the tested stack (requirements.txt),
and the few functions a t-test needs are short. The t distribution's tail is the regularized
incomplete beta function, evaluated by its continued fraction (modified Lentz); the quantile
inverts the CDF by bisection, which cannot fail to converge on a monotone function.

References:
    - W. H. Press et al., "Numerical Recipes", 3rd ed., §6.4 (incomplete beta, ``betacf``) and
      §6.14 (Student's t).
    - B. L. Welch, "The generalization of Student's problem when several different population
      variances are involved", Biometrika 34 (1947).
    - S. Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6
      (1979).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np

PAIRED = "paired t-test"
WELCH = "Welch's t-test"


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            delta = c * d
            h *= delta
        if abs(delta - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if not (a > 0 and b > 0 and 0.0 <= x <= 1.0):
        raise ValueError(f"betainc needs a, b > 0 and 0 <= x <= 1, got {a}, {b}, {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The continued fraction converges fast only below the mean of Beta(a, b); above it, the
    # symmetry I_x(a, b) = 1 - I_{1-x}(b, a) moves the evaluation there.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` (> 0, not necessarily whole) degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = t_two_sided_p(t, df) / 2.0
    return 1.0 - tail if t > 0 else tail


# Cached: a study asks for the same few quantiles (alpha, n - 1) over and over.
@functools.lru_cache(maxsize=1024)
def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (0 < p < 1), by bisection on `t_cdf`."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a quantile needs 0 < p < 1, got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = 0.5 * (low + high)
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * max(1.0, high):
            break
    return 0.5 * (low + high)


@dataclasses.dataclass(frozen=True)
class TestResult:
    """A two-sided test of mean(a) - mean(b) = 0, with its (1 - alpha) confidence interval."""

    test: str  # PAIRED or WELCH
    n: int  # pairs (paired) or the smaller of the two sample sizes (Welch)
    effect: float  # mean(a) - mean(b)
    ci_low: float
    ci_high: float
    t: float
    df: float
    p: float
    confidence: float

    def to_dict(self) -> dict[str, float | int | str]:
        return dataclasses.asdict(self)


def _result(test: str, n: int, effect: float, se: float, df: float, alpha: float) -> TestResult:
    if se == 0.0:
        # No spread at all: the difference is known exactly, and is zero or not.
        t = math.copysign(math.inf, effect) if effect else 0.0
        p = 0.0 if effect else 1.0
        return TestResult(test, n, effect, effect, effect, t, df, p, 1 - alpha)
    t = effect / se
    half = t_quantile(1.0 - alpha / 2.0, df) * se
    return TestResult(
        test, n, effect, effect - half, effect + half, t, df, t_two_sided_p(t, df), 1 - alpha
    )


def _sample(values: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) < 2:
        raise ValueError(
            f"a t-test needs at least 2 values per {what}, got {len(np.atleast_1d(array))}: "
            "train the study with 2 or more seeds (3 or more for a test with any power)"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"a t-test needs finite values, got {list(array)}")
    return array


def paired_t(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> TestResult:
    """Paired t-test of a - b, element by element (a[i] and b[i] share seed i)."""
    a_values, b_values = _sample(a, "arm"), _sample(b, "arm")
    if len(a_values) != len(b_values):
        raise ValueError(
            f"a paired test needs equal lengths, got {len(a_values)} and {len(b_values)}"
        )
    differences = a_values - b_values
    n = len(differences)
    se = float(differences.std(ddof=1)) / math.sqrt(n)
    return _result(PAIRED, n, float(differences.mean()), se, n - 1.0, alpha)


def welch_t(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> TestResult:
    """Welch's unequal-variance t-test of mean(a) - mean(b), df by Welch-Satterthwaite."""
    a_values, b_values = _sample(a, "arm"), _sample(b, "arm")
    va = float(a_values.var(ddof=1)) / len(a_values)
    vb = float(b_values.var(ddof=1)) / len(b_values)
    se = math.sqrt(va + vb)
    if se == 0.0:
        df = float(len(a_values) + len(b_values) - 2)
    else:
        df = (va + vb) ** 2 / (va**2 / (len(a_values) - 1) + vb**2 / (len(b_values) - 1))
    effect = float(a_values.mean() - b_values.mean())
    return _result(WELCH, min(len(a_values), len(b_values)), effect, se, df, alpha)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (step-down, monotone, at most 1), in the order given.

    Rejecting where the adjusted p < alpha keeps the chance of any false rejection among the
    family at most alpha, whatever the dependence between the tests.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return [float(v) for v in adjusted]
