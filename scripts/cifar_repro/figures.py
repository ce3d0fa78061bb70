"""Figures of the experiments' training curves and throughput, drawn from their metrics.csv files.

A figure spec (from the config) names a kind, the experiments to show and, optionally, published
accuracies (in %) to draw as labelled reference lines:

    {"title": ..., "kind": "accuracy" | "accuracy_lr" | "stages" | "throughput",
     "experiments": [...], "references": [{"label": ..., "accuracy": ...}]}

- accuracy: train and validation accuracy per epoch, one colour per experiment;
- accuracy_lr: the same over a panel of the learning rate per epoch;
- stages: the experiments are consecutive stages of one run, shown as one curve over the run's epochs;
- throughput: mean training samples/s per experiment.

`plot_data` builds the exact long-format table a figure shows, so tests can compare it with the
metrics without looking at pixels; `draw` turns that table into the figure.
"""

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .errors import InputError  # noqa: E402

log = logging.getLogger("cifar-repro")

# what train.py writes for every dataset; CIFAR-100 adds train_/val_top5_accuracy
REQUIRED_COLUMNS = ["epoch", "lr", "train_accuracy", "train_cross_entropy", "val_accuracy",
                    "val_cross_entropy", "seconds", "samples_per_second"]
SPLIT_COLUMNS = {"train": "train_accuracy", "validation": "val_accuracy"}
SPLIT_LINESTYLES = {"train": "-", "validation": "--"}
KINDS = ("accuracy", "accuracy_lr", "stages", "throughput")
# long dashes in greys, so published accuracies never look like a (short-dashed) validation curve
REFERENCE_LINESTYLE = (0, (8, 4))
REFERENCE_GREYS = ("0.15", "0.45", "0.65")
FIGURE_SIZE = (8, 5)
DPI = 120


# ---------------------------------------------------------------- reading


def load_metrics(path: str | Path) -> pd.DataFrame:
    """An experiment's metrics.csv, checked: the required columns, numbers, epochs 1..N in order and
    accuracies as fractions. `lr` may be empty (NaN): AdaDelta has no learning rate."""
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
    not_numeric = [column for column in metrics.columns if not pd.api.types.is_numeric_dtype(metrics[column])]
    if not_numeric:
        raise InputError(f"{path}: non-numeric values in column(s) {', '.join(not_numeric)}")
    empty = [column for column in REQUIRED_COLUMNS if column != "lr" and metrics[column].isna().any()]
    if empty:
        raise InputError(f"{path}: empty values in column(s) {', '.join(empty)}")
    if metrics["epoch"].tolist() != list(range(1, len(metrics) + 1)):
        raise InputError(f"{path}: epochs are not 1, 2, ..., {len(metrics)} in order")
    accuracies = metrics[[column for column in metrics.columns if column.endswith("accuracy")]].to_numpy()
    if not ((accuracies >= 0) & (accuracies <= 1)).all():
        raise InputError(f"{path}: accuracies must be fractions between 0 and 1")
    return metrics


# ---------------------------------------------------------------- what is plotted


def mean_samples_per_second(metrics: pd.DataFrame) -> float:
    """Mean training throughput; the first epoch (start-up, warm-up) is left out when there are more."""
    epochs = metrics.iloc[1:] if len(metrics) > 1 else metrics
    return float(epochs["samples_per_second"].mean())


def _accuracy_rows(experiment: str, metrics: pd.DataFrame, epoch_offset: int = 0) -> pd.DataFrame:
    """One row per epoch and split: the accuracy in %, and the epoch's learning rate."""
    return pd.concat([
        pd.DataFrame({"experiment": experiment, "epoch": metrics["epoch"] + epoch_offset, "split": split,
                      "accuracy_percent": metrics[column] * 100, "lr": metrics["lr"]})
        for split, column in SPLIT_COLUMNS.items()
    ], ignore_index=True)


