"""The metrics.csv contract: its columns, how a run writes it and how figures and tables read it.

One row per epoch: epoch, lr, then train_ and val_ accuracy and cross_entropy (and top5_accuracy for
datasets of more than 10 classes), seconds and samples_per_second. `lr` is empty for optimizers that
have no learning rate (AdaDelta in MXNet 1.x). Accuracies are fractions.
"""

import csv
from pathlib import Path

import pandas as pd

from .atomic import atomic_path
from .errors import InputError

TOP_K = 5
# MXNet's names of the metrics a run computes -> the names of their columns
COLUMN_OF_MXNET_METRIC = {
    "accuracy": "accuracy",
    "cross-entropy": "cross_entropy",
    f"top_k_accuracy_{TOP_K}": f"top{TOP_K}_accuracy",
}
TIMING_COLUMNS = ["seconds", "samples_per_second"]


def reports_top_k(num_classes: int) -> bool:
    """CIFAR-100 results are quoted with top-5 accuracy too; for 10 classes it says little."""
    return num_classes > 10


def metric_columns(num_classes: int) -> list[str]:
    """The columns of metrics.csv for a dataset of `num_classes` classes, in order."""
    names = ["accuracy", "cross_entropy"] + ([f"top{TOP_K}_accuracy"] if reports_top_k(num_classes) else [])
    return ["epoch", "lr", *(f"train_{n}" for n in names), *(f"val_{n}" for n in names), *TIMING_COLUMNS]


REQUIRED_COLUMNS = metric_columns(num_classes=10)  # every dataset's


def write_metrics(path: str | Path, rows: list[dict], num_classes: int) -> None:
    with atomic_path(path) as partial, open(partial, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=metric_columns(num_classes), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def load_metrics(path: str | Path) -> pd.DataFrame:
    """An experiment's metrics.csv, checked: the required columns, numbers, epochs 1..N in order and
    accuracies as fractions. `lr` may be empty (NaN)."""
    try:
        metrics = pd.read_csv(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such metrics file") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty metrics file (not even a header)") from None
    except pd.errors.ParserError as error:
        raise InputError(f"{path}: not a metrics CSV ({error})") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in metrics.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    if metrics.empty:
        raise InputError(f"{path}: no epochs (only a header)")
    not_numeric = [c for c in metrics.columns if not pd.api.types.is_numeric_dtype(metrics[c])]
    if not_numeric:
        raise InputError(f"{path}: non-numeric values in column(s) {', '.join(not_numeric)}")
    empty = [c for c in REQUIRED_COLUMNS if c != "lr" and metrics[c].isna().any()]
    if empty:
        raise InputError(f"{path}: empty values in column(s) {', '.join(empty)}")
    if metrics["epoch"].tolist() != list(range(1, len(metrics) + 1)):
        raise InputError(f"{path}: epochs are not 1, 2, ..., {len(metrics)} in order")
    accuracies = metrics[[c for c in metrics.columns if c.endswith("accuracy")]].to_numpy()
    if not ((accuracies >= 0) & (accuracies <= 1)).all():
        raise InputError(f"{path}: accuracies must be fractions between 0 and 1")
    return metrics


def mean_samples_per_second(metrics: pd.DataFrame) -> float:
    """Mean training throughput; the first epoch (start-up, warm-up) is left out when there are more."""
    epochs = metrics.iloc[1:] if len(metrics) > 1 else metrics
    return float(epochs["samples_per_second"].mean())


def training_minutes_to(metrics: pd.DataFrame, accuracy: float) -> float | None:
    """Minutes of training (validation left out) until the end of the first epoch whose validation
    accuracy reached `accuracy` (a fraction); None if none did."""
    reached = metrics.index[metrics["val_accuracy"] >= accuracy]
    if reached.empty:
        return None
    return float(metrics["seconds"].cumsum().loc[reached[0]]) / 60


def load_experiment_metrics(
    experiment_runs: dict[str, list[str]], paths: list[str]
) -> dict[str, pd.DataFrame]:
    """Experiment -> the metrics of its runs (its seeds) stacked, with a `run` column; `paths` are
    the runs' metrics.csv files in the order of `experiment_runs`."""
    runs = [(name, run) for name, names in experiment_runs.items() for run in names]
    if len(runs) != len(paths):
        raise InputError(f"{len(paths)} metrics files given for {len(runs)} runs")
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in experiment_runs}
    for (name, run), path in zip(runs, paths, strict=True):
        frames[name].append(load_metrics(path).assign(run=run))
    return {name: pd.concat(stacked, ignore_index=True) for name, stacked in frames.items()}


def runs_of(metrics: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """An experiment's metrics per run, from load_experiment_metrics' stack: run name -> its rows. A
    frame without a `run` column is one run, named ""."""
    if "run" not in metrics:
        return {"": metrics}
    return {str(run): rows.reset_index(drop=True) for run, rows in metrics.groupby("run", sort=False)}
