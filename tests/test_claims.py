"""The claims table's verdict rule: Student's t without scipy, paired and Welch intervals, and each
verdict (holds, does not hold, inconclusive, not run in this config) from measured seeds."""

import math

import pandas as pd
import pytest

from cifar_repro import claims, tables

BEATS = {
    "statement": "B beats A",
    "source": "a tutorial",
    "kind": "beats",
    "baseline": "a",
    "treatment": "b",
    "published": {"baseline": 80.0, "treatment": 85.0},
}
CURVE = pd.DataFrame(
    {"stage": [1, 1, 1], "epoch": [1, 2, 3], "continuous_epoch": [1, 2, 3],
     "train_accuracy": [0.3, 0.5, 0.6], "val_accuracy": [0.30, 0.50, 0.60]}
)  # fmt: skip
FOLLOWS = {
    "statement": "A follows the curve",
    "source": "a notebook",
    "kind": "matches_curve",
    "experiment": "a",
    "published_curve": "curve.csv",
    "stage": 1,
    "tolerance": 2.0,
}


def measured(finals_by_seed: dict[int, float]) -> claims.Measured:
    """An experiment whose seeds end at these validation accuracies (%), after a 3-epoch curve."""
    return claims.measured_from(
        {
            seed: pd.DataFrame({"epoch": [1, 2, 3], "val_accuracy": [0.3, 0.5, final / 100]})
            for seed, final in finals_by_seed.items()
        }
    )


def verdict(claim, experiments):
    return claims.claim_row("claim", claim, experiments, {"curve.csv": CURVE})


@pytest.mark.parametrize("df, quantile", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423)])
def test_t_quantiles_are_the_tables(df, quantile):
    assert claims.t_quantile(0.975, df) == pytest.approx(quantile, abs=1e-4)


def test_seeds_in_common_are_paired_and_others_compared_by_welch():
    # the same seeds: the interval of the per-seed differences (5, 6, 4): 5 +- 4.303 * 1 / sqrt(3)
    difference, low, high = claims.difference_interval({0: 85, 1: 87, 2: 84}, {0: 80, 1: 81, 2: 80})
    half = 4.3027 / math.sqrt(3)
    assert (difference, low, high) == pytest.approx((5.0, 5 - half, 5 + half), abs=1e-3)
    # different seeds: Welch's interval, wider than the paired one here
    difference, low, high = claims.difference_interval({0: 85, 1: 87, 2: 84}, {3: 80, 4: 81, 5: 80})
    assert difference == pytest.approx(5.0) and high - low > 2 * half


def test_a_difference_excluding_0_on_the_published_side_holds():
    row = verdict(BEATS, {"a": measured({0: 80, 1: 81, 2: 80}), "b": measured({0: 85, 1: 87, 2: 84})})
    assert row["verdict"] == "holds" and row["ci_low"] > 0 and row["seeds"] == 3
    assert row["measured"] == "80.33 ± 0.58 (n=3) → 85.33 ± 1.53 (n=3)"
    assert row["published"] == "80 → 85"


def test_a_difference_excluding_0_on_the_other_side_does_not_hold():
    row = verdict(BEATS, {"a": measured({0: 85, 1: 87, 2: 84}), "b": measured({0: 80, 1: 81, 2: 80})})
    assert row["verdict"] == "does not hold" and row["ci_high"] < 0


def test_a_claim_of_a_lower_number_holds_when_the_treatment_is_lower():
    lower = BEATS | {"published": {"baseline": 85.0, "treatment": 80.0}}
    row = verdict(lower, {"a": measured({0: 85, 1: 87, 2: 84}), "b": measured({0: 80, 1: 81, 2: 80})})
    assert row["verdict"] == "holds"


def test_an_interval_spanning_0_or_a_single_seed_is_inconclusive():
    spanning = {"a": measured({0: 80, 1: 86, 2: 83}), "b": measured({0: 84, 1: 81, 2: 85})}
    row = verdict(BEATS, spanning)
    assert row["ci_low"] < 0 < row["ci_high"] and row["verdict"] == "inconclusive"
    single = verdict(BEATS, {"a": measured({0: 80}), "b": measured({0: 95})})
    assert single["verdict"] == "inconclusive" and math.isnan(single["ci_low"])
    assert single["difference"] == pytest.approx(15.0)


def test_a_claim_whose_experiments_did_not_run_says_so():
    row = verdict(BEATS, {"a": measured({0: 80, 1: 81})})
    assert row["verdict"] == "not run in this config"
    assert row["measured"] == "not trained here: b"
    assert row["experiments"] == "a vs b" and row["source"] == "a tutorial"


def test_a_curve_followed_within_the_tolerance_holds_and_one_far_off_does_not():
    close = {"a": measured({0: 60.5, 1: 59.5, 2: 60.2})}  # gaps at epoch 3 only: 0.5, 0.5, 0.2
    row = verdict(FOLLOWS, close)
    assert row["difference"] == pytest.approx((0.5 + 0.5 + 0.2) / 3 / 3)  # mean over 3 epochs, 3 seeds
    assert row["verdict"] == "holds"
    far = verdict(FOLLOWS, {"a": measured({0: 80, 1: 82, 2: 81})})  # 20-22 points off at epoch 3
    assert far["verdict"] == "does not hold"


def test_the_table_has_a_row_per_claim_in_order():
    table = claims.claims_table(
        {"first": BEATS, "second": FOLLOWS}, {"a": measured({0: 80, 1: 81})}, {"curve.csv": CURVE}
    )
    assert table["claim"].tolist() == ["first", "second"]
    assert list(table.columns) == claims.CLAIM_COLUMNS
    # seeds 80 and 81 % at epoch 3 against the curve's 60: gaps of 6.7 and 7 points on average
    assert table["verdict"].tolist() == ["not run in this config", "does not hold"]
    # a count of seeds, shown as one, and nothing for the claim that did not run
    seeds_cells = [line.split(" | ")[9] for line in tables.to_markdown(table).splitlines()[2:]]
    assert seeds_cells == ["", "2"]
