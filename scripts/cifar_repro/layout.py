"""Where every file of an experiment lives, under the config's output_dir: the one definition the
rules (and through them the scripts) and the tests use.

An experiment with `seeds: [0, 1, 2]` trains as one run per seed, named `<experiment>/seed<N>`, so
each seed's files sit in a folder of the experiment's (results/experiments/<experiment>/seed1/...);
an experiment without `seeds` is a single run of its own name. The functions below take run names."""

from dataclasses import dataclass


def seed_run(experiment: str, seed: int) -> str:
    return f"{experiment}/seed{seed}"


def experiment_runs(name: str, experiment: dict) -> dict[str, dict]:
    """Run name -> its config: one per seed of `seeds` (with that `seed`), or the experiment itself."""
    if "seeds" not in experiment:
        return {name: experiment}
    shared = {key: value for key, value in experiment.items() if key != "seeds"}
    return {seed_run(name, seed): shared | {"seed": seed} for seed in experiment["seeds"]}


@dataclass(frozen=True)
class ExperimentFiles:
    """The declared outputs of an experiment's training job."""

    metrics: str  # metrics.csv, one row per epoch (see metrics.py)
    symbol: str  # the final network, MXNet symbol JSON
    params: str  # the final parameters
    run: str  # run.json: resolved config, versions, devices, timing


def experiment_dir(output_dir: str, name: str) -> str:
    return f"{output_dir}/experiments/{name}"


def experiment_files(output_dir: str, name: str) -> ExperimentFiles:
    folder = experiment_dir(output_dir, name)
    return ExperimentFiles(
        metrics=f"{folder}/metrics.csv",
        symbol=f"{folder}/model-symbol.json",
        params=f"{folder}/model-final.params",
        run=f"{folder}/run.json",
    )


def training_log(output_dir: str, name: str) -> str:
    """Progress in MXNet's log format (tools/parse_log.py reads it)."""
    return f"{experiment_dir(output_dir, name)}/train.log"


def numbered_params(output_dir: str, name: str, epoch: int | str) -> str:
    """The final parameters as mx.model.load_checkpoint(prefix, epoch) names them: model-0300.params."""
    number = f"{epoch:04d}" if isinstance(epoch, int) else epoch
    return f"{experiment_dir(output_dir, name)}/model-{number}.params"


def checkpoint_dir(output_dir: str, name: str) -> str:
    """Per-epoch checkpoints; not a declared output, so that a failed job's survive for resuming."""
    return f"{output_dir}/checkpoints/{name}"
