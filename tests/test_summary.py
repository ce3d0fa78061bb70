"""The summary's numbers are those of metrics.csv and run.json, the params diff lists exactly the keys
that differ, and the markdown is a well-formed table."""

import copy
import json
import math
import re
import statistics

import pandas as pd
import pytest
from test_figures import write_run

from cifar_repro import tables
from cifar_repro.errors import InputError
from cifar_repro.metrics import load_metrics, training_minutes_to

SGD_CONFIG = {
    "dataset": "cifar10",
    "network": "resnext",
    "num_layers": 101,
    "data_shape": [3, 28, 28],
    "batch_size": 128,
    "num_epochs": 3,
    "optimizer": "sgd",
    "optimizer_params": {"learning_rate": 0.05, "momentum": 0.9, "wd": 0.0001},
    "lr_schedule": {"type": "fixed"},
    "init": {"type": "scratch", "layer": "flatten0", "freeze": []},
    "gpus": 4,
    "augment": {"rand_crop": True, "rand_mirror": True},
    "mean_image": False,
    "seed": 0,
}


def adadelta_config():
    config = copy.deepcopy(SGD_CONFIG)
    config["optimizer"] = "adadelta"
    config["optimizer_params"] = {"rho": 0.9, "epsilon": 1e-05, "wd": 0.0001}
    return config


def run_record(name, config, wall_seconds=7200.0, description="4 GPUs: gpu(0), gpu(1), gpu(2), gpu(3)"):
    """A run.json as train.py writes it (the fields the summary does not read, too)."""
    return {
        "experiment": name,
        "config": config,
        "num_classes": 100 if config["dataset"] == "cifar100" else 10,
        "devices": {"description": description, "contexts": ["gpu(0)"], "gpu_ids": [0]},
        "initialised_from": "Xavier",
        "resumed_after_epoch": 0,
        "wall_seconds": wall_seconds,
        "training_seconds": wall_seconds - 60,
        "final": None,
        "versions": {"python": "3.11.7"},
        "git_revision": "unknown",
        "host": "test",
    }


@pytest.fixture
def experiment_files(tmp_path):
    """{name: (run.json, metrics.csv)} in tmp_path: CIFAR-10 SGD and AdaDelta, and a CIFAR-100 run."""
    cifar100 = SGD_CONFIG | {"dataset": "cifar100", "network": "inception_rrelu", "batch_size": 64}
    del cifar100["num_layers"]
    experiments = {
        # the best epoch (2) is not the last
        "sgd": (
            SGD_CONFIG,
            dict(
                train=[0.3, 0.6, 0.7],
                val=[0.25, 0.81, 0.8],
                lr=[0.05] * 3,
                samples_per_second=[100.0, 200.0, 300.0],
            ),
        ),
        "adadelta": (
            adadelta_config(),
            dict(
                train=[0.2, 0.4, 0.5],
                val=[0.2, 0.35, 0.45],
                lr=[None] * 3,
                samples_per_second=[90.0, 95.0, 97.0],
            ),
        ),
        "inception": (
            cifar100,
            dict(
                train=[0.1, 0.3],
                val=[0.1, 0.3],
                lr=[0.05] * 2,
                samples_per_second=[50.0, 60.0],
                num_classes=100,
            ),
        ),
    }
    files = {}
    for name, (config, metrics) in experiments.items():
        folder = tmp_path / "experiments" / name
        metrics_path = write_run(folder / "metrics.csv", **metrics)
        run_path = folder / "run.json"
        run_path.write_text(json.dumps(run_record(name, config)))
        files[name] = (run_path, metrics_path)
    return files


@pytest.fixture
def inputs(experiment_files):
    runs = {name: json.loads(run.read_text()) for name, (run, _) in experiment_files.items()}
    metrics = {name: load_metrics(path) for name, (_, path) in experiment_files.items()}
    return runs, metrics


