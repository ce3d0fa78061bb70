"""Figures show exactly what metrics.csv holds (checked on the plotted table and the matplotlib objects,
not on pixels), their legends and texts cover nothing, and save_figure writes real PNG/SVG files whole
or fails naming the bad path."""

import re
import xml.etree.ElementTree as ElementTree

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from matplotlib.collections import PolyCollection

from cifar_repro import figures, metrics, published
from cifar_repro.errors import InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADER = ",".join(metrics.REQUIRED_COLUMNS)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def write_run(path, train, val, lr, samples_per_second, num_classes=10):
    """A metrics.csv as a training run writes it; an lr of None is left empty (AdaDelta)."""
    rows = [
        {
            "epoch": epoch,
            "lr": rate,
            "train_accuracy": t,
            "train_cross_entropy": 2.0 / epoch,
            "train_top5_accuracy": min(1.0, t + 0.3),
            "val_accuracy": v,
            "val_cross_entropy": 2.1 / epoch,
            "val_top5_accuracy": min(1.0, v + 0.3),
            "seconds": 10.0,
            "samples_per_second": speed,
        }
        for epoch, (t, v, rate, speed) in enumerate(zip(train, val, lr, samples_per_second, strict=True), 1)
    ]
    columns = metrics.metric_columns(num_classes)
    metrics.write_metrics(path, [{key: row[key] for key in columns} for row in rows], num_classes)
    return path


@pytest.fixture
def metric_files(tmp_path):
    """{experiment: metrics.csv}: two SGD runs, an AdaDelta run, and two CIFAR-100 stages."""
    folder = tmp_path / "experiments"
    return {
        "sgd": write_run(
            folder / "sgd.csv", [0.3, 0.5, 0.6], [0.25, 0.45, 0.55], [0.05] * 3, [900.0, 1000.0, 1100.0]
        ),
        "steplr": write_run(
            folder / "steplr.csv",
            [0.35, 0.55, 0.7],
            [0.3, 0.5, 0.62],
            [0.05, 0.045, 0.0405],
            [800.0, 1200.0, 1300.0],
        ),
        "adadelta": write_run(
            folder / "adadelta.csv", [0.2, 0.4, 0.5], [0.2, 0.35, 0.45], [None] * 3, [700.0, 750.0, 760.0]
        ),
        "stage1": write_run(
            folder / "stage1.csv",
            [0.1, 0.2, 0.3, 0.4],
            [0.08, 0.18, 0.27, 0.35],
            [0.05] * 4,
            [500.0] * 4,
            num_classes=100,
        ),
        "stage2": write_run(
            folder / "stage2.csv", [0.5, 0.52], [0.4, 0.41], [0.01] * 2, [510.0, 520.0], num_classes=100
        ),
    }


@pytest.fixture
def runs(metric_files):
    return {name: metrics.load_metrics(path) for name, path in metric_files.items()}


def spec(kind, experiments, references=()):
    return {
        "title": f"a {kind} figure",
        "kind": kind,
        "experiments": list(experiments),
        "references": list(references),
    }


def series(data, experiment, split, column="accuracy_percent"):
    rows = data[(data["experiment"] == experiment) & (data["split"] == split)]
    return rows["epoch"].tolist(), rows[column].tolist()


def drawn(figure_spec, runs):
    return figures.draw(figure_spec, figures.plot_data(figure_spec, runs))


# ---------------------------------------------------------------- load_metrics, which figures read through


def test_load_metrics_reads_both_layouts_and_an_empty_lr(runs):
    assert list(runs["stage1"].columns) == metrics.metric_columns(100)
    assert list(runs["sgd"].columns) == metrics.REQUIRED_COLUMNS
    assert runs["adadelta"]["lr"].isna().all()


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("", "empty metrics file"),
        (HEADER + "\n", "no epochs"),
        (
            "epoch,lr,train_accuracy,val_accuracy,seconds,samples_per_second\n1,0.1,0.5,0.5,1,100\n",
            "missing column(s) train_cross_entropy, val_cross_entropy",
        ),
        (HEADER + "\n1,0.1,0.5,2,0.4,2,1,100\n3,0.1,0.5,2,0.4,2,1,100\n", "epochs are not 1, 2"),
        (HEADER + "\n1,0.1,50,2,40,2,1,100\n", "fractions between 0 and 1"),
        (HEADER + "\n1,0.1,0.5,2,,2,1,100\n", "empty values in column(s) val_accuracy"),
        (HEADER + "\n1,0.1,half,2,0.4,2,1,100\n", "non-numeric values in column(s) train_accuracy"),
    ],
)
def test_bad_metrics_are_refused_naming_the_file(tmp_path, text, complaint):
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    with pytest.raises(InputError) as error:
        metrics.load_metrics(path)
    assert str(error.value).startswith(f"{path}: ") and complaint in str(error.value)


