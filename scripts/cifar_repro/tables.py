"""Tables of the experiments' results, and of how the experiments of a group differ.

- `summary_table`: one row per experiment (the mean over its seeds' runs, with the final accuracy's
  standard deviation): best and final validation accuracy (%), wall time,
  training throughput, its workers (processes of a distributed job, else 1), each worker's devices,
  the precision its runs trained in, the global batch, and the published accuracy with the difference from it;
- `params_diff`: for a group of experiments (e.g. one figure's), the hyperparameters that differ, in the
  manner of `dvc params diff`: one row per dotted config key, one column per experiment.

Both are written as CSV and as GitHub-flavoured markdown (`to_markdown`, which needs no `tabulate`).
"""

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .atomic import atomic_path
from .errors import InputError
from .metrics import load_metrics, mean_samples_per_second

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = [
    "experiment",
    "dataset",
    "network",
    "epochs",
    "seeds",
    "best_val_accuracy",
    "best_epoch",
    "final_val_accuracy",
    "final_val_accuracy_std",
    "final_val_top5_accuracy",
    "wall_hours",
    "samples_per_second",
    "workers",
    "devices",
    "precision",
    "global_batch_size",
    "published",
    "difference",
]
# what summary_table reads from a run.json
RUN_FIELDS = [
    ("experiment",),
    ("config", "dataset"),
    ("config", "network"),
    ("config", "batch_size"),
    ("devices", "description"),
    ("wall_seconds",),
]


# ---------------------------------------------------------------- results


def summary_row(name: str, runs: list[dict], metrics: list[pd.DataFrame], published: float | None) -> dict:
    """An experiment's row from its runs (its seeds, or itself): accuracies in %, the runs' mean; the
    final accuracy's standard deviation over the runs (NaN for one run); the best epoch is that of
    the mean validation curve (the first reaching its maximum); samples/s as in the throughput
    figure (the first epoch left out when there are more; all workers together); difference = final
    - published, in percentage points."""
    mean_curve = pd.concat(metrics).groupby("epoch", as_index=False).mean(numeric_only=True)
    best = mean_curve.loc[mean_curve["val_accuracy"].idxmax()]
    finals = pd.DataFrame([run_metrics.iloc[-1] for run_metrics in metrics]) * 100
    final_accuracy = finals["val_accuracy"].mean()
    first = runs[0]
    workers = first.get("distributed", {}).get("workers", 1)
    return {
        "experiment": name,
        "dataset": first["config"]["dataset"],
        "network": first["config"]["network"],
        "epochs": len(mean_curve),
        "seeds": len(runs),
        "best_val_accuracy": best["val_accuracy"] * 100,
        "best_epoch": int(best["epoch"]),
        "final_val_accuracy": final_accuracy,
        "final_val_accuracy_std": finals["val_accuracy"].std() if len(runs) > 1 else math.nan,
        "final_val_top5_accuracy": finals.get("val_top5_accuracy", pd.Series([math.nan])).mean(),
        "wall_hours": sum(run["wall_seconds"] for run in runs) / len(runs) / 3600,
        "samples_per_second": sum(map(mean_samples_per_second, metrics)) / len(metrics),
        "workers": workers,
        "devices": first["devices"]["description"],  # rank 0's, the same kind in every worker
        # what the runs trained in (runs from before the precision key trained in fp32)
        "precision": "/".join(sorted({run.get("precision", {}).get("used", "fp32") for run in runs})),
        "global_batch_size": first["config"]["batch_size"] * workers,
        "published": math.nan if published is None else published,
        "difference": math.nan if published is None else final_accuracy - published,
    }


