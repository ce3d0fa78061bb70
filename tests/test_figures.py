"""Figures show exactly what metrics.csv holds (checked on the plotted table and the matplotlib objects,
not on pixels), and the command line writes real PNG/SVG files or fails naming the bad input."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
import pandas as pd
import pytest

import figures
from cli import InputError
from conftest import REPO

BASE_HEADER = ["epoch", "lr", "train_accuracy", "train_cross_entropy", "val_accuracy", "val_cross_entropy",
               "seconds", "samples_per_second"]
CIFAR100_HEADER = ["epoch", "lr", "train_accuracy", "train_cross_entropy", "train_top5_accuracy", "val_accuracy",
                   "val_cross_entropy", "val_top5_accuracy", "seconds", "samples_per_second"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_metrics(path, train, val, lr, samples_per_second, top5=False):
    """A metrics.csv as train.py writes it; an lr of None is left empty (AdaDelta)."""
    header = CIFAR100_HEADER if top5 else BASE_HEADER
    lines = [",".join(header)]
    for epoch, (t, v, rate, speed) in enumerate(zip(train, val, lr, samples_per_second), start=1):
        values = {"epoch": epoch, "lr": "" if rate is None else rate, "train_accuracy": t,
                  "train_cross_entropy": 2.0 / epoch, "train_top5_accuracy": min(1.0, t + 0.3),
                  "val_accuracy": v, "val_cross_entropy": 2.1 / epoch, "val_top5_accuracy": min(1.0, v + 0.3),
                  "seconds": 10.0, "samples_per_second": speed}
        lines.append(",".join(str(values[column]) for column in header))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def metric_files(tmp_path):
    """{experiment: metrics.csv}: two SGD runs, an AdaDelta run, and two CIFAR-100 stages."""
    folder = tmp_path / "experiments"
    return {
        "sgd": write_metrics(folder / "sgd" / "metrics.csv", [0.3, 0.5, 0.6], [0.25, 0.45, 0.55],
                             [0.05, 0.05, 0.05], [900.0, 1000.0, 1100.0]),
        "steplr": write_metrics(folder / "steplr" / "metrics.csv", [0.35, 0.55, 0.7], [0.3, 0.5, 0.62],
                                [0.05, 0.045, 0.0405], [800.0, 1200.0, 1300.0]),
        "adadelta": write_metrics(folder / "adadelta" / "metrics.csv", [0.2, 0.4, 0.5], [0.2, 0.35, 0.45],
                                  [None, None, None], [700.0, 750.0, 760.0]),
        "stage1": write_metrics(folder / "stage1" / "metrics.csv", [0.1, 0.2, 0.3, 0.4], [0.08, 0.18, 0.27, 0.35],
                                [0.05] * 4, [500.0] * 4, top5=True),
        "stage2": write_metrics(folder / "stage2" / "metrics.csv", [0.5, 0.52], [0.4, 0.41], [0.01, 0.01],
                                [510.0, 520.0], top5=True),
    }


@pytest.fixture
def metrics(metric_files):
    return {name: figures.load_metrics(path) for name, path in metric_files.items()}


def spec(kind, experiments, references=()):
    return {"title": f"a {kind} figure", "kind": kind, "experiments": list(experiments),
            "references": list(references)}


def series(data, experiment, split, column="accuracy_percent"):
    rows = data[(data["experiment"] == experiment) & (data["split"] == split)]
    return rows["epoch"].tolist(), rows[column].tolist()


# ---------------------------------------------------------------- load_metrics


def test_load_metrics_reads_both_layouts_and_an_empty_lr(metrics):
    assert list(metrics["stage1"].columns) == CIFAR100_HEADER
    assert list(metrics["sgd"].columns) == BASE_HEADER
    assert metrics["adadelta"]["lr"].isna().all()


@pytest.mark.parametrize("text, complaint", [
    ("", "empty metrics file"),
    (",".join(BASE_HEADER) + "\n", "no epochs"),
    ("epoch,lr,train_accuracy,val_accuracy,seconds,samples_per_second\n1,0.1,0.5,0.5,1,100\n",
     "missing column(s) train_cross_entropy, val_cross_entropy"),
    (",".join(BASE_HEADER) + "\n1,0.1,0.5,2,0.4,2,1,100\n3,0.1,0.5,2,0.4,2,1,100\n", "epochs are not 1, 2"),
    (",".join(BASE_HEADER) + "\n1,0.1,50,2,40,2,1,100\n", "fractions between 0 and 1"),
    (",".join(BASE_HEADER) + "\n1,0.1,0.5,2,,2,1,100\n", "empty values in column(s) val_accuracy"),
    (",".join(BASE_HEADER) + "\n1,0.1,half,2,0.4,2,1,100\n", "non-numeric values in column(s) train_accuracy"),
])
def test_bad_metrics_are_refused_naming_the_file(tmp_path, text, complaint):
    path = tmp_path / "bad" / "metrics.csv"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(InputError) as error:
        figures.load_metrics(path)
    assert str(error.value).startswith(f"{path}: ") and complaint in str(error.value)


# ---------------------------------------------------------------- plot_data


def test_accuracy_data_is_the_metrics_in_percent(metrics):
    data = figures.plot_data(spec("accuracy", ["sgd", "adadelta"]), metrics)
    assert list(data.columns) == ["experiment", "epoch", "split", "accuracy_percent"]
    assert len(data) == 2 * 3 * 2  # experiments x epochs x splits
    for name in ("sgd", "adadelta"):
        for split, column in [("train", "train_accuracy"), ("validation", "val_accuracy")]:
            epochs, accuracies = series(data, name, split)
            assert epochs == [1, 2, 3]
            np.testing.assert_allclose(accuracies, metrics[name][column] * 100)


def test_accuracy_lr_data_keeps_each_epochs_lr_and_adadeltas_empty_one(metrics):
    data = figures.plot_data(spec("accuracy_lr", ["steplr", "adadelta"]), metrics)
    assert list(data.columns) == ["experiment", "epoch", "split", "accuracy_percent", "lr"]
    for split in ("train", "validation"):
        assert series(data, "steplr", split, "lr")[1] == [0.05, 0.045, 0.0405]
        assert np.isnan(series(data, "adadelta", split, "lr")[1]).all()
    np.testing.assert_allclose(series(data, "steplr", "validation")[1], [30, 50, 62])


def test_stages_continue_the_epochs_of_the_previous_stage(metrics):
    data = figures.plot_data(spec("stages", ["stage1", "stage2"]), metrics)
    assert list(data.columns) == ["experiment", "stage", "epoch", "split", "accuracy_percent"]
    validation = data[data["split"] == "validation"]
    assert validation["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert validation["stage"].tolist() == [1, 1, 1, 1, 2, 2]
    assert validation["experiment"].tolist() == ["stage1"] * 4 + ["stage2"] * 2
    expected = pd.concat([metrics["stage1"]["val_accuracy"], metrics["stage2"]["val_accuracy"]]) * 100
    np.testing.assert_allclose(validation["accuracy_percent"], expected)
    np.testing.assert_allclose(data.loc[data["split"] == "train", "accuracy_percent"], [10, 20, 30, 40, 50, 52])


def test_throughput_is_the_mean_without_the_first_epoch(metrics, tmp_path):
    metrics["single"] = figures.load_metrics(
        write_metrics(tmp_path / "single.csv", [0.5], [0.5], [0.1], [640.0]))
    data = figures.plot_data(spec("throughput", ["sgd", "steplr", "single"]), metrics)
    assert data.to_dict("list") == {"experiment": ["sgd", "steplr", "single"],
                                    "samples_per_second": [1050.0, 1250.0, 640.0],  # a single epoch counts
                                    "epochs_averaged": [2, 2, 1]}


def test_an_experiment_without_metrics_is_named(metrics):
    with pytest.raises(InputError, match="no metrics given for experiment\\(s\\) missing_one"):
        figures.plot_data(spec("accuracy", ["sgd", "missing_one"]), metrics)


@pytest.mark.parametrize("bad, complaint", [
    ({"kind": "loss"}, "kind 'loss' is not one of"),
    ({"experiments": []}, "no experiments"),
    ({"kind": "throughput", "references": [{"label": "x", "accuracy": 50}]}, "throughput figure has none"),
])
def test_specs_drawing_cannot_follow_are_refused(metrics, bad, complaint):
    with pytest.raises(InputError, match=complaint):
        figures.plot_data(spec("accuracy", ["sgd"]) | bad, metrics)


# ---------------------------------------------------------------- draw


def legend_texts(figure):
    return [text.get_text() for legend in figure.legends for text in legend.get_texts()]


def horizontal_lines_at(axis):
    """y of every line drawn across the axes (axhline: constant y, x in axes coordinates 0..1)."""
    return [line.get_ydata()[0] for line in axis.lines if list(line.get_xdata()) == [0, 1]]


def test_accuracy_figure_has_title_curves_and_labelled_references(metrics):
    references = [{"label": "Highway", "accuracy": 67.76}, {"label": "DSN", "accuracy": 65.43}]
    figure_spec = spec("accuracy", ["sgd", "adadelta"], references)
    figure = figures.draw(figure_spec, figures.plot_data(figure_spec, metrics))
    (axis,) = figure.axes
    assert figure.get_suptitle() == "a accuracy figure"
    assert horizontal_lines_at(axis) == [67.76, 65.43]
    assert {"sgd", "adadelta", "train", "validation", "Highway: 67.76 %", "DSN: 65.43 %"} <= set(legend_texts(figure))
    curve = next(line for line in axis.lines if line.get_label() == "sgd (validation)")
    np.testing.assert_allclose(curve.get_ydata(), [25, 45, 55])
    assert axis.get_ylabel() == "accuracy (%)"


def test_accuracy_lr_figure_leaves_adadelta_out_of_the_lr_panel(metrics):
    figure_spec = spec("accuracy_lr", ["steplr", "adadelta"])
    figure = figures.draw(figure_spec, figures.plot_data(figure_spec, metrics))
    accuracy_axis, lr_axis = figure.axes
    assert len(accuracy_axis.lines) == 4  # 2 experiments x 2 splits
    (rates,) = lr_axis.lines
    np.testing.assert_allclose(rates.get_ydata(), [0.05, 0.045, 0.0405])
    assert lr_axis.get_yscale() == "log"
    assert "no learning rate: adadelta" in lr_axis.get_title(loc="right")


def test_lr_panel_of_adadelta_alone_says_so(metrics):
    figure_spec = spec("accuracy_lr", ["adadelta"])
    figure = figures.draw(figure_spec, figures.plot_data(figure_spec, metrics))
    assert len(figure.axes[1].lines) == 0 and "adadelta" in figure.axes[1].get_title(loc="right")


def test_stages_figure_marks_the_boundary_between_stages(metrics):
    figure_spec = spec("stages", ["stage1", "stage2"], [{"label": "published (stage 2)", "accuracy": 75.68}])
    figure = figures.draw(figure_spec, figures.plot_data(figure_spec, metrics))
    (axis,) = figure.axes
    boundaries = [line.get_xdata()[0] for line in axis.lines if list(line.get_ydata()) == [0, 1]]
    assert boundaries == [4.5]
    assert any("stage2" in text.get_text() for text in axis.texts)
    validation = next(line for line in axis.lines if line.get_label() == "validation")
    assert list(validation.get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert horizontal_lines_at(axis) == [75.68]
    assert "published (stage 2): 75.68 %" in legend_texts(figure)


def test_throughput_figure_bars_are_the_means(metrics):
    figure_spec = spec("throughput", ["sgd", "adadelta"])
    figure = figures.draw(figure_spec, figures.plot_data(figure_spec, metrics))
    (axis,) = figure.axes
    assert [bar.get_width() for bar in axis.patches] == [1050.0, 755.0]
    assert [label.get_text() for label in axis.get_yticklabels()] == ["sgd", "adadelta"]
    assert figure.get_suptitle() == "a throughput figure"


# ---------------------------------------------------------------- command line


def cli_arguments(figure_spec, metric_files, outputs, log):
    return ["--spec-json", json.dumps(figure_spec),
            "--metrics", *[f"{name}={path}" for name, path in metric_files.items()],
            *[argument for output in outputs for argument in ("--output", str(output))], "--log", str(log)]


def test_command_line_writes_png_and_svg(tmp_path, metric_files):
    figure_spec = spec("accuracy", ["sgd", "adadelta"], [{"label": "published", "accuracy": 80.0}])
    png, svg = tmp_path / "figures" / "acc.png", tmp_path / "figures" / "acc.svg"
    chosen = {name: metric_files[name] for name in figure_spec["experiments"]}
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "figures.py"),
                             *cli_arguments(figure_spec, chosen, [png, svg], tmp_path / "figure.log")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert png.read_bytes().startswith(PNG_SIGNATURE) and png.stat().st_size > 20_000
    root = ElementTree.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "a accuracy figure" in svg.read_text()  # svg.fonttype "path" keeps the text in a comment
    assert sorted(p.name for p in png.parent.iterdir()) == ["acc.png", "acc.svg"]  # no partial files


@pytest.mark.parametrize("experiments, given, complaint", [
    (["sgd", "adadelta"], ["sgd"], "no metrics given for experiment(s) adadelta"),
    (["sgd"], ["sgd", "adadelta"], "--metrics: experiment(s) adadelta are not in figure"),
])
def test_command_line_names_a_missing_or_extra_experiment(tmp_path, metric_files, experiments, given, complaint):
    output, log = tmp_path / "out.png", tmp_path / "figure.log"
    arguments = cli_arguments(spec("accuracy", experiments), {name: metric_files[name] for name in given},
                              [output], log)
    assert figures.main(arguments) == 1
    assert complaint in log.read_text()
    assert not output.exists()


def test_command_line_names_the_file_missing_a_column(tmp_path, metric_files):
    broken = tmp_path / "broken" / "metrics.csv"
    broken.parent.mkdir()
    broken.write_text(metric_files["sgd"].read_text().replace("val_accuracy", "val_acc"))
    output, log = tmp_path / "out.png", tmp_path / "figure.log"
    assert figures.main(cli_arguments(spec("accuracy", ["sgd"]), {"sgd": broken}, [output], log)) == 1
    assert f"{broken}: missing column(s) val_accuracy" in log.read_text()
    assert not output.exists()


def test_command_line_refuses_an_unknown_figure_format(tmp_path, metric_files):
    log = tmp_path / "figure.log"
    arguments = cli_arguments(spec("accuracy", ["sgd"]), {"sgd": metric_files["sgd"]}, [tmp_path / "out.xyz"], log)
    assert figures.main(arguments) == 1
    assert "--output" in log.read_text() and "out.xyz" in log.read_text()
