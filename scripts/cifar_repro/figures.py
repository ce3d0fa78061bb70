"""Figures of the experiments' training curves and throughput, drawn from their metrics.csv files.

A figure spec (from the config) names a kind, the experiments to show and, optionally, published
accuracies (in %) to draw as labelled reference lines:

    {"title": ..., "kind": "accuracy" | "accuracy_lr" | "stages" | "throughput",
     "experiments": [...], "references": [{"label": ..., "accuracy": ...}]}

- accuracy: train (solid) and validation (dashed) accuracy per epoch, one colour per experiment;
- accuracy_lr: the same over a panel of the learning rate per epoch;
- stages: the experiments are consecutive stages of one run, shown as one curve over the run's epochs;
- throughput: mean training samples/s per experiment.

An experiment with several seeds comes as its runs' metrics stacked, with a `run` column
(`metrics.load_experiment_metrics`).

`plot_data` builds the tidy long-format table a figure shows, so tests can compare it with the metrics
without looking at pixels:

- accuracy: experiment, epoch, split (train/validation), accuracy_percent;
- accuracy_lr: the same and lr (NaN where the optimizer has none);
- stages: experiment, stage, epoch (continuous over the stages), split, accuracy_percent, source
  ("measured", or the label of the spec's `published_curve`, a config/published/*.csv curve drawn
  in grey);
- throughput: experiment, samples_per_second, epochs_averaged (a row per run).

`draw` hands that table to seaborn's figure-level functions, which average the rows of an x value and
draw their standard deviation as a band (none with a single row), so several seeds per experiment need
no change here. `save_figure` writes the figure in the formats its paths' suffixes name.
"""

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation, MaxNLocator  # noqa: E402

from .atomic import atomic_path  # noqa: E402
from .errors import InputError  # noqa: E402
from .metrics import mean_samples_per_second, runs_of  # noqa: E402

SPLIT_COLUMNS = {"train": "train_accuracy", "validation": "val_accuracy"}
# train solid, validation dashed, as the report's caption says
SPLIT_DASHES = {"train": "", "validation": (4, 1.5)}
# long dashes in greys, so published accuracies never look like a (short-dashed) validation curve
REFERENCE_DASHES = (0, (8, 4))
REFERENCE_GREYS = ("0.15", "0.45", "0.65")
REFERENCES_HEADING = "published"
MEASURED = "measured"  # the source of the experiments' own rows in a stages table
STAGE_COLUMNS = ["experiment", "stage", "epoch", "split", "accuracy_percent", "source"]
PUBLISHED_CURVE_GREY = "0.55"
FIGURE_WIDTH, FIGURE_HEIGHT = 9.0, 5.0  # inches, legend included
DPI = 120


# ---------------------------------------------------------------- what is plotted


def _accuracy_rows(experiment: str, metrics: pd.DataFrame, epoch_offset: int = 0) -> pd.DataFrame:
    """One row per epoch and split: the accuracy in %, and the epoch's learning rate."""
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "experiment": experiment,
                    "epoch": metrics["epoch"] + epoch_offset,
                    "split": split,
                    "accuracy_percent": metrics[column] * 100,
                    "lr": metrics["lr"],
                }
            )
            for split, column in SPLIT_COLUMNS.items()
        ],
        ignore_index=True,
    )


