"""Benchmark (not a test): what do MXNet's parameter servers cost?

Side by side, on the same packed data, tiny network, per-worker batch and augmentation, through the
training rule's own entry point (run.run_training: in this process, or a job started with MXNet's
tracker on loopback):
  (a) one process, kvstore local (the baseline);
  (b) kvstore dist_sync, 1 worker + 1 server (+ the scheduler): the cost of pushing every gradient
      through a server;
  (c) kvstore dist_sync, 2 workers + 1 server, all on this machine (samples/s of both workers).
Rounds alternate (a, b, c, a, b, c, ...) so that drift in the machine's speed hits all three; each
run's figure is its mean samples/s over the epochs after the first (warm-up). The medians go to a
TSV with this machine's core count.
Target: (b) at most 1.15x slower than (a), i.e. (a)/(b) <= 1.15.

usage: python scripts/benchmarks/distributed_overhead.py --output-dir results/demo
           --tsv results/benchmark/distributed.tsv [--rounds 3] [--epochs 3]
"""

import argparse
import csv
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path

import mxnet as mx

from cifar_repro import layout
from cifar_repro.job import TrainingJob
from cifar_repro.layout import PackedDataset
from cifar_repro.metrics import load_metrics, mean_samples_per_second
from cifar_repro.run import run_training
from cifar_repro.schema import with_defaults

EXPERIMENT = with_defaults(
    {
        "dataset": "cifar10",
        "network": "resnet",
        "num_layers": 8,
        "data_shape": [3, 28, 28],
        "batch_size": 32,  # per worker
        "num_epochs": 3,  # each run sets its own
        "optimizer": "sgd",
        "optimizer_params": {"learning_rate": 0.05, "momentum": 0.9, "wd": 0.0001},
        "gpus": 0,  # one CPU context per worker
        "augment": {"rand_crop": True, "rand_mirror": True},
        "disp_batches": 10_000,
    }
)
SETUPS = {
    "(a) one process, kvstore local": None,
    "(b) dist_sync, 1 worker + 1 server": {"workers": 1, "servers": 1},
    "(c) dist_sync, 2 workers + 1 server": {"workers": 2, "servers": 1},
}


def throughput(data: PackedDataset, epochs: int, distributed: dict | None) -> float:
    """Training samples/s (all workers together) of one run in a scratch folder."""
    experiment = EXPERIMENT | {"num_epochs": epochs}
    if distributed:
        experiment["distributed"] = distributed | {"kvstore": "dist_sync", "launcher": "local"}
    with tempfile.TemporaryDirectory() as work:
        job = TrainingJob.under(work, "benchmark", experiment, data)
        run_training(job, threads=os.cpu_count())
        return mean_samples_per_second(load_metrics(job.outputs.metrics))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output-dir", required=True, help="the workflow's output_dir: its cifar10/rec/ is used"
    )
    parser.add_argument("--tsv", required=True, help="where the table goes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = layout.packed_dataset(args.output_dir, "cifar10")
    runs: dict[str, list[float]] = {setup: [] for setup in SETUPS}
    for _ in range(args.rounds):
        for setup, distributed in SETUPS.items():
            runs[setup].append(throughput(data, args.epochs, distributed))
    baseline = statistics.median(runs["(a) one process, kvstore local"])
    network = f"resnet-{EXPERIMENT['num_layers']}"
    rows = [
        {
            "setup": setup,
            "cores": os.cpu_count(),
            "network": network,
            "batch_per_worker": EXPERIMENT["batch_size"],
            "samples_per_second_median": round(statistics.median(figures), 1),
            "samples_per_second_rounds": " ".join(f"{figure:.1f}" for figure in figures),
            "slowdown_vs_a": round(baseline / statistics.median(figures), 3),
            "mxnet": mx.__version__,
        }
        for setup, figures in runs.items()
    ]
    Path(args.tsv).parent.mkdir(parents=True, exist_ok=True)
    with open(args.tsv, "w", newline="") as table:
        writer = csv.DictWriter(table, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    width = max(len(setup) for setup in SETUPS)
    print(f"{os.cpu_count()} cores, {network}, batch {EXPERIMENT['batch_size']} per worker")
    print(f"{'setup':<{width}}  samples/s (median; rounds)        slowdown vs (a)")
    for row in rows:
        figures = f"{row['samples_per_second_median']:>8}  ({row['samples_per_second_rounds']})"
        print(f"{row['setup']:<{width}}  {figures}  {row['slowdown_vs_a']}x")
    print("target: (b) slowdown <= 1.15x")
    print(f"table: {args.tsv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