# ---------------------------------------------------------------- plot_data


def test_accuracy_data_is_the_metrics_in_percent(runs):
    data = figures.plot_data(spec("accuracy", ["sgd", "adadelta"]), runs)
    assert list(data.columns) == ["experiment", "epoch", "split", "accuracy_percent"]
    assert len(data) == 2 * 3 * 2  # experiments x epochs x splits
    for name in ("sgd", "adadelta"):
        for split, column in [("train", "train_accuracy"), ("validation", "val_accuracy")]:
            epochs, accuracies = series(data, name, split)
            assert epochs == [1, 2, 3]
            np.testing.assert_allclose(accuracies, runs[name][column] * 100)


def test_accuracy_lr_data_keeps_each_epochs_lr_and_adadeltas_empty_one(runs):
    data = figures.plot_data(spec("accuracy_lr", ["steplr", "adadelta"]), runs)
    assert list(data.columns) == ["experiment", "epoch", "split", "accuracy_percent", "lr"]
    for split in ("train", "validation"):
        assert series(data, "steplr", split, "lr")[1] == [0.05, 0.045, 0.0405]
        assert np.isnan(series(data, "adadelta", split, "lr")[1]).all()
    np.testing.assert_allclose(series(data, "steplr", "validation")[1], [30, 50, 62])


