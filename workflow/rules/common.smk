import re
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

# The rules share the scripts' package for the contracts it defines once: the file layout, the
# config's cross-checks and URL handling.
sys.path.insert(0, str(Path(workflow.basedir).parent / "scripts"))
from cifar_repro import layout  # noqa: E402
from cifar_repro.claim_spec import claim_experiments  # noqa: E402
from cifar_repro.config_checks import (  # noqa: E402
    capped_gpu_warnings,
    check_config,
    job_gpus,
    job_minutes,
    runs_by_experiment,
    training_retries,
)
from cifar_repro.download import archive_name, local_source  # noqa: E402
from cifar_repro.schema import training_settings  # noqa: E402
from cifar_repro.whitening import STEM_SIZE  # noqa: E402

OUT = config["output_dir"].rstrip("/")
DATASETS = sorted(config["datasets"])
# what `all` builds: the datasets the experiments train on (all of them when there are none), so that
# a config without CIFAR-100 experiments never downloads CIFAR-100 from its default URL
DATASETS_IN_USE = sorted(
    {experiment["dataset"] for experiment in config["experiments"].values()} or DATASETS
)
SPLITS = list(layout.SPLITS)
EXPERIMENTS = config["experiments"]
# each experiment's training runs (one per seed of `seeds`): run name -> its config
RUNS_OF = runs_by_experiment(EXPERIMENTS)
RUNS = {run: spec for runs in RUNS_OF.values() for run, spec in runs.items()}
PRETRAINED = config["pretrained_models"]
FIGURES = config["figures"]
MAX_JOB_MINUTES = config["max_job_minutes"]  # a Slurm partition's MaxTime, or None


def choice_of(names):
    """A wildcard constraint matching exactly these names (or nothing)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


wildcard_constraints:
    dataset=choice_of(DATASETS),
    split=choice_of(SPLITS),
    run=choice_of(RUNS),
    model=choice_of(PRETRAINED),
    figure=choice_of(FIGURES),


check_config(config)
# Snakemake silently lowers a job's resources to the run's --resources limit: say so
_gpu_limit = workflow.global_resources.get("gpu")
for warning in capped_gpu_warnings(
    EXPERIMENTS, getattr(_gpu_limit, "value", _gpu_limit)
):
    logger.warning(warning)


onstart:
    # Without this, each job's submission would fail on its own with the shell's "not found".
    if workflow.executor_plugin.name == "slurm" and shutil.which("sbatch") is None:
        raise WorkflowError(
            "the slurm executor (workflow/profiles/slurm) needs Slurm's sbatch, which is not on "
            "PATH: run on a machine of the cluster (a login node), or load its Slurm module"
        )
    # the profile sets it, but a --config on the command line replaces the profile's
    if workflow.executor_plugin.name == "slurm" and MAX_JOB_MINUTES is None:
        logger.warning(
            "max_job_minutes is not set: each training job asks Slurm for its whole run's time and "
            "is not retried; give your partition's MaxTime (sinfo -o '%P %l') with --config "
            "max_job_minutes=<minutes>"
        )


def canonical(value):
    """`value` with every dict's keys sorted: a rule's params compare by repr, so reordering keys in
    the config file reruns nothing."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


# ---------------------------------------------------------------- data chain


def dataset_config(wildcards):
    return config["datasets"][wildcards.dataset]


def archive_path(wildcards):
    url = dataset_config(wildcards)["url"]
    return layout.downloaded_archive(OUT, wildcards.dataset, archive_name(url))


def local_archive_source(wildcards):
    """A local source archive is an input, so a rule can make it and a change to it is noticed."""
    source = local_source(dataset_config(wildcards)["url"])
    return [] if source is None else str(source)


def synthetic_options(wildcards):
    options = config["synthetic_archives"].get(wildcards.dataset)
    if options is None:
        raise ValueError(
            f"{wildcards.dataset}: no synthetic_archives.{wildcards.dataset} entry in the config"
        )
    return canonical(options)


def data_targets():
    """Every artefact of the data chain, for every dataset in use."""
    targets = []
    for dataset in DATASETS_IN_USE:
        for split in SPLITS:
            targets += [
                layout.split_arrays(OUT, dataset, split),
                layout.image_list(OUT, dataset, split),
                layout.record_file(OUT, dataset, split, "rec"),
                layout.record_file(OUT, dataset, split, "idx"),
            ]
        targets += [
            layout.mean_image(OUT, dataset, height, width)
            for height, width in config["mean_image_sizes"]
        ]
    return targets


# ---------------------------------------------------------------- training


def run_config(wildcards):
    """The config of a training run (an experiment, or one seed of it)."""
    return RUNS[wildcards.run]


def run_outputs(run):
    """The declared outputs of a run's training job (see cifar_repro/layout.py)."""
    return asdict(layout.run_files(OUT, run))


def final_model_files(run):
    """A run's final model, as the init inputs of a job that starts from it: rule release_model's
    links, never rule train's outputs. The Snakemake inside a training job's Slurm allocation may run
    rule train (--allowed-rules train), and it re-plans every train job its inputs come from with
    its own rerun triggers, against the files as they are when the job starts (a checkout since,
    an edited config): with no train job upstream, it can only ever train its own run.
    """
    released = layout.released_model(OUT, run)
    return {"init_symbol": released["symbol"], "init_params": released["params"]}


def pretrained_files(model):
    """Symbol and params of a pretrained model: downloaded, or an experiment's final model."""
    spec = PRETRAINED[model]
    if "experiment" in spec:
        return final_model_files(spec["experiment"])
    return {
        f"init_{part}": layout.pretrained_file(
            OUT, model, archive_name(spec[part]["url"])
        )
        for part in ("symbol", "params")
    }


