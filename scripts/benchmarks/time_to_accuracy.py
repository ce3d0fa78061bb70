"""Benchmark (not a test): how soon does a run on the real CIFAR-10 reach 85 % and 90 %?

Reads what a training run wrote (metrics.csv, run.json: by default cifar10_quick of
config/cpu-real.yaml, which `make benchmark` trains first if it has not been) and prints, side by
side with the baseline below, the minutes of training (validation left out, as in the baseline)
until the validation accuracy first reached 85 % and 90 %, then the run's accuracy against time.

Baseline, measured on this pipeline on the 2-core machine it was developed on: a plain ResNet-20
(batch 128, SGD 0.1 with x0.1 at epochs 14 and 21, 28-pixel crops) reached 85 % after 14.7 minutes
of training and ended at 85.9 % after 26 epochs (20.5 minutes), never 90 %. Target: 90 % within 30
minutes.

usage: python scripts/benchmarks/time_to_accuracy.py --output-dir results/cpu-real \
           --experiment cifar10_quick --tsv results/benchmark/time_to_accuracy.tsv
"""

import argparse
import csv
import json
import os
from pathlib import Path

from cifar_repro import layout
from cifar_repro.metrics import load_metrics, training_minutes_to

THRESHOLDS = (0.85, 0.90)
BASELINE = {
    "run": "baseline: ResNet-20, SGD 0.1 stepped, 28 px (issue 11)",
    "epochs": 26,
    "minutes_to_85": 14.7,
    "minutes_to_90": None,
    "training_minutes": 20.5,
    "final_val_accuracy": 0.859,
}


def shown(minutes: float | None) -> str:
    return "never" if minutes is None else f"{minutes:.1f} min"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", required=True, help="the config's output_dir")
    parser.add_argument(
        "--experiment", required=True, help="a run of that config (an experiment, or <experiment>/seed<N>)"
    )
    parser.add_argument("--tsv", required=True, help="where the table goes")
    args = parser.parse_args()
    files = layout.run_files(args.output_dir, args.experiment)
    metrics = load_metrics(files.metrics)
    run = json.loads(Path(files.run).read_text())
    measured = {
        "run": f"{run['experiment']} ({run['config']['network']}, batch {run['config']['batch_size']})",
        "epochs": len(metrics),
        **{f"minutes_to_{round(t * 100)}": training_minutes_to(metrics, t) for t in THRESHOLDS},
        "training_minutes": float(metrics["seconds"].sum()) / 60,
        "final_val_accuracy": float(metrics["val_accuracy"].iloc[-1]),
    }
    print(f"{os.cpu_count()} cores; {files.metrics}: {run['wall_seconds'] / 60:.1f} min of wall time in all")
    print(f"{'':56} {'to 85 %':>10} {'to 90 %':>10} {'training':>10} {'final':>7}")
    for row in (BASELINE, measured):
        print(
            f"{row['run']:56} {shown(row['minutes_to_85']):>10} {shown(row['minutes_to_90']):>10} "
            f"{shown(row['training_minutes']):>10} {row['final_val_accuracy']:>7.2%}"
        )
    print("\nepoch  minutes of training  validation accuracy")
    for epoch, minutes, accuracy in zip(
        metrics["epoch"], metrics["seconds"].cumsum() / 60, metrics["val_accuracy"], strict=True
    ):
        print(f"{epoch:5}  {minutes:19.1f}  {accuracy:19.2%}")
    Path(args.tsv).parent.mkdir(parents=True, exist_ok=True)
    with open(args.tsv, "w", newline="") as table:
        writer = csv.DictWriter(table, fieldnames=["cores", *measured], delimiter="\t")
        writer.writeheader()
        writer.writerows({"cores": os.cpu_count(), **row} for row in (BASELINE, measured))
    print(f"table: {args.tsv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