# ---------------------------------------------------------------- summary_table


def test_summary_numbers_are_those_of_the_metrics(inputs):
    runs, metrics = inputs
    table = tables.summary_table(runs, metrics, {"sgd": 80.0}).set_index("experiment")
    assert list(table.index) == ["sgd", "adadelta", "inception"]
    sgd = table.loc["sgd"]
    assert (sgd["dataset"], sgd["network"], sgd["epochs"], sgd["best_epoch"]) == ("cifar10", "resnext", 3, 2)
    assert sgd["best_val_accuracy"] == pytest.approx(81.0)
    assert sgd["final_val_accuracy"] == pytest.approx(80.0)
    assert sgd["published"] == 80.0 and sgd["difference"] == pytest.approx(0.0)
    assert sgd["wall_hours"] == pytest.approx(2.0)
    assert sgd["samples_per_second"] == pytest.approx(250.0)  # epochs 2 and 3, as in the throughput figure
    assert sgd["devices"] == "4 GPUs: gpu(0), gpu(1), gpu(2), gpu(3)"
    assert math.isnan(sgd["final_val_top5_accuracy"])  # CIFAR-10 has no top-5 column
    inception = table.loc["inception"]
    assert inception["final_val_top5_accuracy"] == pytest.approx(60.0)
    assert math.isnan(inception["published"]) and math.isnan(inception["difference"])


def test_a_distributed_run_shows_its_workers_and_global_batch(inputs):
    runs, metrics = inputs
    runs["sgd"]["distributed"] = {"workers": 2, "servers": 1, "global_batch_size": 256}
    table = tables.summary_table(runs, metrics, {}).set_index("experiment")
    assert (table.loc["sgd", "workers"], table.loc["sgd", "global_batch_size"]) == (2, 256)
    assert (table.loc["adadelta", "workers"], table.loc["adadelta", "global_batch_size"]) == (1, 128)


def test_an_experiments_seeds_give_one_row_of_their_means_and_the_final_accuracys_spread(inputs):
    runs, metrics = inputs
    second = metrics["sgd"].assign(val_accuracy=[0.3, 0.83, 0.7])  # final 70 % against 80 %
    runs["sgd/seed1"] = runs["sgd"] | {"experiment": "sgd/seed1", "wall_seconds": 3600.0}
    metrics["sgd/seed1"] = second
    seeds = {"sgd": ["sgd", "sgd/seed1"], "adadelta": ["adadelta"]}
    table = tables.summary_table(runs, metrics, {"sgd": 80.0}, seeds).set_index("experiment")
    assert list(table.index) == ["sgd", "adadelta"]
    sgd = table.loc["sgd"]
    assert sgd["seeds"] == 2
    assert sgd["final_val_accuracy"] == pytest.approx(75.0) and sgd["difference"] == pytest.approx(-5.0)
    assert sgd["final_val_accuracy_std"] == pytest.approx(statistics.stdev([80.0, 70.0]))
    assert (sgd["best_val_accuracy"], sgd["best_epoch"]) == (pytest.approx(82.0), 2)  # the mean curve's
    assert sgd["wall_hours"] == pytest.approx(1.5)
    assert table.loc["adadelta", "seeds"] == 1 and math.isnan(table.loc["adadelta", "final_val_accuracy_std"])


def test_difference_is_final_minus_published_in_points(inputs):
    runs, metrics = inputs
    table = tables.summary_table(runs, metrics, {"adadelta": 50.0, "inception": 25.5}).set_index("experiment")
    assert table.loc["adadelta", "difference"] == pytest.approx(45.0 - 50.0)
    assert table.loc["inception", "difference"] == pytest.approx(30.0 - 25.5)