def _stage_rows(experiments: list[str], metrics: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The stages' accuracies over the run's continuous epochs: stage k starts after stages 1..k-1."""
    frames, offset = [], 0
    for stage, experiment in enumerate(experiments, start=1):
        frames.append(_accuracy_rows(experiment, metrics[experiment], offset).assign(stage=stage))
        offset += len(metrics[experiment])
    return pd.concat(frames, ignore_index=True)[["experiment", "stage", "epoch", "split", "accuracy_percent"]]


def _throughput_rows(experiments: list[str], metrics: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.DataFrame({
        "experiment": experiments,
        "samples_per_second": [mean_samples_per_second(metrics[name]) for name in experiments],
        "epochs_averaged": [max(len(metrics[name]) - 1, 1) for name in experiments],
    })


def check_spec(spec: dict) -> None:
    """What drawing relies on; the config schema checks the rest."""
    title = spec.get("title")
    if spec.get("kind") not in KINDS:
        raise InputError(f"figure {title!r}: kind {spec.get('kind')!r} is not one of {', '.join(KINDS)}")
    if not spec.get("experiments"):
        raise InputError(f"figure {title!r}: no experiments")
    if spec["kind"] == "throughput" and spec.get("references"):
        raise InputError(f"figure {title!r}: references are accuracies and a throughput figure has none")


def plot_data(spec: dict, metrics: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The long-format table the figure shows, in the spec's experiment order.

    accuracy: experiment, epoch, split (train/validation), accuracy_percent; accuracy_lr adds lr
    (NaN where the optimizer has none); stages: experiment, stage, epoch (continuous over the stages),
    split, accuracy_percent; throughput: experiment, samples_per_second, epochs_averaged.
    """
    check_spec(spec)
    experiments = spec["experiments"]
    missing = [name for name in experiments if name not in metrics]
    if missing:
        raise InputError(f"figure {spec['title']!r}: no metrics given for experiment(s) {', '.join(missing)}")
    if spec["kind"] == "throughput":
        return _throughput_rows(experiments, metrics)
    if spec["kind"] == "stages":
        return _stage_rows(experiments, metrics)
    rows = pd.concat([_accuracy_rows(name, metrics[name]) for name in experiments], ignore_index=True)
    return rows if spec["kind"] == "accuracy_lr" else rows.drop(columns="lr")


# ---------------------------------------------------------------- drawing


def _draw_references(axis: Axes, references: list[dict]) -> list[Line2D]:
    return [axis.axhline(reference["accuracy"], color=REFERENCE_GREYS[i % len(REFERENCE_GREYS)],
                         linestyle=REFERENCE_LINESTYLE, linewidth=1.2,
                         label=f"{reference['label']}: {reference['accuracy']:g} %")
            for i, reference in enumerate(references)]


def _split_handles(colours: dict[str, str] | None = None) -> list[Line2D]:
    """Legend entries of the line styles (coloured when the colour also stands for the split)."""
    return [Line2D([], [], color=(colours or {}).get(split, "0.3"), linestyle=style, label=split)
            for split, style in SPLIT_LINESTYLES.items()]


def _draw_accuracy(axis: Axes, data: pd.DataFrame, colours: dict[str, str]) -> list[Line2D]:
    for (experiment, split), rows in data.groupby(["experiment", "split"], sort=False):
        axis.plot(rows["epoch"], rows["accuracy_percent"], color=colours[experiment],
                  linestyle=SPLIT_LINESTYLES[split], label=f"{experiment} ({split})")
    axis.set(xlabel="epoch", ylabel="accuracy (%)")
    experiment_handles = [Line2D([], [], color=colour, linewidth=2.5, label=name) for name, colour in colours.items()]
    return experiment_handles + _split_handles()


def _draw_learning_rates(axis: Axes, data: pd.DataFrame, colours: dict[str, str]) -> None:
    """The lr of each epoch (held during the epoch, hence steps); optimizers without one are named."""
    rates = data[data["split"] == "train"].dropna(subset=["lr"])
    for experiment, rows in rates.groupby("experiment", sort=False):
        axis.plot(rows["epoch"], rows["lr"], color=colours[experiment], drawstyle="steps-mid")
    if not rates.empty:
        axis.set_yscale("log")  # schedules multiply the rate
    left_out = [name for name in colours if name not in set(rates["experiment"])]
    if left_out:  # a title, not a text in the panel, so it never covers a curve
        axis.set_title(f"no learning rate: {', '.join(left_out)}", loc="right", fontsize="small", color="0.3")
    axis.set(xlabel="epoch", ylabel="learning rate")


def _draw_stages(axis: Axes, data: pd.DataFrame) -> list[Line2D]:
    split_colours = dict(zip(SPLIT_LINESTYLES, sns.color_palette(n_colors=len(SPLIT_LINESTYLES))))
    for split, rows in data.groupby("split", sort=False):
        axis.plot(rows["epoch"], rows["accuracy_percent"], color=split_colours[split],
                  linestyle=SPLIT_LINESTYLES[split], marker=".", label=split)
    last_epochs = data.groupby("stage")["epoch"].max()
    # a boundary between the last epoch of a stage and the first of the next, named after the next
    for stage, last_epoch in last_epochs.iloc[:-1].items():
        boundary = last_epoch + 0.5
        axis.axvline(boundary, color="0.3", linestyle=":", linewidth=1.2)
        next_stage = data.loc[data["stage"] == stage + 1, "experiment"].iloc[0]
        # above the plot frame, where it can cover no curve
        axis.text(boundary, 1.01, f"stage {stage + 1}: {next_stage}", transform=axis.get_xaxis_transform(),
                  ha="left", va="bottom", fontsize="small", color="0.3")
    axis.set(xlabel="epoch (continuous over the stages)", ylabel="accuracy (%)")
    return _split_handles(split_colours)


def _draw_throughput(axis: Axes, data: pd.DataFrame, colours: dict[str, str]) -> None:
    bars = axis.barh(data["experiment"], data["samples_per_second"],
                     color=[colours[name] for name in data["experiment"]])
    axis.bar_label(bars, fmt="%.0f", padding=3)
    axis.invert_yaxis()  # first experiment on top
    axis.set(xlabel="training samples/s (mean over the epochs after the first)", ylabel="")
    axis.margins(x=0.15)  # room for the value labels


def draw(spec: dict, data: pd.DataFrame) -> Figure:
    """The figure of `data` (from `plot_data(spec, ...)`), titled with the spec's title."""
    kind = spec["kind"]
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        if kind == "accuracy_lr":
            figure, (axis, lr_axis) = plt.subplots(2, 1, sharex=True, figsize=FIGURE_SIZE, height_ratios=[3, 1],
                                                   layout="constrained")
        else:
            figure, axis = plt.subplots(figsize=FIGURE_SIZE, layout="constrained")
        colours = dict(zip(spec["experiments"], sns.color_palette(n_colors=len(spec["experiments"]))))
        figure.suptitle(spec["title"])
        if kind == "throughput":
            _draw_throughput(axis, data, colours)
        else:
            handles = _draw_stages(axis, data) if kind == "stages" else _draw_accuracy(axis, data, colours)
            handles += _draw_references(axis, spec.get("references", []))
            if kind == "accuracy_lr":
                _draw_learning_rates(lr_axis, data, colours)
                axis.set_xlabel("")
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            # below the plot: beside it, the legend runs into long titles
            figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), fontsize="small")
    return figure


# ---------------------------------------------------------------- command line


def named_path(argument: str) -> tuple[str, str]:
    """argparse type of a NAME=PATH argument."""
    name, separator, path = argument.partition("=")
    if not (name and separator and path):
        raise argparse.ArgumentTypeError(f"{argument!r} is not NAME=PATH")
    return name, path


def named_paths(pairs: list[tuple[str, str]], option: str) -> dict[str, str]:
    paths: dict[str, str] = {}
    for name, path in pairs:
        if name in paths:
            raise InputError(f"{option}: {name} given twice")
        paths[name] = path
    return paths
