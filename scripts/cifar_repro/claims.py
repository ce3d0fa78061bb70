"""The seeds' claims against what the experiments measured: one row per claim, with a verdict.

Two kinds of claim (the config's `claims`):
- `beats`: the `treatment` experiment ends with a higher validation accuracy than the `baseline`
  (e.g. fine-tuning from ImageNet, 85 %, beats training from scratch, 80 %);
- `matches_curve`: the experiment's per-epoch validation accuracy follows a published curve
  (config/published/*.csv) within `tolerance` percentage points, on average over the epochs both have.

The verdict rule (VERDICT_RULE, also written into the table), over the experiments' seeds:
- beats: the 95 % t-interval of the difference treatment - baseline in final validation accuracy
  (paired by seed when both have the same seeds, else Welch's) excludes 0 on the published side:
  `holds`; on the other side: `does not hold`; else, or with fewer than 2 seeds, `inconclusive`;
- matches_curve: the 95 % t-interval of the mean absolute gap to the curve lies below the tolerance:
  `holds`; above it: `does not hold`; else, or with fewer than 2 seeds, `inconclusive`.
A claim whose experiments this config does not train is `not run in this config`.
"""

import math
import statistics
from dataclasses import dataclass

import pandas as pd

from .atomic import atomic_path
from .claim_spec import claim_experiments
from .errors import InputError
from .metrics import load_experiment_metrics, runs_of
from .published import load_curve
from .tables import to_markdown

HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NOT_RUN = (
    "holds",
    "does not hold",
    "inconclusive",
    "not run in this config",
)
CONFIDENCE = 0.95
VERDICT_RULE = (
    "95 % t-interval over seeds: beats: of treatment - baseline in final validation accuracy (paired by "
    "seed when both have the same seeds, else Welch), holds if it excludes 0 on the published side, "
    "does not hold if on the other; matches_curve: of the mean absolute gap to the curve, holds if "
    "below the tolerance, does not hold if above; otherwise, or with fewer than 2 seeds, inconclusive"
)
CLAIM_COLUMNS = [
    "claim",
    "statement",
    "source",
    "experiments",
    "published",
    "measured",
    "difference",
    "ci_low",
    "ci_high",
    "seeds",
    "verdict",
]


# ---------------------------------------------------------------- Student's t, without scipy


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on this side only
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    front = (
        math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
        / a
    )
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * fraction


def t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(probability: float, df: float) -> float:
    """The t with t_cdf(t, df) == probability (0.5 < probability < 1), by bisection."""
    low, high = 0.0, 1.0
    while t_cdf(high, df) < probability:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if t_cdf(middle, df) < probability else (low, middle)
    return (low + high) / 2


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95 % t-interval of the mean; NaN bounds for fewer than 2 values."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = (
        t_quantile((1 + CONFIDENCE) / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    )
    return mean, mean - half, mean + half


def difference_interval(
    treatment: dict[int, float], baseline: dict[int, float]
) -> tuple[float, float, float]:
    """(difference of means, low, high) of treatment - baseline, both {seed: value}: paired by seed when
    they have the same seeds, else Welch's interval; NaN bounds with fewer than 2 seeds on a side."""
    if set(treatment) == set(baseline):
        return mean_interval([treatment[seed] - baseline[seed] for seed in sorted(treatment)])
    a, b = list(treatment.values()), list(baseline.values())
    difference = statistics.fmean(a) - statistics.fmean(b)
    if min(len(a), len(b)) < 2:
        return difference, math.nan, math.nan
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return difference, difference, difference
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile((1 + CONFIDENCE) / 2, df) * math.sqrt(va + vb)
    return difference, difference - half, difference + half


# ---------------------------------------------------------------- verdicts


def verdict_beats(low: float, high: float, published_sign: float) -> str:
    if math.isnan(low):
        return INCONCLUSIVE
    if low > 0 or high < 0:
        return HOLDS if (low > 0) == (published_sign > 0) else DOES_NOT_HOLD
    return INCONCLUSIVE


def verdict_within(low: float, high: float, tolerance: float) -> str:
    if math.isnan(low):
        return INCONCLUSIVE
    if high < tolerance:
        return HOLDS
    if low > tolerance:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


@dataclass(frozen=True)
class Measured:
    """What a claim reads of one experiment: {seed: final validation accuracy (%)} and its runs' metrics."""

    finals: dict[int, float]
    metrics: dict[int, pd.DataFrame]


