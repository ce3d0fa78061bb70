"""The config's cross-checks (config_checks.py), in-process: every failure names its key. The
workflow runs the same function on every config (tests/test_training.py checks that through
`snakemake --dry-run`)."""

import pytest
from conftest import tiny_experiment

from cifar_repro.config_checks import (
    SPARE_ATTEMPTS,
    capped_gpu_warnings,
    job_gpus,
    job_minutes,
    run_minutes,
    runs_by_experiment,
    training_retries,
)
from cifar_repro.errors import InputError
from cifar_repro.schema import validated_config, with_defaults

DISTRIBUTED = {"workers": 2, "servers": 1}


def checked(**config) -> dict:
    return validated_config(config)


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"experiments": {"bad": tiny_experiment(lr_schedule={"type": "one_cycle", "warmup_epochs": 3})}},
            "experiments.bad.lr_schedule.warmup_epochs: 3 leaves none of the 3 epochs",
        ),
        (
            {"experiments": {"bad": tiny_experiment(init={"type": "pretrained", "model": "nope"})}},
            "experiments.bad.init.model: 'nope' is not in pretrained_models (resnext-101)",
        ),
        (
            {"experiments": {"bad": tiny_experiment(init={"type": "experiment", "experiment": "bad"})}},
            "experiments.bad.init.experiment: 'bad' is not another experiment",
        ),
        (
            {
                "experiments": {
                    "bad": tiny_experiment(init={"type": "experiment", "experiment": "other"}),
                    "other": tiny_experiment(dataset="cifar100"),
                }
            },
            "experiments.bad.init.experiment: 'other' trains on cifar100, not cifar10",
        ),
        (
            {
                "experiments": {
                    "fan": tiny_experiment(seeds=[1, 2]),
                    "next": tiny_experiment(seeds=[2, 3], init={"type": "experiment", "experiment": "fan"}),
                }
            },
            "experiments.next: seed(s) [3] start from the run of the same seed of 'fan', whose seeds are [1,",
        ),
        (
            {"experiments": {"a": tiny_experiment()}, "pretrained_models": {"m": {"experiment": "ghost"}}},
            "pretrained_models.m.experiment: 'ghost' is not an experiment",
        ),
        (
            {
                "experiments": {"a": tiny_experiment(seeds=[0, 1])},
                "pretrained_models": {"m": {"experiment": "a"}},
            },
            "pretrained_models.m.experiment: 'a' trains several seeds",
        ),
        (
            {
                "experiments": {"a": tiny_experiment()},
                "figures": {"f": {"title": "t", "kind": "accuracy", "experiments": ["a", "ghost"]}},
            },
            "figures.f.experiments: not experiments: ['ghost']",
        ),
        (
            {"experiments": {"a": tiny_experiment()}, "published_accuracy": {"ghost": 80.0}},
            "published_accuracy: not experiments: ['ghost']",
        ),
        (
            {
                "experiments": {
                    "d": tiny_experiment(
                        distributed={**DISTRIBUTED, "launcher": "ssh", "hosts": "/nonexistent/hosts"}
                    )
                }
            },
            "experiments.d.distributed.hosts: '/nonexistent/hosts' is not a file",
        ),
        (
            {
                "experiments": {
                    "bad": tiny_experiment(
                        lr_schedule={"type": "piecewise_linear", "points": [[0, 1], [0.8, 0.1]]}
                    )
                }
            },
            "experiments.bad.lr_schedule.points: fractions [0, 0.8] must run from 0 to 1 in order",
        ),
        (
            {"experiments": {"bad": tiny_experiment(augment={"translate": 2, "rand_crop": True, "pad": 2})}},
            "experiments.bad.augment: translate and alternating_flip augment the decoded images in memory, "
            "in place of rand_crop, pad: set rand_crop, pad off",
        ),
        (
            {"experiments": {"bad": tiny_experiment(augment={"alternating_flip": True})}},  # 28x28 crops
            "experiments.bad.augment: translate and alternating_flip shift whole 32x32 images; "
            "data_shape is [3, 28, 28]",
        ),
        (
            {"experiments": {"bad": tiny_experiment(param_multipliers=[{"match": "_beta(", "lr_mult": 2}])}},
            "experiments.bad.param_multipliers[0].match: missing ), unterminated subpattern",
        ),
        (
            {"experiments": {"bad": tiny_experiment(lookahead={"start_epoch": 3})}},
            "experiments.bad.lookahead.start_epoch: 3 is past the last of the 3 epochs",
        ),
    ],
)
def test_each_cross_check_names_its_key(config, message):
    with pytest.raises(InputError) as raised:
        checked(**config)
    assert message in str(raised.value)


def test_a_consistent_config_passes_and_expands_into_runs():
    config = checked(
        experiments={
            "fan": tiny_experiment(seeds=[1, 2]),
            "next": tiny_experiment(seeds=[1, 2], init={"type": "experiment", "experiment": "fan"}),
            "single": tiny_experiment(seed=5),
        },
        pretrained_models={"from_single": {"experiment": "single"}},
    )
    runs = runs_by_experiment(config["experiments"])
    assert {name: list(of) for name, of in runs.items()} == {
        "fan": ["fan/seed1", "fan/seed2"],
        "next": ["next/seed1", "next/seed2"],
        "single": ["single"],
    }
    assert runs["fan"]["fan/seed2"]["seed"] == 2 and "seeds" not in runs["fan"]["fan/seed2"]
    assert runs["single"]["single"]["seed"] == 5


def test_a_job_asks_for_its_gpus_times_its_workers_and_a_lower_limit_is_named():
    experiments = {
        "one": with_defaults(tiny_experiment(gpus=2)),
        "dist": with_defaults(tiny_experiment(gpus=2, distributed=DISTRIBUTED)),
    }
    assert [job_gpus(experiment) for experiment in experiments.values()] == [2, 4]
    assert capped_gpu_warnings(experiments, None) == []
    assert capped_gpu_warnings(experiments, 4) == []
    (warning,) = capped_gpu_warnings(experiments, 3)
    assert "experiment dist asks for 4 GPUs but this run allows --resources gpu=3" in warning
    assert "lower experiments.dist.gpus" in warning


def test_hand_built_experiments_get_the_cross_checks_too():
    with pytest.raises(InputError, match="warmup_epochs: 3 leaves none"):
        with_defaults(tiny_experiment(lr_schedule={"type": "one_cycle", "warmup_epochs": 3}))


def test_a_run_longer_than_max_job_minutes_asks_for_the_cap_and_retries_enough_jobs_to_finish():
    seed_run = {"num_epochs": 300}  # 1440 minutes at the seeds' pace, doubled
    assert run_minutes(seed_run) == 1440
    assert job_minutes(seed_run, None) == 1440
    assert job_minutes(seed_run, 720) == 720
    assert job_minutes({"num_epochs": 4}, 720) == 60  # a short run asks for its own hour
    # 2 jobs of 720 minutes, the first not a retry, plus 2 spare
    assert training_retries([{"num_epochs": 4}, seed_run], 720) == 1 + SPARE_ATTEMPTS
    assert training_retries([seed_run], 1440) == SPARE_ATTEMPTS
    assert training_retries([seed_run], 1) == 1439 + SPARE_ATTEMPTS
    assert training_retries([seed_run], None) is None  # without a cap, --retries decides
    assert training_retries([], 720) is None