@pytest.mark.parametrize(
    "change, complaint",
    [
        (
            lambda runs, metrics, published: metrics.pop("adadelta"),
            "no metrics given for experiment(s) adadelta",
        ),
        (lambda runs, metrics, published: published.update(typo=70.0), "no run given for experiment(s) typo"),
        (
            lambda runs, metrics, published: published.update(sgd="80"),
            "published accuracy of sgd is not a number",
        ),
    ],
)
def test_unmatched_inputs_are_named(inputs, change, complaint):
    runs, metrics = inputs
    published = {}
    change(runs, metrics, published)
    with pytest.raises(InputError) as error:
        tables.summary_table(runs, metrics, published)
    assert complaint in str(error.value)


# ---------------------------------------------------------------- params_diff


def test_params_diff_lists_exactly_the_differing_keys():
    steplr = copy.deepcopy(SGD_CONFIG) | {"optimizer": "nag"}
    steplr["lr_schedule"] = {"type": "factor"}
    diff = tables.params_diff({"plain": SGD_CONFIG, "steplr": steplr})
    assert diff.to_dict("records") == [
        {"parameter": "optimizer", "plain": "sgd", "steplr": "nag"},
        {"parameter": "lr_schedule.type", "plain": "fixed", "steplr": "factor"},
    ]


def test_a_key_missing_in_one_experiment_is_a_difference_shown_empty():
    diff = tables.params_diff({"sgd": SGD_CONFIG, "adadelta": adadelta_config()}).set_index("parameter")
    assert list(diff.index) == [
        "optimizer",
        "optimizer_params.learning_rate",
        "optimizer_params.momentum",
        "optimizer_params.rho",
        "optimizer_params.epsilon",
    ]  # wd is the same
    assert diff.loc["optimizer_params.learning_rate"].to_dict() == {"sgd": "0.05", "adadelta": ""}
    assert diff.loc["optimizer_params.rho"].to_dict() == {"sgd": "", "adadelta": "0.9"}


def test_a_null_value_differs_from_a_missing_key():
    diff = tables.params_diff({"a": {"init": {"model": None}}, "b": {"init": {}}})
    assert diff.to_dict("records") == [{"parameter": "init.model", "a": "null", "b": ""}]


def test_params_diff_compares_lists_tells_true_from_one_but_not_zero_from_zero_point_zero():
    other = copy.deepcopy(SGD_CONFIG)
    other["data_shape"] = [3, 32, 32]
    other["augment"]["rand_crop"] = 1
    other["seed"] = 0.0
    diff = tables.params_diff({"a": SGD_CONFIG, "b": other})
    assert diff.to_dict("records") == [
        {"parameter": "data_shape", "a": "[3, 28, 28]", "b": "[3, 32, 32]"},
        {"parameter": "augment.rand_crop", "a": "true", "b": "1"},
    ]


def test_identical_configs_have_no_differences():
    diff = tables.params_diff({"a": SGD_CONFIG, "b": copy.deepcopy(SGD_CONFIG)})
    assert diff.empty and list(diff.columns) == ["parameter", "a", "b"]


# ---------------------------------------------------------------- markdown


def cells(line):
    """The cells of a markdown table row (an escaped pipe stays inside its cell)."""
    assert line.startswith("|") and line.endswith("|"), line
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line[1:-1])]


def test_markdown_is_a_well_formed_table():
    table = pd.DataFrame({"name": ["a|b", "c"], "accuracy": [81.234, math.nan], "epoch": [3, 4]})
    lines = tables.to_markdown(table).splitlines()
    assert [cells(line) for line in lines] == [
        ["name", "accuracy", "epoch"],
        ["---", "---:", "---:"],
        ["a\\|b", "81.23", "3"],
        ["c", "", "4"],
    ]


def test_summary_markdown_has_a_row_per_experiment_of_equal_width(inputs):
    table = tables.summary_table(*inputs, {"sgd": 80.0})
    lines = tables.to_markdown(table).splitlines()
    widths = {len(cells(line)) for line in lines}
    assert widths == {len(tables.SUMMARY_COLUMNS)} and len(lines) == 2 + 3
    assert cells(lines[2])[:9] == ["sgd", "cifar10", "resnext", "3", "1", "81.00", "2", "80.00", ""]


