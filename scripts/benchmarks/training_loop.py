"""Benchmark (not a test): does the training rule's loop cost throughput?

Side by side, in one process, on the same packed data, network, batch size and augmentation:
  1. training.train (what the training rule runs: checkpoints, NaN check, progress lines, per-epoch
     iterators, ...);
  2. a bare Module.fit, MXNet's own loop (the baseline);
  3. ImageRecordIter alone, to show the loader is not the bottleneck.
Training rounds alternate (training.train, fit, training.train, fit, ...) so that drift in the machine's
speed hits both; each reports samples/s of whole training epochs (validation and checkpoints not
included) over its epochs after the first (warm-up).
Target: training.train / Module.fit >= 0.97.

usage: python scripts/benchmarks/training_loop.py --output-dir results/demo [--rounds 3] [--epochs 3]
"""

import argparse
import itertools
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mxnet as mx

from cifar_repro import layout, networks, training
from cifar_repro.job import TrainingJob
from cifar_repro.layout import PackedDataset
from cifar_repro.metrics import load_metrics, mean_samples_per_second
from cifar_repro.run import run_training
from cifar_repro.schema import with_defaults

EXPERIMENT = with_defaults(
    {
        "dataset": "cifar10",
        "network": "resnet",
        "num_layers": 20,
        "data_shape": [3, 28, 28],
        "batch_size": 64,
        "num_epochs": 3,  # each run sets its own
        "optimizer": "sgd",
        "optimizer_params": {"learning_rate": 0.05, "momentum": 0.9, "wd": 0.0001},
        "gpus": 0,  # one CPU context, as the Module.fit baseline
        "augment": {"rand_crop": True, "rand_mirror": True},
        "disp_batches": 10_000,
    }
)


def rule_loop_throughput(data: PackedDataset, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as work:
        job = TrainingJob.under(work, "benchmark", EXPERIMENT | {"num_epochs": epochs}, data)
        run_training(job, threads=1)
        return mean_samples_per_second(load_metrics(job.outputs.metrics))


def module_fit_throughput(data: PackedDataset, epochs: int) -> float:
    """Samples/s of MXNet's Module.fit, timed by whole epochs like the training loop's figure
    (start-up of the epoch's first batch included): the spacing of its epoch-end callbacks."""
    batches = training.record_iter(data, EXPERIMENT, train=True, seed=0)
    symbol = networks.build("resnet", 10, num_layers=EXPERIMENT["num_layers"])
    module = mx.mod.Module(symbol, context=[mx.cpu()])
    epoch_ends: list[float] = []
    module.fit(
        batches,
        num_epoch=epochs,
        optimizer=EXPERIMENT["optimizer"],
        optimizer_params=EXPERIMENT["optimizer_params"],
        kvstore="local",
        initializer=mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2),
        eval_metric=["acc", "ce"],
        epoch_end_callback=lambda *_: epoch_ends.append(time.time()),
    )
    samples = len(Path(data.train_idx).read_text().splitlines())
    return statistics.mean(samples / (end - start) for start, end in itertools.pairwise(epoch_ends))


def loader_throughput(data: PackedDataset, epochs: int) -> float:
    images, started = 0, time.time()
    for epoch in range(epochs):
        for batch in training.record_iter(data, EXPERIMENT, train=True, seed=epoch):
            batch.data[0].wait_to_read()
            images += batch.data[0].shape[0] - batch.pad
    return images / (time.time() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output-dir", required=True, help="the workflow's output_dir: its cifar10/rec/ is used"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = layout.packed_dataset(args.output_dir, "cifar10")
    ours, baseline = [], []
    for _ in range(args.rounds):
        ours.append(rule_loop_throughput(data, args.epochs))
        baseline.append(module_fit_throughput(data, args.epochs))
    loader = loader_throughput(data, args.epochs)
    result = {
        "network": f"resnet-{EXPERIMENT['num_layers']}",
        "batch_size": EXPERIMENT["batch_size"],
        "data_shape": EXPERIMENT["data_shape"],
        "rounds": args.rounds,
        "epochs_per_round": args.epochs,
        "training.train samples/s": [round(x, 1) for x in ours],
        "Module.fit samples/s (baseline)": [round(x, 1) for x in baseline],
        "ratio (median)": round(statistics.median(ours) / statistics.median(baseline), 3),
        "ImageRecordIter alone images/s": round(loader, 1),
        "mxnet": mx.__version__,
    }
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