def measured_from(runs: dict[int, pd.DataFrame]) -> Measured:
    """{seed: metrics.csv frame} of an experiment's runs."""
    return Measured({seed: float(frame["val_accuracy"].iloc[-1]) * 100 for seed, frame in runs.items()}, runs)


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return (
        f"{mean:.2f} ± {statistics.stdev(values):.2f} (n={len(values)})"
        if len(values) > 1
        else f"{mean:.2f} (n=1)"
    )


def claim_row(name: str, claim: dict, measured: dict[str, Measured], curves: dict[str, pd.DataFrame]) -> dict:
    """The table's row for one claim; `measured` holds the experiments this config trains."""
    experiments = claim_experiments(claim)
    row = {
        "claim": name,
        "statement": claim["statement"],
        "source": claim["source"],
        "experiments": " vs ".join(experiments),
    }
    if claim["kind"] == "beats":
        published = claim["published"]
        row["published"] = f"{published['baseline']:g} → {published['treatment']:g}"
    else:
        row["published"] = f"{claim['published_curve']} within {claim['tolerance']:g} points"
    missing = [experiment for experiment in experiments if experiment not in measured]
    if missing:
        return row | {"measured": f"not trained here: {', '.join(missing)}", "verdict": NOT_RUN}
    if claim["kind"] == "beats":
        baseline, treatment = measured[claim["baseline"]], measured[claim["treatment"]]
        difference, low, high = difference_interval(treatment.finals, baseline.finals)
        sign = claim["published"]["treatment"] - claim["published"]["baseline"]
        verdict = verdict_beats(low, high, sign)
        shown = f"{_spread(list(baseline.finals.values()))} → {_spread(list(treatment.finals.values()))}"
        seeds = min(len(baseline.finals), len(treatment.finals))
    else:
        gaps = {
            seed: curve_gap(frame, curves[claim["published_curve"]], claim.get("stage", 1))
            for seed, frame in measured[claim["experiment"]].metrics.items()
        }
        difference, low, high = mean_interval(list(gaps.values()))
        verdict = verdict_within(low, high, claim["tolerance"])
        shown = f"mean absolute gap {_spread(list(gaps.values()))} points"
        seeds = len(gaps)
    return row | {
        "measured": shown,
        "difference": difference,
        "ci_low": low,
        "ci_high": high,
        "seeds": seeds,
        "verdict": verdict,
    }


def curve_gap(metrics: pd.DataFrame, curve: pd.DataFrame, stage: int) -> float:
    """Mean absolute difference, in points, between a run's validation accuracy and the curve's stage,
    over the epochs both have."""
    published = curve[curve["stage"] == stage].set_index("epoch")["val_accuracy"]
    measured = metrics.set_index("epoch")["val_accuracy"]
    common = measured.index.intersection(published.index)
    if common.empty:
        raise InputError(f"the run and the published curve's stage {stage} share no epoch")
    return float((measured[common] - published[common]).abs().mean() * 100)


def claims_table(
    claims: dict[str, dict], measured: dict[str, Measured], curves: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    rows = [claim_row(name, claim, measured, curves) for name, claim in claims.items()]
    # a count, empty for a claim that did not run (a plain column would turn it into a float)
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS).astype({"seeds": "Int64"})


def build_claims(
    claims: dict[str, dict],
    experiment_seeds: dict[str, dict[str, int]],
    metrics_paths: list[str],
    outputs: dict[str, str],
) -> pd.DataFrame:
    """Read the runs' metrics.csv (`metrics_paths`, in the order of `experiment_seeds`: experiment ->
    {run: seed}, the trained experiments the claims name) and the claims' published curves, and write
    the table as CSV and markdown (`outputs`: csv, md)."""
    stacked = load_experiment_metrics(
        {name: list(seeds) for name, seeds in experiment_seeds.items()}, metrics_paths
    )
    measured = {
        name: measured_from({seeds[run]: rows for run, rows in runs_of(stacked[name]).items()})
        for name, seeds in experiment_seeds.items()
    }
    curves = {
        claim["published_curve"]: load_curve(claim["published_curve"])
        for claim in claims.values()
        if claim["kind"] == "matches_curve"
    }
    table = claims_table(claims, measured, curves)
    with atomic_path(outputs["csv"]) as partial:
        table.to_csv(partial, index=False)
    with atomic_path(outputs["md"]) as partial:
        partial.write_text(to_markdown(table) + f"\nVerdict rule: {VERDICT_RULE}.\n")
    return table