def pretrained_source(wildcards):
    """The symbol or params entry of a pretrained model that a download is for."""
    for part in ("symbol", "params"):
        source = PRETRAINED[wildcards.model][part]
        if archive_name(source["url"]) == wildcards.file:
            return source
    raise ValueError(
        f"pretrained_models.{wildcards.model} has no file named {wildcards.file}"
    )


def training_inputs(wildcards):
    experiment = run_config(wildcards)
    mean_shape = experiment["data_shape"][1:] if experiment["mean_image"] else None
    data = layout.packed_dataset(OUT, experiment["dataset"], mean_shape)
    inputs = {name: path for name, path in asdict(data).items() if path is not None}
    if "whitening" in experiment:
        inputs["whitening"] = layout.whitening_filters(
            OUT, experiment["dataset"], STEM_SIZE
        )
    init = experiment["init"]
    if init["type"] == "pretrained":
        inputs |= pretrained_files(init["model"])
    elif init["type"] == "experiment":
        # the source's run of the same seed, if it has seeds
        source = init["experiment"]
        if "seeds" in EXPERIMENTS[source]:
            source = layout.seed_run(source, experiment["seed"])
        inputs |= final_model_files(source)
    return inputs


def training_minutes(wildcards):
    """Wall-time limit of a training job (the Slurm executor's `runtime`)."""
    return job_minutes(run_config(wildcards), MAX_JOB_MINUTES)


def train_retries():
    """Rule train's `retries` (which wins over --retries), from the runs' sizes; none in the
    Snakemake inside a job: only the head retries, in a new job."""
    return (
        None
        if workflow.remote_exec
        else training_retries(list(RUNS.values()), MAX_JOB_MINUTES)
    )


def training_nodes(wildcards):
    """Nodes of a training job: more than one only for the slurm launcher (one per worker unless
    `distributed.nodes` says otherwise)."""
    distributed = run_config(wildcards).get("distributed", {})
    if distributed.get("launcher") != "slurm":
        return 1
    return distributed.get("nodes", distributed["workers"])


def srun_steps(wildcards):
    """Slurm resources of a training job whose workers and servers run as srun steps inside its own
    allocation (launcher slurm); none (unset) for every other job. `mpi` tells the executor plugin
    that the job starts its own steps (no `srun -n1` around it), `tasks` makes room for them, and
    `tasks_per_gpu: 0` keeps the plugin from reading `tasks` as tasks per GPU on a GPU job.
    """
    distributed = run_config(wildcards).get("distributed", {})
    if distributed.get("launcher") != "slurm":
        return {}
    return {
        "mpi": "srun",
        "tasks": distributed["workers"] + distributed["servers"],
        "tasks_per_gpu": 0,
    }


def training_env(wildcards):
    """GPU experiments get MXNet for CUDA 11.2 under --sdm conda, unless the run allows CPU stand-ins
    (a machine without GPUs, where mxnet-cu112 cannot even load)."""
    on_gpus = run_config(wildcards)["gpus"] > 0 and not config["allow_cpu_fallback"]
    return "../../envs/train-cu112.yaml" if on_gpus else "../../envs/train.yaml"


def run_targets():
    """Every run's outputs, and its final parameters under MXNet's checkpoint name."""
    return [
        path
        for run, spec in RUNS.items()
        for path in [
            *run_outputs(run).values(),
            layout.numbered_params(OUT, run, spec["num_epochs"]),
        ]
    ]


# ---------------------------------------------------------------- figures, tables, report


def figure_targets():
    return [layout.samples_figure(OUT, dataset) for dataset in DATASETS_IN_USE] + [
        layout.figure(OUT, figure, ext) for figure in FIGURES for ext in ("png", "svg")
    ]


def table_targets():
    if not EXPERIMENTS:
        return []
    tables = ["summary", "params_diff"] + (["claims"] if config["claims"] else [])
    return [layout.table(OUT, table, ext) for table in tables for ext in ("csv", "md")]


def claims_experiment_seeds():
    """The experiments the claims name that this config trains: experiment -> {run: seed}."""
    named = [
        name for claim in config["claims"].values() for name in claim_experiments(claim)
    ]
    return {
        name: {run: spec["seed"] for run, spec in RUNS_OF[name].items()}
        for name in dict.fromkeys(named)
        if name in EXPERIMENTS
    }


def runs_metrics(experiments):
    """metrics.csv of each run of these experiments, in their order, each one's seeds in theirs."""
    return [
        layout.run_files(OUT, run).metrics
        for name in experiments
        for run in RUNS_OF[name]
    ]


def claims_curves():
    return sorted(
        {
            claim["published_curve"]
            for claim in config["claims"].values()
            if claim["kind"] == "matches_curve"
        }
    )


def figure_spec(wildcards):
    return FIGURES[wildcards.figure]


def figure_published_curve(wildcards):
    """The published curve file a figure draws, if any."""
    return figure_spec(wildcards).get("published_curve", {}).get("path", [])


def figure_runs(wildcards):
    """The training runs of each of the figure's experiments, in the spec's order."""
    return {name: list(RUNS_OF[name]) for name in figure_spec(wildcards)["experiments"]}


def figure_metrics(wildcards):
    return runs_metrics(figure_spec(wildcards)["experiments"])


def figure_category(wildcards):
    """Report section: the dataset of the figure's experiments, if they share one."""
    datasets = {
        EXPERIMENTS[name]["dataset"] for name in figure_spec(wildcards)["experiments"]
    }
    return (
        {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}.get(datasets.pop())
        if len(datasets) == 1
        else "Comparisons"
    )


def summary_groups():
    """Experiment groups whose differing hyperparameters the params table shows: each figure's."""
    return {figure: spec["experiments"] for figure, spec in FIGURES.items()}
