"""What the config schema cannot say: names that must refer to other config entries, values that
must agree with each other; and what each training job asks for (GPUs, wall time, retries). The
workflow runs these checks on every config after validating it against the schema (common.smk); so
does schema.with_defaults, for the experiments the benchmarks and tests build by hand."""

import math
import re
from pathlib import Path

from .errors import InputError
from .layout import experiment_runs


def runs_by_experiment(experiments: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """Experiment -> its training runs (one per seed of `seeds`): run name -> the run's config."""
    return {name: experiment_runs(name, experiment) for name, experiment in experiments.items()}


def job_gpus(experiment: dict) -> int:
    """GPUs of an experiment's training job: `gpus` for each of its workers."""
    return experiment["gpus"] * experiment.get("distributed", {}).get("workers", 1)


# Hours per epoch of the seeds on 4 GPUs: ResNeXt-101 takes 12+ hours for 300 epochs ("Even
# faster?" part 3); twice that covers slower GPUs and evaluation.
HOURS_PER_EPOCH = 2 * 12 / 300
# Attempts beyond those a run's size needs: a job ended early (scancel, a node lost without requeue)
# or epochs slower than HOURS_PER_EPOCH.
SPARE_ATTEMPTS = 2


def run_minutes(experiment: dict) -> int:
    """Wall time a whole training run may take, from its epoch count (at least an hour)."""
    return max(60, round(experiment["num_epochs"] * HOURS_PER_EPOCH * 60))


def job_minutes(experiment: dict, max_job_minutes: int | None) -> int:
    """Wall-time limit of a training job (Slurm's `runtime`): its run's, at most max_job_minutes."""
    return min(run_minutes(experiment), max_job_minutes or math.inf)


def training_retries(runs: list[dict], max_job_minutes: int | None) -> int | None:
    """Retries of a failed training job, each a new job resuming from the last checkpoint: the jobs
    the longest run needs, ceil(its minutes / max_job_minutes), less the first, plus SPARE_ATTEMPTS.
    None without the cap (or runs): --retries decides."""
    if max_job_minutes is None or not runs:
        return None
    longest = max(run_minutes(run) for run in runs)
    return math.ceil(longest / max_job_minutes) - 1 + SPARE_ATTEMPTS


def check_config(config: dict) -> None:
    """Raise InputError, naming the key, for the first cross-reference or combination that is wrong
    in `config` (validated against the schema, defaults filled in)."""
    experiments = config["experiments"]
    for name, experiment in experiments.items():
        check_experiment(name, experiment, config)
    pretrained = config["pretrained_models"]
    for model, spec in pretrained.items():
        if "experiment" in spec and spec["experiment"] not in experiments:
            raise InputError(
                f"pretrained_models.{model}.experiment: {spec['experiment']!r} is not an experiment"
            )
        if "seeds" in experiments.get(spec.get("experiment"), {}):
            raise InputError(
                f"pretrained_models.{model}.experiment: {spec['experiment']!r} trains several seeds; "
                "a pretrained model is one run: name an experiment without `seeds`"
            )
    for figure, spec in config["figures"].items():
        unknown = [name for name in spec["experiments"] if name not in experiments]
        if unknown:
            raise InputError(f"figures.{figure}.experiments: not experiments: {unknown}")
    unknown = [name for name in config["published_accuracy"] if name not in experiments]
    if unknown:
        raise InputError(f"published_accuracy: not experiments: {unknown}")


def check_experiment(name: str, experiment: dict, config: dict) -> None:
    """One experiment's checks: its schedule, what it starts from, its distributed hosts file."""
    schedule = experiment["lr_schedule"]
    if schedule["type"] == "one_cycle" and schedule["warmup_epochs"] >= experiment["num_epochs"]:
        raise InputError(
            f"experiments.{name}.lr_schedule.warmup_epochs: {schedule['warmup_epochs']} leaves none "
            f"of the {experiment['num_epochs']} epochs to bring the learning rate back down"
        )
    if schedule["type"] == "piecewise_linear":
        fractions = [fraction for fraction, _ in schedule["points"]]
        if fractions[0] != 0 or fractions[-1] != 1 or fractions != sorted(fractions):
            raise InputError(
                f"experiments.{name}.lr_schedule.points: fractions {fractions} must run from 0 to 1 in order"
            )
    check_augmentation(name, experiment)
    for index, rule in enumerate(experiment["param_multipliers"]):
        try:
            re.compile(rule["match"])
        except re.error as error:
            raise InputError(f"experiments.{name}.param_multipliers[{index}].match: {error}") from None
    lookahead = experiment.get("lookahead")
    if lookahead and lookahead["start_epoch"] >= experiment["num_epochs"]:
        raise InputError(
            f"experiments.{name}.lookahead.start_epoch: {lookahead['start_epoch']} is past the last of the "
            f"{experiment['num_epochs']} epochs (counted from 0)"
        )
    init = experiment["init"]
    if init["type"] == "pretrained" and init["model"] not in config["pretrained_models"]:
        raise InputError(
            f"experiments.{name}.init.model: {init['model']!r} is not in pretrained_models "
            f"({', '.join(config['pretrained_models']) or 'none'})"
        )
    if init["type"] == "experiment":
        source = config["experiments"].get(init["experiment"])
        if source is None or init["experiment"] == name:
            raise InputError(
                f"experiments.{name}.init.experiment: {init['experiment']!r} is not another experiment"
            )
        if source["dataset"] != experiment["dataset"]:
            raise InputError(
                f"experiments.{name}.init.experiment: {init['experiment']!r} trains on "
                f"{source['dataset']}, not {experiment['dataset']}"
            )
        unmatched = [
            run["seed"]
            for run in experiment_runs(name, experiment).values()
            if "seeds" in source and run["seed"] not in source["seeds"]
        ]
        if unmatched:
            raise InputError(
                f"experiments.{name}: seed(s) {unmatched} start from the run of the same seed of "
                f"{init['experiment']!r}, whose seeds are {source['seeds']}"
            )
    hosts = experiment.get("distributed", {}).get("hosts")
    if hosts is not None and not Path(hosts).is_file():
        raise InputError(
            f"experiments.{name}.distributed.hosts: {hosts!r} is not a file "
            "(the ssh and mpi launchers read one host per line from it)"
        )


def in_memory(augment: dict) -> bool:
    """Whether the training split is augmented in memory (training.MemoryBatches), not by
    ImageRecordIter: for the options ImageRecordIter cannot express."""
    return augment["translate"] > 0 or augment["alternating_flip"]


def check_augmentation(name: str, experiment: dict) -> None:
    augment, shape = experiment["augment"], experiment["data_shape"]
    if in_memory(augment):
        # in memory, rand_mirror stays a random mirror per image and epoch
        replaced = ["rand_crop", "pad"] + (["rand_mirror"] if augment["alternating_flip"] else [])
        record_options = [key for key in replaced if augment[key]]
        if record_options:
            raise InputError(
                f"experiments.{name}.augment: translate and alternating_flip augment the decoded images in "
                f"memory, in place of {', '.join(record_options)}: set {', '.join(record_options)} off"
            )
        if shape[1:] != [32, 32]:
            raise InputError(
                f"experiments.{name}.augment: translate and alternating_flip shift whole 32x32 images; "
                f"data_shape is {shape}"
            )
    if "whitening" in experiment and shape[1:] != [32, 32]:
        raise InputError(f"experiments.{name}.whitening: for 32x32 images; data_shape is {shape}")


def capped_gpu_warnings(experiments: dict[str, dict], gpu_limit: int | None) -> list[str]:
    """Snakemake silently lowers a job's resources to the run's --resources limit: one warning per
    experiment whose job asks for more GPUs than `gpu_limit` (None: no limit)."""
    if gpu_limit is None:
        return []
    return [
        f"!!! WARNING: experiment {name} asks for {job_gpus(experiment)} GPUs but this run "
        f"allows --resources gpu={gpu_limit}: Snakemake caps it, so it will train on {gpu_limit} "
        f"devices. Raise --resources gpu or lower experiments.{name}.gpus."
        for name, experiment in experiments.items()
        if job_gpus(experiment) > gpu_limit
    ]