def _accuracy_lr_data(experiments: list[str], metrics: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([_accuracy_rows(name, metrics[name]) for name in experiments], ignore_index=True)


def _accuracy_data(experiments: list[str], metrics: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return _accuracy_lr_data(experiments, metrics).drop(columns="lr")


def _stage_data(experiments: list[str], metrics: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The stages' accuracies over the run's continuous epochs: stage k starts after stages 1..k-1."""
    frames, offset = [], 0
    for stage, experiment in enumerate(experiments, start=1):
        frames.append(_accuracy_rows(experiment, metrics[experiment], offset).assign(stage=stage))
        offset += int(metrics[experiment]["epoch"].max())
    stages = pd.concat(frames, ignore_index=True).assign(source=MEASURED)
    return stages[STAGE_COLUMNS]


def _published_stage_rows(curve: pd.DataFrame, label: str) -> pd.DataFrame:
    """A published curve (published.load_curve) as rows of the stages table, its source `label`. The
    curve follows the run: an earlier stage's epochs from where the next stage starts are left out
    (the CIFAR-100 notebook printed a 39th stage-1 epoch that its stage 2 did not start from)."""
    next_start = curve.groupby("stage")["continuous_epoch"].min().shift(-1)
    curve = curve[curve["continuous_epoch"] < curve["stage"].map(next_start).fillna(float("inf"))]
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "experiment": label,
                    "stage": curve["stage"],
                    "epoch": curve["continuous_epoch"],
                    "split": split,
                    "accuracy_percent": curve[column] * 100,
                    "source": label,
                }
            )
            for split, column in SPLIT_COLUMNS.items()
        ],
        ignore_index=True,
    )


def _throughput_data(experiments: list[str], metrics: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per run (a seed of an experiment, or the experiment)."""
    rows = [
        {
            "experiment": name,
            "samples_per_second": mean_samples_per_second(run),
            "epochs_averaged": max(len(run) - 1, 1),
        }
        for name in experiments
        for run in runs_of(metrics[name]).values()
    ]
    return pd.DataFrame(rows, columns=["experiment", "samples_per_second", "epochs_averaged"])


# ---------------------------------------------------------------- drawing


def _figure_size(rows: int = 1) -> dict:
    """relplot/catplot's size arguments (per panel) for a figure of FIGURE_WIDTH x FIGURE_HEIGHT."""
    height = FIGURE_HEIGHT / rows
    return {"height": height, "aspect": FIGURE_WIDTH / height}


def _curves(
    spec: dict, data: pd.DataFrame, y: str, hue: str, hue_order: list[str], **options
) -> sns.FacetGrid:
    """Lines over the epochs, train solid and validation dashed, and the spec's references across the
    first panel; the rows of an x value are averaged, with their standard deviation as a band."""
    grid = sns.relplot(
        data=data,
        kind="line",
        x="epoch",
        y=y,
        hue=hue,
        hue_order=hue_order,
        style="split",
        style_order=list(SPLIT_DASHES),
        dashes=SPLIT_DASHES,
        errorbar="sd",
        # drawn in the axes first, then moved beside them by _legend_with_references
        facet_kws={"legend_out": False, **options.pop("facet_kws", {})},
        **options,
    )
    for axis in grid.axes.flat:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    references = _draw_references(grid.axes.flat[0], spec.get("references", []))
    _legend_with_references(grid, {hue, "split"}, references)
    return grid


def _draw_references(axis: Axes, references: list[dict]) -> list[Line2D]:
    return [
        axis.axhline(
            reference["accuracy"],
            color=REFERENCE_GREYS[i % len(REFERENCE_GREYS)],
            linestyle=REFERENCE_DASHES,
            linewidth=1.2,
            label=f"{reference['label']}: {reference['accuracy']:g} %",
        )
        for i, reference in enumerate(references)
    ]


def _legend_with_references(grid: sns.FacetGrid, headings: set[str], references: list[Line2D]) -> None:
    """seaborn's legend of the curves (its sections headed by the `headings` columns) and a section of
    the reference lines, beside the first panel: inside, it would cover curves."""
    curves = grid.legend
    title = curves.get_title().get_text()  # seaborn's heading when hue and style are the same column
    labels = ([title] if title else []) + [text.get_text() for text in curves.texts]
    entries = {
        text.get_text(): handle
        for text, handle in zip(curves.texts, curves.legend_handles, strict=True)
        if text.get_text() not in headings
    }
    if references:
        labels += [REFERENCES_HEADING, *(line.get_label() for line in references)]
        entries |= {line.get_label(): line for line in references}
    # an invisible handle is what makes add_legend show a label as a section heading
    entries |= {label: Line2D([], [], visible=False) for label in labels if label not in entries}
    curves.remove()
    grid.add_legend(
        legend_data=entries,
        label_order=labels,
        title="",
        adjust_subtitles=True,
        loc="upper left",
        bbox_to_anchor=(1.02, 1),
        frameon=False,
    )


def _draw_accuracy(spec: dict, data: pd.DataFrame) -> sns.FacetGrid:
    grid = _curves(spec, data, "accuracy_percent", "experiment", spec["experiments"], **_figure_size())
    grid.set_axis_labels("epoch", "accuracy (%)")
    return grid


class _PlainLogFormatter(LogFormatterSciNotation):
    """Labels the ticks matplotlib's log-scale formatter labels, as plain numbers (0.045, not 4.5 x 10^-2)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def _draw_accuracy_lr(spec: dict, data: pd.DataFrame) -> sns.FacetGrid:
    """Accuracy over a panel of the learning rate: one tidy frame of both quantities, a row of panels
    per quantity. The lr is the same for both splits, so it is drawn once, as the train split's."""
    quantities = data.melt(
        id_vars=["experiment", "epoch", "split"],
        value_vars=["accuracy_percent", "lr"],
        var_name="quantity",
    )
    is_lr = quantities["quantity"] == "lr"
    quantities = quantities[~is_lr | ((quantities["split"] == "train") & quantities["value"].notna())]
    grid = _curves(
        spec,
        quantities,
        "value",
        "experiment",
        spec["experiments"],
        row="quantity",
        row_order=["accuracy_percent", "lr"],  # the lr panel even when no experiment has an lr
        facet_kws={"sharey": False, "gridspec_kws": {"height_ratios": [3, 1]}},
        **_figure_size(rows=2),
    )
    grid.set_titles(row_template="")
    accuracy_axis, lr_axis = grid.axes.flat
    accuracy_axis.set_ylabel("accuracy (%)")
    lr_axis.set(xlabel="epoch", ylabel="learning rate")
    if lr_axis.lines:
        lr_axis.set_yscale("log")  # schedules multiply the rate
        lr_axis.yaxis.set_major_formatter(_PlainLogFormatter())
        lr_axis.yaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))
    else:
        lr_axis.set_yticks([])  # an empty panel's 0..1 would read as learning rates
    with_lr = set(quantities.loc[is_lr, "experiment"])
    without_lr = [name for name in spec["experiments"] if name not in with_lr]
    if without_lr:  # a title, not a text in the panel, so it never covers a curve
        lr_axis.set_title(
            f"no learning rate: {', '.join(without_lr)}", loc="right", fontsize="small", color="0.3"
        )
    return grid


def _draw_stages(spec: dict, data: pd.DataFrame) -> sns.FacetGrid:
    """The measured stages in colour and a published curve, if any, in grey: train solid, validation
    dashed for both."""
    sources = list(dict.fromkeys(data["source"]))
    palette = {source: PUBLISHED_CURVE_GREY for source in sources} | {MEASURED: "C0"}
    grid = _curves(
        spec, data, "accuracy_percent", "source", sources, palette=palette, marker=".", **_figure_size()
    )
    (axis,) = grid.axes.flat
    grid.set_axis_labels("epoch (continuous over the stages)", "accuracy (%)")
    # a boundary between the last epoch of a stage and the first of the next, named after the next
    measured = data[data["source"] == MEASURED]
    last_epochs = measured.groupby("stage")["epoch"].max()
    for stage, last_epoch in last_epochs.iloc[:-1].items():
        boundary = last_epoch + 0.5
        axis.axvline(boundary, color="0.3", linestyle=":", linewidth=1.2)
        next_stage = measured.loc[measured["stage"] == stage + 1, "experiment"].iloc[0]
        # above the plot frame, where it can cover no curve
        axis.text(
            boundary,
            1.01,
            f"stage {stage + 1}: {next_stage}",
            transform=axis.get_xaxis_transform(),
            ha="left",
            va="bottom",
            fontsize="small",
            color="0.3",
        )
    return grid


def _draw_throughput(spec: dict, data: pd.DataFrame) -> sns.FacetGrid:
    """Horizontal bars, the first experiment on top, each labelled with its value."""
    grid = sns.catplot(
        data=data,
        kind="bar",
        x="samples_per_second",
        y="experiment",
        hue="experiment",
        order=spec["experiments"],
        hue_order=spec["experiments"],
        errorbar="sd",
        legend=False,
        **_figure_size(),
    )
    (axis,) = grid.axes.flat
    for bars in axis.containers:
        axis.bar_label(bars, fmt="%.0f", padding=3)
    axis.margins(x=0.12)  # room for the value labels
    grid.set_axis_labels("training samples/s (mean over the epochs after the first)", "")
    return grid


class FigureKind(NamedTuple):
    """How a kind of figure builds its table from the metrics, and draws it."""

    data: Callable[[list[str], dict[str, pd.DataFrame]], pd.DataFrame]
    draw: Callable[[dict, pd.DataFrame], sns.FacetGrid]


# the config schema lists the same kinds
KINDS = {
    "accuracy": FigureKind(_accuracy_data, _draw_accuracy),
    "accuracy_lr": FigureKind(_accuracy_lr_data, _draw_accuracy_lr),
    "stages": FigureKind(_stage_data, _draw_stages),
    "throughput": FigureKind(_throughput_data, _draw_throughput),
}


# ---------------------------------------------------------------- the module's functions


def check_spec(spec: dict) -> None:
    """What drawing relies on; the config schema checks the rest."""
    title = spec.get("title")
    if spec.get("kind") not in KINDS:
        raise InputError(f"figure {title!r}: kind {spec.get('kind')!r} is not one of {', '.join(KINDS)}")
    if not spec.get("experiments"):
        raise InputError(f"figure {title!r}: no experiments")
    if spec["kind"] == "throughput" and spec.get("references"):
        raise InputError(f"figure {title!r}: references are accuracies and a throughput figure has none")
    if "published_curve" in spec and spec["kind"] != "stages":
        raise InputError(f"figure {title!r}: a published curve is drawn in a stages figure only")


def plot_data(
    spec: dict, metrics: dict[str, pd.DataFrame], published_curve: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The long-format table the figure shows (see the module's docstring), in the spec's experiment
    order; `metrics` maps each experiment to its metrics.csv as `metrics.load_metrics` reads it, and
    `published_curve` is the spec's `published_curve` file as `published.load_curve` reads it."""
    check_spec(spec)
    experiments = spec["experiments"]
    missing = [name for name in experiments if name not in metrics]
    if missing:
        raise InputError(f"figure {spec['title']!r}: no metrics given for experiment(s) {', '.join(missing)}")
    data = KINDS[spec["kind"]].data(experiments, metrics)
    if "published_curve" in spec:
        if published_curve is None:
            raise InputError(f"figure {spec['title']!r}: its published curve was not given")
        data = pd.concat([data, _published_stage_rows(published_curve, spec["published_curve"]["label"])])
    return data.reset_index(drop=True)


def draw(spec: dict, data: pd.DataFrame) -> Figure:
    """The figure of `data` (from `plot_data(spec, ...)`), titled with the spec's title."""
    check_spec(spec)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        grid = KINDS[spec["kind"]].draw(spec, data)
        figure = grid.figure
        figure.suptitle(spec["title"])
        # makes room for the title, the legend beside the panels and the texts above them
        figure.set_layout_engine("constrained")
    return figure


def save_figure(figure: Figure, paths: list[str]) -> None:
    """Write `figure` to each path in the format its suffix names (.png, .svg, ...), each file whole or
    not at all, then close the figure."""
    try:
        supported = figure.canvas.get_supported_filetypes()
        formats = [Path(path).suffix[1:].lower() for path in paths]
        for path, file_format in zip(paths, formats, strict=True):
            if file_format not in supported:
                raise InputError(f"{path}: the suffix names no figure format ({', '.join(supported)})")
        for path, file_format in zip(paths, formats, strict=True):
            with atomic_path(path) as partial:
                figure.savefig(partial, format=file_format, dpi=DPI)
    finally:
        plt.close(figure)