def summary_table(
    runs: dict[str, dict],
    metrics: dict[str, pd.DataFrame],
    published: dict[str, float],
    experiment_runs: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """One row per experiment of `experiment_runs` (experiment -> its run names; by default each run
    is an experiment of its own), in their order, from the runs' run.json records and metrics; NaN
    where there is nothing to show (no top-5 accuracy on CIFAR-10, no published accuracy, one seed)."""
    experiment_runs = experiment_runs or {name: [name] for name in runs}
    named = [run for names in experiment_runs.values() for run in names]
    without_metrics = [name for name in named if name not in metrics]
    if without_metrics:
        raise InputError(f"no metrics given for experiment(s) {', '.join(without_metrics)}")
    without_run = [name for name in named if name not in runs] + [
        name for name in published if name not in experiment_runs
    ]
    if without_run:
        raise InputError(f"no run given for experiment(s) {', '.join(dict.fromkeys(without_run))}")
    not_numbers = [
        name
        for name, value in published.items()
        if isinstance(value, bool) or not isinstance(value, (int, float))
    ]
    if not_numbers:
        raise InputError(f"published accuracy of {', '.join(not_numbers)} is not a number")
    rows = [
        summary_row(name, [runs[run] for run in names], [metrics[run] for run in names], published.get(name))
        for name, names in experiment_runs.items()
    ]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


# ---------------------------------------------------------------- parameters


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """Nested dicts as dotted keys: {"lr_schedule": {"type": "fixed"}} -> {"lr_schedule.type": "fixed"};
    an empty dict has no keys."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _shown(value: object) -> str:
    """A config value as the table shows it: strings bare, the rest as JSON (true, [3, 28, 28])."""
    return value if isinstance(value, str) else json.dumps(value)


def _comparable(value: object) -> object:
    """Equal for equal settings: 0 and 0.0 alike, but true and 1 not (Python's == has True == 1)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return json.dumps(value, sort_keys=True)


def params_diff(configs: dict[str, dict]) -> pd.DataFrame:
    """The config keys whose values are not the same in every experiment: columns parameter and one per
    experiment, keys in the order the configs give them (a section's keys together); a key an
    experiment lacks is shown empty."""
    flat = {name: flatten(config) for name, config in configs.items()}
    appearance = list(dict.fromkeys(key for values in flat.values() for key in values))
    sections = list(dict.fromkeys(key.split(".")[0] for key in appearance))
    keys = sorted(
        appearance, key=lambda key: sections.index(key.split(".")[0])
    )  # stable: keeps the order within
    rows = []
    for key in keys:
        # a missing key is None, unlike any present value (even null, which is "null")
        values = {name: _comparable(config[key]) if key in config else None for name, config in flat.items()}
        if len(set(values.values())) > 1:
            rows.append(
                {
                    "parameter": key,
                    **{name: _shown(config[key]) if key in config else "" for name, config in flat.items()},
                }
            )
    return pd.DataFrame(rows, columns=["parameter", *configs])


def group_diffs(
    groups: dict[str, list[str]], runs: dict[str, dict], experiment_runs: dict[str, list[str]] | None = None
) -> dict[str, pd.DataFrame]:
    """The params diff of each group's experiments, from the run.json config of each one's first run
    (its seeds share every other setting)."""
    experiment_runs = experiment_runs or {name: [name] for name in runs}
    diffs = {}
    for group, experiments in groups.items():
        unknown = [name for name in experiments if experiment_runs.get(name, [None])[0] not in runs]
        if unknown:
            raise InputError(f"group {group!r}: no run given for experiment(s) {', '.join(unknown)}")
        diffs[group] = params_diff({name: runs[experiment_runs[name][0]]["config"] for name in experiments})
    return diffs


# ---------------------------------------------------------------- writing


def _cell(value: object, float_format: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return float_format.format(value)
    # a pipe would end the cell and a newline the row
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(table: pd.DataFrame, float_format: str = "{:.2f}") -> str:
    """A GitHub-flavoured markdown table: numeric columns right-aligned, NaN and None empty."""
    numeric = [
        pd.api.types.is_numeric_dtype(table[column]) and not pd.api.types.is_bool_dtype(table[column])
        for column in table.columns
    ]
    lines = [
        "| " + " | ".join(_cell(column, float_format) for column in table.columns) + " |",
        "|" + "|".join("---:" if right else "---" for right in numeric) + "|",
    ]
    lines += [
        "| " + " | ".join(_cell(value, float_format) for value in row) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"


def params_markdown(diffs: dict[str, pd.DataFrame]) -> str:
    """A heading and a table per group."""
    sections = [
        f"## {group}\n\n" + (to_markdown(diff) if len(diff) else "No parameter differs.\n")
        for group, diff in diffs.items()
    ]
    return "\n".join(sections) if sections else "No groups.\n"


def params_csv_table(diffs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The groups' diffs stacked, with a group column; a group's rows are empty for other groups'
    experiments."""
    frames = [diff.assign(group=group) for group, diff in diffs.items()]
    if not frames:
        return pd.DataFrame(columns=["group", "parameter"])
    stacked = pd.concat(frames, ignore_index=True)
    return stacked[["group", *[column for column in stacked.columns if column != "group"]]]


def load_run(path: str, name: str) -> dict:
    """A run.json, checked for what the summary reads and for being the run of `name`."""
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such run record") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not JSON ({error})") from None
    for keys in RUN_FIELDS:
        value = record
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                raise InputError(f"{path}: no {'.'.join(keys)}")
            value = value[key]
    if record["experiment"] != name:
        raise InputError(f"{path}: the run of experiment {record['experiment']!r}, given as {name!r}")
    return record


def write_tables(
    summary: pd.DataFrame,
    diffs: dict[str, pd.DataFrame],
    summary_csv: str,
    summary_md: str,
    params_csv: str,
    params_md: str,
) -> None:
    """The summary and the groups' params diffs, each as CSV and markdown."""
    writers: dict[str, Callable[[Path], object]] = {
        summary_csv: lambda partial: summary.to_csv(partial, index=False),
        summary_md: lambda partial: partial.write_text(to_markdown(summary)),
        params_csv: lambda partial: params_csv_table(diffs).to_csv(partial, index=False),
        params_md: lambda partial: partial.write_text(params_markdown(diffs)),
    }
    for path, write in writers.items():
        with atomic_path(path) as partial:
            write(partial)


def build_tables(
    run_paths: dict[str, str],
    metrics_paths: dict[str, str],
    published: dict[str, float],
    groups: dict[str, list[str]],
    outputs: dict[str, str],
    experiment_runs: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """Read each run's run.json and metrics.csv, write the four tables (`outputs` maps summary_csv,
    summary_md, params_csv and params_md to paths), and return the summary."""
    runs = {name: load_run(path, name) for name, path in run_paths.items()}
    metrics = {name: load_metrics(path) for name, path in metrics_paths.items()}
    summary = summary_table(runs, metrics, published, experiment_runs)
    write_tables(summary, group_diffs(groups, runs, experiment_runs), **outputs)
    return summary