# ---------------------------------------------------------------- reading and writing the files


def build(experiment_files, tmp_path, published, groups):
    out = tmp_path / "out"
    return tables.build_tables(
        run_paths={name: str(run) for name, (run, _) in experiment_files.items()},
        metrics_paths={name: str(metrics) for name, (_, metrics) in experiment_files.items()},
        published=published,
        groups=groups,
        outputs={
            f"{table}_{extension}": str(out / f"{table}.{extension}")
            for table in ("summary", "params")
            for extension in ("csv", "md")
        },
    )


def test_the_four_tables_are_written(experiment_files, tmp_path):
    groups = {"optimizers": ["sgd", "adadelta"], "alone": ["inception"]}
    build(experiment_files, tmp_path, {"sgd": 80.0}, groups)
    out = tmp_path / "out"
    table = pd.read_csv(out / "summary.csv")
    assert table["experiment"].tolist() == ["sgd", "adadelta", "inception"]
    assert table["final_val_accuracy"].tolist() == pytest.approx([80.0, 45.0, 30.0])
    assert table["published"].isna().tolist() == [False, True, True]
    params = pd.read_csv(out / "params.csv", dtype=str, keep_default_na=False)
    assert list(params.columns[:2]) == ["group", "parameter"]
    assert set(params["group"]) == {"optimizers"}  # one experiment: nothing differs
    rho = params.loc[params["parameter"] == "optimizer_params.rho", ["sgd", "adadelta"]]
    assert rho.values.tolist() == [["", "0.9"]]
    markdown = (out / "params.md").read_text()
    assert "## optimizers\n\n| parameter | sgd | adadelta |" in markdown
    assert "## alone\n\nNo parameter differs." in markdown
    assert (out / "summary.md").read_text().startswith("| experiment | dataset |")
    assert sorted(p.name for p in out.iterdir()) == ["params.csv", "params.md", "summary.csv", "summary.md"]


def swap_in_another_run(files):
    files["sgd"] = (files["adadelta"][0], files["sgd"][1])
    return files["adadelta"][0]


def corrupt_run(files):
    files["sgd"][0].write_text("{not json")
    return files["sgd"][0]


def drop_metric_columns(files):
    files["sgd"][1].write_text("epoch,lr\n1,0.1\n")
    return files["sgd"][1]


@pytest.mark.parametrize("break_inputs, complaint", [
    (swap_in_another_run, "the run of experiment 'adadelta', given as 'sgd'"),
    (corrupt_run, "not JSON"),
    (drop_metric_columns, "missing column(s) train_accuracy"),
])  # fmt: skip
def test_a_bad_file_is_named_and_nothing_is_written(experiment_files, tmp_path, break_inputs, complaint):
    bad_file = break_inputs(experiment_files)
    with pytest.raises(InputError, match=re.escape(f"{bad_file}: {complaint}")):
        build(experiment_files, tmp_path, {}, {})
    assert not (tmp_path / "out").exists()


def test_a_group_experiment_without_a_run_is_named(experiment_files, tmp_path):
    with pytest.raises(InputError, match="group 'figure': no run given for experiment\\(s\\) ghost"):
        build(experiment_files, tmp_path, {}, {"figure": ["sgd", "ghost"]})


def test_training_minutes_to_an_accuracy_add_up_training_epochs_until_the_first_that_reached_it():
    metrics = pd.DataFrame({"val_accuracy": [0.6, 0.86, 0.84, 0.91], "seconds": [120, 60, 60, 30]})
    assert training_minutes_to(metrics, 0.85) == 3.0
    assert training_minutes_to(metrics, 0.91) == 4.5
    assert training_minutes_to(metrics, 0.95) is None
