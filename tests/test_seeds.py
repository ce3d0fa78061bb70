"""Several seeds per experiment, through the real `snakemake` CLI: each seed is a training job of its
own (results/experiments/<experiment>/seed<N>/), runnable alone and bit-identical to a single run
with that seed; a later stage starts from the run of its own seed; tables and figures take the mean
over the seeds."""

import json

import pandas as pd
import pytest
from conftest import (
    read_metrics,
    run_snakemake,
    scheduled_rules,
    synthetic_config,
    tiny_experiment,
    without_timing,
)

from cifar_repro import claims, layout
from cifar_repro.metrics import load_experiment_metrics

SIZES = {"cifar10": (10, 2)}  # 100 training, 20 test images
EXPERIMENTS = {
    "fan": tiny_experiment(num_epochs=2, seeds=[1, 2]),
    "single": tiny_experiment(num_epochs=2, seed=2),
    "next_stage": tiny_experiment(
        num_epochs=1,
        seeds=[1, 2],
        init={"type": "experiment", "experiment": "fan"},
        optimizer_params={"learning_rate": 0.01, "momentum": 0.9, "wd": 0.0001},
    ),
}
FIGURES = {
    "fan_vs_single": {"title": "seeds", "kind": "accuracy", "experiments": ["fan", "single"]},
    "stages": {"title": "stages", "kind": "stages", "experiments": ["fan", "next_stage"]},
}
CLAIMS = {
    "next_stage_beats_fan": {
        "statement": "the next stage ends above the first",
        "source": "a notebook",
        "kind": "beats",
        "baseline": "fan",
        "treatment": "next_stage",
        "published": {"baseline": 60.0, "treatment": 70.0},
    },
    "fan_beats_single": {
        "statement": "two seeds beat one",
        "source": "nowhere",
        "kind": "beats",
        "baseline": "single",
        "treatment": "fan",
        "published": {"baseline": 60.0, "treatment": 70.0},
    },
    "elsewhere": {
        "statement": "an experiment of another config",
        "source": "a tutorial",
        "kind": "beats",
        "baseline": "fan",
        "treatment": "not_here",
        "published": {"baseline": 60.0, "treatment": 70.0},
    },
}
TARGETS = [
    "results/tables/summary.csv",
    "results/tables/claims.csv",
    "results/figures/fan_vs_single.png",
    "results/figures/stages.png",
]


def config(folder, experiments=EXPERIMENTS):
    return synthetic_config(
        SIZES, gpu_lock_dir=str(folder / "locks"), experiments=experiments, figures=FIGURES, claims=CLAIMS
    )


def metrics(folder, run):
    return without_timing(read_metrics(folder / layout.run_files("results", run).metrics))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seeds")
    result = run_snakemake(folder, *TARGETS, config=config(folder))
    assert result.returncode == 0, result.stderr[-4000:]
    return folder


@pytest.mark.workflow
def test_each_seed_is_a_training_job_of_its_own_that_runs_alone(tmp_path):
    result = run_snakemake(tmp_path, "-n", *TARGETS, config=config(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert scheduled_rules(result.stdout)["train"] == 2 + 1 + 2
    alone = run_snakemake(tmp_path, "-n", layout.run_files("results", "fan/seed2").metrics)
    assert scheduled_rules(alone.stdout)["train"] == 1


@pytest.mark.workflow
def test_a_seed_trains_as_a_single_run_with_that_seed_and_seeds_differ(built):
    assert metrics(built, "fan/seed2") == metrics(built, "single")
    assert metrics(built, "fan/seed1") != metrics(built, "fan/seed2")


@pytest.mark.workflow
def test_a_later_stage_starts_from_the_run_of_its_own_seed(built):
    for seed in (1, 2):
        run = json.loads((built / layout.run_files("results", f"next_stage/seed{seed}").run).read_text())
        assert run["config"]["seed"] == seed
        # through rule release_model's hard link of that run's final parameters
        released = layout.released_model("results", f"fan/seed{seed}")["params"]
        assert released in run["initialised_from"]
        final = layout.run_files("results", f"fan/seed{seed}").params
        assert (built / released).stat().st_ino == (built / final).stat().st_ino


@pytest.mark.workflow
def test_the_summary_is_the_mean_over_the_seeds_with_their_spread(built):
    summary = pd.read_csv(built / "results/tables/summary.csv").set_index("experiment")
    finals = [float(metrics(built, f"fan/seed{seed}")[-1]["val_accuracy"]) * 100 for seed in (1, 2)]
    fan = summary.loc["fan"]
    assert fan["seeds"] == 2
    assert fan["final_val_accuracy"] == pytest.approx(sum(finals) / 2)
    assert fan["final_val_accuracy_std"] == pytest.approx(pd.Series(finals).std())
    assert summary.loc["single", "seeds"] == 1
    stacked = load_experiment_metrics(
        {"fan": ["fan/seed1", "fan/seed2"]},
        [str(built / layout.run_files("results", f"fan/seed{seed}").metrics) for seed in (1, 2)],
    )
    assert len(stacked["fan"]) == 2 * 2  # both seeds' epochs, as the figures draw them


@pytest.mark.workflow
def test_a_later_stage_needs_the_seeds_of_the_stage_it_starts_from(tmp_path):
    experiments = EXPERIMENTS | {"next_stage": EXPERIMENTS["next_stage"] | {"seeds": [1, 3]}}
    result = run_snakemake(tmp_path, "-n", config=config(tmp_path, experiments))
    assert result.returncode != 0
    message = "seed(s) [3] start from the run of the same seed of 'fan', whose seeds are [1, 2]"
    assert message in result.stdout + result.stderr


@pytest.mark.workflow
def test_the_claims_table_judges_each_claim_from_the_seeds_it_trained(built):
    table = pd.read_csv(built / "results/tables/claims.csv").set_index("claim")
    assert table.loc["elsewhere", "verdict"] == "not run in this config"
    assert table.loc["fan_beats_single", "verdict"] == "inconclusive"  # one seed of single
    finals = {
        name: {seed: float(metrics(built, f"{name}/seed{seed}")[-1]["val_accuracy"]) * 100 for seed in (1, 2)}
        for name in ("fan", "next_stage")
    }
    difference, low, high = claims.difference_interval(finals["next_stage"], finals["fan"])  # paired
    row = table.loc["next_stage_beats_fan"]
    assert (row["difference"], row["ci_low"], row["ci_high"]) == pytest.approx((difference, low, high))
    assert row["verdict"] == claims.verdict_beats(low, high, published_sign=1) and row["seeds"] == 2
    assert "Verdict rule:" in (built / "results/tables/claims.md").read_text()
