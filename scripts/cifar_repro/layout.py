"""Where every file lives under the config's output_dir: the one definition the rules (and through
them the scripts), the benchmarks and the tests use. The functions take wildcard patterns too
(`split_arrays(OUT, "{dataset}", "{split}")`), which is how the rules declare their files.

Data: each dataset's archive, arrays, exported images, packed records and mean images sit in a folder
of its own (results/cifar10/...).

Training: an experiment is the configured group of seeds, a run one training job of it. An
experiment with `seeds: [0, 1, 2]` trains as one run per seed, named `<experiment>/seed<N>`, so each
seed's files sit in a folder of the experiment's (results/experiments/<experiment>/seed1/...); an
experiment without `seeds` is a single run of its own name. The functions below take run names."""

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "test")  # the archives' splits; training validates on the test split

# ---------------------------------------------------------------- datasets


def dataset_dir(output_dir: str | Path, dataset: str) -> str:
    return f"{output_dir}/{dataset}"


def downloaded_archive(output_dir: str | Path, dataset: str, archive: str) -> str:
    """The dataset's archive as downloaded (or copied from a local source), under its own name."""
    return f"{dataset_dir(output_dir, dataset)}/download/{archive}"


def synthetic_archive(output_dir: str | Path, dataset: str) -> str:
    """An archive the workflow generates in the official layout (the demo's data)."""
    return f"{output_dir}/synthetic/{dataset}.tar.gz"


def split_arrays(output_dir: str | Path, dataset: str, split: str) -> str:
    """A split's images and labels as numpy arrays, unpickled from the archive."""
    return f"{dataset_dir(output_dir, dataset)}/arrays/{split}.npz"


def image_folder(output_dir: str | Path, dataset: str, split: str) -> str:
    """A split's PNGs, one folder per class."""
    return f"{dataset_dir(output_dir, dataset)}/images/{split}"


def image_list(output_dir: str | Path, dataset: str, split: str) -> str:
    """im2rec's .lst of a split's PNGs: index, label, path."""
    return f"{image_folder(output_dir, dataset, split)}.lst"


def record_file(output_dir: str | Path, dataset: str, split: str, ext: str = "rec") -> str:
    """A split packed by im2rec: `rec` (the records) or `idx` (their index)."""
    return f"{dataset_dir(output_dir, dataset)}/rec/{split}.{ext}"


def mean_image(output_dir: str | Path, dataset: str, height: int | str, width: int | str) -> str:
    """The training split's mean image, centre-cropped to height x width, in MXNet's NDArray format."""
    return f"{dataset_dir(output_dir, dataset)}/mean_{height}x{width}.bin"


def whitening_filters(output_dir: str | Path, dataset: str, size: int | str) -> str:
    """The whitening filters of a size x size stem, from the training split (whitening.py)."""
    return f"{dataset_dir(output_dir, dataset)}/whitening_{size}x{size}.npy"


@dataclass(frozen=True)
class PackedDataset:
    """What a training run reads: both splits' records, and the mean image it subtracts, if any."""

    train_rec: str
    train_idx: str
    val_rec: str  # the test split
    val_idx: str
    mean: str | None = None


def packed_dataset(
    output_dir: str | Path, dataset: str, mean_shape: tuple[int, int] | None = None
) -> PackedDataset:
    """The packed splits of `dataset`; with `mean_shape` (height, width), its mean image of that size."""
    return PackedDataset(
        *(record_file(output_dir, dataset, split, ext) for split in SPLITS for ext in ("rec", "idx")),
        mean=mean_image(output_dir, dataset, *mean_shape) if mean_shape else None,
    )


def pretrained_file(output_dir: str | Path, model: str, file: str) -> str:
    """A downloaded file (symbol or params) of a pretrained model."""
    return f"{output_dir}/pretrained/{model}/{file}"


# ---------------------------------------------------------------- training runs


def seed_run(experiment: str, seed: int) -> str:
    return f"{experiment}/seed{seed}"


def experiment_runs(name: str, experiment: dict) -> dict[str, dict]:
    """Run name -> its config: one per seed of `seeds` (with that `seed`), or the experiment itself."""
    if "seeds" not in experiment:
        return {name: experiment}
    shared = {key: value for key, value in experiment.items() if key != "seeds"}
    return {seed_run(name, seed): shared | {"seed": seed} for seed in experiment["seeds"]}


@dataclass(frozen=True)
class RunFiles:
    """The declared outputs of a run's training job."""

    metrics: str  # metrics.csv, one row per epoch (see metrics.py)
    symbol: str  # the final network, MXNet symbol JSON
    params: str  # the final parameters
    run: str  # run.json: resolved config, versions, devices, timing


def run_dir(output_dir: str | Path, run: str) -> str:
    return f"{output_dir}/experiments/{run}"


def run_files(output_dir: str | Path, run: str) -> RunFiles:
    folder = run_dir(output_dir, run)
    return RunFiles(
        metrics=f"{folder}/metrics.csv",
        symbol=f"{folder}/model-symbol.json",
        params=f"{folder}/model-final.params",
        run=f"{folder}/run.json",
    )


def training_log(output_dir: str | Path, run: str) -> str:
    """Progress in MXNet's log format (tools/parse_log.py reads it)."""
    return f"{run_dir(output_dir, run)}/train.log"


def numbered_params(output_dir: str | Path, run: str, epoch: int | str) -> str:
    """The final parameters as mx.model.load_checkpoint(prefix, epoch) names them: model-0300.params."""
    number = f"{epoch:04d}" if isinstance(epoch, int) else epoch
    return f"{run_dir(output_dir, run)}/model-{number}.params"


def released_model(output_dir: str | Path, run: str) -> dict[str, str]:
    """A run's final model as the runs that start from it read it: hard links that the local rule
    release_model makes, never rule train's own outputs (see final_model_files in common.smk)."""
    folder = f"{output_dir}/models/{run}"
    return {"symbol": f"{folder}/model-symbol.json", "params": f"{folder}/model-final.params"}


def checkpoint_dir(output_dir: str | Path, run: str) -> str:
    """Per-epoch checkpoints; not a declared output, so that a failed job's survive for resuming."""
    return f"{output_dir}/checkpoints/{run}"


def distributed_dir(checkpoint_folder: str | Path) -> str:
    """A distributed job's own files in its run's checkpoint folder: the job file, each rank's
    launcher task and, beyond rank 0, each worker's log."""
    return f"{checkpoint_folder}/distributed"


# ---------------------------------------------------------------- results


def samples_figure(output_dir: str | Path, dataset: str) -> str:
    """The first training images of a dataset, in a grid."""
    return f"{output_dir}/figures/{dataset}_samples.png"


def figure(output_dir: str | Path, name: str, ext: str) -> str:
    """A comparison figure of the config's `figures` (png or svg)."""
    return f"{output_dir}/figures/{name}.{ext}"


def table(output_dir: str | Path, name: str, ext: str) -> str:
    """A results table (csv or md): summary, params_diff, claims."""
    return f"{output_dir}/tables/{name}.{ext}"