def test_stages_continue_the_epochs_of_the_previous_stage(runs):
    data = figures.plot_data(spec("stages", ["stage1", "stage2"]), runs)
    assert list(data.columns) == ["experiment", "stage", "epoch", "split", "accuracy_percent", "source"]
    assert set(data["source"]) == {"measured"}
    validation = data[data["split"] == "validation"]
    assert validation["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert validation["stage"].tolist() == [1, 1, 1, 1, 2, 2]
    assert validation["experiment"].tolist() == ["stage1"] * 4 + ["stage2"] * 2
    expected = pd.concat([runs["stage1"]["val_accuracy"], runs["stage2"]["val_accuracy"]]) * 100
    np.testing.assert_allclose(validation["accuracy_percent"], expected)
    np.testing.assert_allclose(
        data.loc[data["split"] == "train", "accuracy_percent"], [10, 20, 30, 40, 50, 52]
    )


def test_throughput_is_the_mean_without_the_first_epoch(runs, tmp_path):
    runs["single"] = metrics.load_metrics(write_run(tmp_path / "single.csv", [0.5], [0.5], [0.1], [640.0]))
    data = figures.plot_data(spec("throughput", ["sgd", "steplr", "single"]), runs)
    assert data.to_dict("list") == {
        "experiment": ["sgd", "steplr", "single"],
        "samples_per_second": [1050.0, 1250.0, 640.0],  # a single epoch counts
        "epochs_averaged": [2, 2, 1],
    }


# ---------------------------------------------------------------- refused specs


def test_an_experiment_without_metrics_is_named(runs):
    with pytest.raises(
        InputError, match=r"figure 'a accuracy figure': no metrics given for experiment\(s\) gone"
    ):
        figures.plot_data(spec("accuracy", ["sgd", "gone"]), runs)


@pytest.mark.parametrize(
    "bad, complaint",
    [
        (
            {"kind": "loss"},
            "figure 'a accuracy figure': kind 'loss' is not one of accuracy, accuracy_lr, stages, throughput",
        ),
        ({"experiments": []}, "figure 'a accuracy figure': no experiments"),
        (
            {"kind": "throughput", "references": [{"label": "x", "accuracy": 50}]},
            "references are accuracies and a throughput figure has none",
        ),
    ],
)
def test_specs_drawing_cannot_follow_are_refused(runs, bad, complaint):
    bad_spec = spec("accuracy", ["sgd"]) | bad
    with pytest.raises(InputError) as error:
        figures.plot_data(bad_spec, runs)
    assert complaint in str(error.value)
    with pytest.raises(InputError):
        figures.draw(bad_spec, figures.plot_data(spec("accuracy", ["sgd"]), runs))


def test_the_kinds_drawn_are_the_config_schemas():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    kind = schema["properties"]["figures"]["additionalProperties"]["properties"]["kind"]
    assert set(figures.KINDS) == set(kind["enum"])


# ---------------------------------------------------------------- draw


def legend_texts(figure):
    legends = [*figure.legends, *(axis.get_legend() for axis in figure.axes if axis.get_legend())]
    return [text.get_text() for legend in legends for text in legend.get_texts()]


def horizontal_lines_at(axis):
    """y of every line drawn across the axes (axhline: constant y, x in axes coordinates 0..1)."""
    return [line.get_ydata()[0] for line in axis.lines if list(line.get_xdata()) == [0, 1]]


def vertical_lines_at(axis):
    return [line.get_xdata()[0] for line in axis.lines if list(line.get_ydata()) == [0, 1]]


def curves(axis):
    """(x, y, colour, linestyle) of each data line: not a reference or boundary line, nor one of the
    empty lines seaborn adds for its legend."""
    return [
        (list(line.get_xdata()), list(line.get_ydata()), line.get_color(), line.get_linestyle())
        for line in axis.lines
        if len(line.get_xdata()) and [0, 1] not in (list(line.get_xdata()), list(line.get_ydata()))
    ]


def bands(axis):
    """The standard-deviation bands that hold a polygon (seaborn adds empty ones for single rows)."""
    return [c for c in axis.collections if isinstance(c, PolyCollection) and c.get_paths()]


def test_accuracy_figure_has_title_curves_and_labelled_references(runs):
    references = [{"label": "Highway", "accuracy": 67.76}, {"label": "DSN", "accuracy": 65.43}]
    figure = drawn(spec("accuracy", ["sgd", "adadelta"], references), runs)
    (axis,) = figure.axes
    assert figure.get_suptitle() == "a accuracy figure"
    assert horizontal_lines_at(axis) == [67.76, 65.43]
    assert {"sgd", "adadelta", "train", "validation", "Highway: 67.76 %", "DSN: 65.43 %"} <= set(
        legend_texts(figure)
    )
    drawn_curves = curves(axis)
    expected = [
        (name, split, list(runs[name][column] * 100))
        for name in ("sgd", "adadelta")
        for split, column in [("train", "train_accuracy"), ("validation", "val_accuracy")]
    ]
    assert len(drawn_curves) == len(expected)
    colours = {}
    for name, split, accuracies in expected:
        (curve,) = [c for c in drawn_curves if np.allclose(c[1], accuracies)]
        assert curve[0] == [1, 2, 3]
        assert curve[3] == {"train": "-", "validation": "--"}[split]
        colours.setdefault(name, curve[2])
        assert curve[2] == colours[name]  # one colour per experiment
    assert colours["sgd"] != colours["adadelta"]
    assert bands(axis) == []  # one row per epoch: nothing to spread
    assert axis.get_ylabel() == "accuracy (%)"


def test_two_seeds_draw_their_mean_with_a_band(runs):
    figure_spec = spec("accuracy", ["sgd"])
    seed = figures.plot_data(figure_spec, runs)
    other_seed = seed.assign(accuracy_percent=seed["accuracy_percent"] + 4)
    figure = figures.draw(figure_spec, pd.concat([seed, other_seed], ignore_index=True))
    (axis,) = figure.axes
    validation = [c for c in curves(axis) if c[3] == "--"]
    assert len(curves(axis)) == 2 and len(validation) == 1
    np.testing.assert_allclose(validation[0][1], [27, 47, 57])  # (25 + 29) / 2, ...
    assert len(bands(axis)) == 2  # one per split
    band_top = max(vertex[1] for band in bands(axis) for path in band.get_paths() for vertex in path.vertices)
    assert band_top == pytest.approx(max(other_seed["accuracy_percent"]) - 2 + np.sqrt(8))  # mean + sd


def test_an_experiments_seeds_are_stacked_for_every_kind_of_figure(metric_files):
    seeds = {"stage1": ["stage1/seed0", "stage1/seed1"], "stage2": ["stage2/seed0", "stage2/seed1"]}
    paths = [metric_files["stage1"], metric_files["stage1"], metric_files["stage2"], metric_files["stage2"]]
    stacked = metrics.load_experiment_metrics(seeds, [str(path) for path in paths])
    assert stacked["stage1"]["run"].tolist() == ["stage1/seed0"] * 4 + ["stage1/seed1"] * 4
    stages = figures.plot_data(spec("stages", ["stage1", "stage2"]), stacked)
    # stage 2 continues after stage 1's 4 epochs, once per seed
    assert sorted(stages.loc[stages["stage"] == 2, "epoch"].unique()) == [5, 6]
    assert len(stages) == 2 * 2 * (4 + 2)  # splits x seeds x epochs
    throughput = figures.plot_data(spec("throughput", ["stage1", "stage2"]), stacked)
    assert throughput["experiment"].tolist() == ["stage1", "stage1", "stage2", "stage2"]  # a bar's seeds
    with pytest.raises(InputError, match="3 metrics files given for 4 runs"):
        metrics.load_experiment_metrics(seeds, [str(path) for path in paths[:3]])


def test_accuracy_lr_figure_leaves_adadelta_out_of_the_lr_panel(runs):
    figure = drawn(spec("accuracy_lr", ["steplr", "adadelta"]), runs)
    accuracy_axis, lr_axis = figure.axes
    assert len(curves(accuracy_axis)) == 4  # 2 experiments x 2 splits
    (rates,) = curves(lr_axis)
    np.testing.assert_allclose(rates[1], [0.05, 0.045, 0.0405])
    steplr_colour = next(c[2] for c in curves(accuracy_axis) if np.allclose(c[1], [30, 50, 62]))
    assert rates[2] == steplr_colour
    assert lr_axis.get_yscale() == "log"
    assert lr_axis.get_title(loc="right") == "no learning rate: adadelta"
    assert lr_axis.get_ylabel() == "learning rate" and accuracy_axis.get_ylabel() == "accuracy (%)"


def test_lr_panel_of_adadelta_alone_says_so(runs):
    figure = drawn(spec("accuracy_lr", ["adadelta"]), runs)
    lr_axis = figure.axes[1]
    assert curves(lr_axis) == [] and lr_axis.get_title(loc="right") == "no learning rate: adadelta"


def test_stages_figure_marks_the_boundary_between_stages(runs):
    figure_spec = spec("stages", ["stage1", "stage2"], [{"label": "published (stage 2)", "accuracy": 75.68}])
    figure = drawn(figure_spec, runs)
    (axis,) = figure.axes
    assert vertical_lines_at(axis) == [4.5]
    (label,) = axis.texts
    assert label.get_text() == "stage 2: stage2"
    assert label.get_position() == (4.5, 1.01)  # at the boundary, just above the frame
    stage_curves = curves(axis)
    assert [c[0] for c in stage_curves] == [[1, 2, 3, 4, 5, 6]] * 2  # one continuous curve per split
    np.testing.assert_allclose(stage_curves[1][1], [8, 18, 27, 35, 40, 41])
    assert horizontal_lines_at(axis) == [75.68]
    assert "published (stage 2): 75.68 %" in legend_texts(figure)


def test_the_notebooks_published_curve_is_drawn_in_grey_beside_the_stages(runs):
    curve = published.load_curve(REPO / "config" / "published" / "cifar100_notebook.csv")
    assert len(curve) == 46 and curve["val_accuracy"].iloc[-1] == pytest.approx(0.756867)
    assert curve.loc[curve["stage"] == 2, "continuous_epoch"].tolist() == list(range(39, 46))
    label = "notebook, published"
    figure_spec = spec("stages", ["stage1", "stage2"]) | {
        "published_curve": {"path": "config/published/cifar100_notebook.csv", "label": label}
    }
    data = figures.plot_data(figure_spec, runs, curve)
    notebook = data[(data["source"] == label) & (data["split"] == "validation")]
    assert notebook["epoch"].tolist() == list(range(1, 46))  # stage 1's unused 39th epoch left out
    drawn_curve = curve.drop(index=38)
    np.testing.assert_allclose(notebook["accuracy_percent"], drawn_curve["val_accuracy"] * 100)
    figure = figures.draw(figure_spec, data)
    (axis,) = figure.axes
    assert vertical_lines_at(axis) == [4.5]  # the measured stages' boundary only
    greys = [c for c in curves(axis) if c[2] == figures.PUBLISHED_CURVE_GREY]
    assert len(greys) == 2  # train and validation
    assert label in legend_texts(figure)
    with pytest.raises(InputError, match="its published curve was not given"):
        figures.plot_data(figure_spec, runs)


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("stage,epoch\n1,1\n", "missing column(s) continuous_epoch"),
        ("stage,epoch,continuous_epoch,train_accuracy,val_accuracy\n1,1,1,0.5,75.3\n", "fractions"),
        ("# only a comment\n", "not a published curve CSV"),
    ],
)
def test_a_bad_published_curve_is_refused_naming_the_file(tmp_path, text, complaint):
    path = tmp_path / "curve.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=re.escape(complaint)) as error:
        published.load_curve(path)
    assert str(path) in str(error.value)


def test_throughput_figure_bars_are_the_means_first_on_top(runs):
    figure = drawn(spec("throughput", ["sgd", "adadelta"]), runs)
    (axis,) = figure.axes
    figure.draw_without_rendering()
    sgd, adadelta = axis.patches
    assert (sgd.get_width(), adadelta.get_width()) == (1050.0, 755.0)
    assert sgd.get_window_extent().y0 > adadelta.get_window_extent().y0
    assert [label.get_text() for label in axis.get_yticklabels()] == ["sgd", "adadelta"]
    assert [text.get_text() for text in axis.texts] == ["1050", "755"]
    assert figure.get_suptitle() == "a throughput figure"


@pytest.mark.parametrize("kind", ["accuracy", "accuracy_lr", "stages"])
def test_legend_and_texts_cover_neither_title_nor_panels(runs, kind):
    experiments = {"accuracy": ["sgd", "steplr"], "accuracy_lr": ["steplr", "adadelta"]}
    references = [{"label": "a long published reference label", "accuracy": 60.0}]
    figure = drawn(spec(kind, experiments.get(kind, ["stage1", "stage2"]), references), runs)
    figure.draw_without_rendering()  # runs the layout
    renderer = figure.canvas.get_renderer()
    (legend,) = [axis.get_legend() for axis in figure.axes if axis.get_legend()]
    (title,) = [text for text in figure.texts if text.get_text() == figure.get_suptitle()]
    texts = [legend, title, *(text for axis in figure.axes for text in axis.texts)]
    boxes = [artist.get_window_extent(renderer) for artist in texts]
    panels = [axis.get_window_extent(renderer) for axis in figure.axes]
    for i, box in enumerate(boxes):
        assert figure.bbox.contains(box.x0, box.y0) and figure.bbox.contains(box.x1, box.y1)
        assert not any(box.overlaps(other) for other in boxes[i + 1 :] + panels)


# ---------------------------------------------------------------- save_figure


def test_save_figure_writes_png_and_svg_and_closes_the_figure(tmp_path, runs):
    figure = drawn(spec("accuracy", ["sgd", "adadelta"], [{"label": "published", "accuracy": 80.0}]), runs)
    png, svg = tmp_path / "figures" / "acc.png", tmp_path / "figures" / "acc.svg"
    figures.save_figure(figure, [str(png), str(svg)])
    assert png.read_bytes().startswith(PNG_SIGNATURE) and png.stat().st_size > 20_000
    assert ElementTree.parse(svg).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert "a accuracy figure" in svg.read_text()  # svg.fonttype "path" keeps the text in a comment
    assert sorted(path.name for path in png.parent.iterdir()) == ["acc.png", "acc.svg"]
    assert not plt.fignum_exists(figure.number)


def test_save_figure_refuses_an_unknown_suffix_writing_nothing(tmp_path, runs):
    figure = drawn(spec("accuracy", ["sgd"]), runs)
    folder = tmp_path / "figures"
    with pytest.raises(InputError) as error:
        figures.save_figure(figure, [str(folder / "acc.png"), str(folder / "acc.xyz")])
    message = str(error.value)
    assert message.startswith(f"{folder / 'acc.xyz'}: ") and "png" in message and "svg" in message
    assert not folder.exists()
    assert not plt.fignum_exists(figure.number)


# matplotlib's mathtext parser calls pyparsing APIs that pyparsing 3.3 deprecates; not ours to fix
@pytest.mark.filterwarnings("ignore:.*is deprecated, use:DeprecationWarning")
def test_save_figure_leaves_no_partial_file_when_drawing_fails(tmp_path, runs):
    figure = drawn(spec("accuracy", ["sgd"]), runs)
    figure.suptitle(r"$\notacommand$")  # mathtext that fails only while the figure is drawn
    svg = tmp_path / "figures" / "acc.svg"  # the SVG writer opens its file before drawing into it
    with pytest.raises(ValueError, match="notacommand"):
        figures.save_figure(figure, [str(svg)])
    assert list(svg.parent.iterdir()) == []
    assert not plt.fignum_exists(figure.number)
