"""Train one experiment with MXNet's Module API, in the manner of MXNet's
example/image-classification/common/fit.py: ImageRecordIter on the packed .rec/.idx (random crop and
mirror for training, centre crop for validation, mean image subtracted), data-parallel over N
devices, Xavier initialisation, one readable epoch loop.

Exact resume: after every epoch the parameters, the optimizer state (with the optimizer itself, so
update counts survive) and the metrics so far are checkpointed outside the declared outputs. A rerun
continues from the last complete epoch. Each epoch builds its loader afresh with a shuffle seed and
seeds the random operators (e.g. RReLU slopes) from (seed, epoch), one decoding thread makes the
crops reproducible, and the learning rate is a function of the epoch, so a resumed run repeats
exactly what an uninterrupted one does.
"""

import argparse
import contextlib
import csv
import hashlib
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx
import numpy as np

import devices
import networks
from atomic import atomic_path
from cli import InputError, TrainingError, run

log = logging.getLogger("cifar-repro")

NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
TOP_K = 5
# MXNet 1.x's AdaDelta takes no learning rate: its lr column stays empty
WITHOUT_LEARNING_RATE = {"adadelta"}


# ---------------------------------------------------------------- pure helpers


def learning_rate(base_lr: float, schedule: dict, epoch: int) -> float:
    """Learning rate of 0-based `epoch`: fixed, or multiplied by `factor` at every boundary of
    `step_epochs` (an interval, or a list of epochs) that has been passed."""
    if schedule["type"] == "fixed":
        return base_lr
    steps = schedule["step_epochs"]
    passed = epoch // steps if isinstance(steps, int) else sum(epoch >= step for step in steps)
    return base_lr * schedule["factor"] ** passed


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed for each epoch (fits the C int ImageRecordIter takes)."""
    return (seed * 1_000_003 + epoch) % (2**31 - 1)


def reports_top_k(num_classes: int) -> bool:
    """CIFAR-100 results are quoted with top-5 accuracy too; for 10 classes it says little."""
    return num_classes > 10


def metric_columns(num_classes: int) -> list[str]:
    names = ["accuracy", "cross_entropy"] + ([f"top{TOP_K}_accuracy"] if reports_top_k(num_classes) else [])
    return (["epoch", "lr"] + [f"train_{n}" for n in names] + [f"val_{n}" for n in names]
            + ["seconds", "samples_per_second"])


def make_metric(num_classes: int) -> mx.metric.CompositeEvalMetric:
    metric = mx.metric.CompositeEvalMetric()
    metric.add(mx.metric.Accuracy())
    metric.add(mx.metric.CrossEntropy())
    if reports_top_k(num_classes):
        metric.add(mx.metric.TopKAccuracy(top_k=TOP_K))
    return metric


def fingerprint(experiment: dict, num_classes: int) -> str:
    """Identifies what a checkpoint was trained for, so a changed experiment starts afresh."""
    text = json.dumps({"experiment": experiment, "num_classes": num_classes}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def frozen_parameters(argument_names: list[str], frozen_layers: list[str]) -> list[str]:
    """The parameters of the named layers (MXNet names them <layer>_weight, <layer>_gamma, ...)."""
    return [name for name in argument_names if any(name.startswith(f"{layer}_") for layer in frozen_layers)]


def check_mean_shape(mean_path: str, data_shape: tuple[int, ...]) -> None:
    """ImageRecordIter does not check this: a wrong-sized mean is silently misapplied."""
    shape = tuple(mx.nd.load(mean_path)["mean_img"].shape)
    if shape != tuple(data_shape):
        raise InputError(f"{mean_path}: mean image has shape {shape}, but data_shape is {tuple(data_shape)}; "
                         f"use mean_{data_shape[1]}x{data_shape[2]}.bin")


# ---------------------------------------------------------------- model and checkpoints


def save_params(path: Path, arg_params: dict, aux_params: dict) -> None:
    """In mx.model.save_checkpoint's format ("arg:"/"aux:" prefixes), written atomically."""
    arrays = {f"arg:{k}": v for k, v in arg_params.items()} | {f"aux:{k}": v for k, v in aux_params.items()}
    with atomic_path(path) as partial:
        mx.nd.save(str(partial), arrays)


def load_params(path: str | Path) -> tuple[dict, dict]:
    loaded = mx.nd.load(str(path))
    arg = {k[4:]: v for k, v in loaded.items() if k.startswith("arg:")}
    aux = {k[4:]: v for k, v in loaded.items() if k.startswith("aux:")}
    return arg, aux


def initial_model(experiment: dict, num_classes: int, init_symbol: str | None, init_params: str | None):
    """(symbol, arg_params, aux_params, description) the experiment starts from."""
    init = experiment["init"]
    if init["type"] == "scratch":
        options = {k: experiment[k] for k in ("num_layers",) if k in experiment}
        return networks.build(experiment["network"], num_classes, **options), None, None, "random (Xavier)"
    try:
        symbol = mx.sym.load(init_symbol)
        arg_params, aux_params = load_params(init_params)
    except mx.base.MXNetError as error:
        raise InputError(f"{init_symbol} / {init_params}: not a loadable MXNet model: {error}") from error
    if init["type"] == "experiment":
        return symbol, arg_params, aux_params, f"experiment {init['experiment']} ({init_params})"
    try:
        symbol, arg_params = networks.fine_tune(symbol, arg_params, num_classes, init["layer"])
    except ValueError as error:
        raise InputError(f"{init_symbol}: {error}") from error
    return symbol, arg_params, aux_params, f"pretrained {init['model']} cut at {init['layer']} ({init_params})"


def updater_of(module: mx.mod.Module):
    """The object that applies updates: the kvstore's when the kvstore updates, else the module's."""
    return module._kvstore._updater if module._update_on_kvstore else module._updater  # noqa: SLF001


@dataclass
class Checkpoints:
    """Per-epoch checkpoints in a folder Snakemake does not manage, so they survive failures."""

    folder: Path
    fingerprint: str

    def params_path(self, epoch: int) -> Path:
        return self.folder / f"model-{epoch:04d}.params"

    def states_path(self, epoch: int) -> Path:
        return self.folder / f"model-{epoch:04d}.states"

    @property
    def progress_path(self) -> Path:
        return self.folder / "progress.json"

    def latest(self) -> tuple[int, list[dict]]:
        """(completed epochs, metric rows) to resume from; (0, []) for a fresh start."""
        if not self.progress_path.exists():
            return 0, []
        progress = json.loads(self.progress_path.read_text())
        if progress["fingerprint"] != self.fingerprint:
            log.warning("%s: checkpoints are from a different experiment configuration; starting afresh",
                        self.folder)
            return 0, []
        return progress["epoch"], progress["rows"]

    def save(self, epoch: int, module: mx.mod.Module, rows: list[dict]) -> None:
        """Parameters and optimizer state first, the progress record last: it marks the epoch done."""
        save_params(self.params_path(epoch), *module.get_params())
        with atomic_path(self.states_path(epoch)) as partial:
            partial.write_bytes(updater_of(module).get_states(dump_optimizer=True))
        with atomic_path(self.progress_path) as partial:
            partial.write_text(json.dumps({"fingerprint": self.fingerprint, "epoch": epoch, "rows": rows}))
        if epoch > 1:  # keep the initial model (epoch 0) and the latest epoch only
            self.params_path(epoch - 1).unlink(missing_ok=True)
            self.states_path(epoch - 1).unlink(missing_ok=True)


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Data:
    train_rec: str
    train_idx: str
    val_rec: str
    val_idx: str
    mean: str | None


def record_iter(data: Data, experiment: dict, train: bool, seed: int) -> mx.io.ImageRecordIter:
    augment = experiment["augment"] if train else {"rand_crop": False, "rand_mirror": False}
    options = dict(
        path_imgrec=data.train_rec if train else data.val_rec,
        path_imgidx=data.train_idx if train else data.val_idx,
        data_shape=tuple(experiment["data_shape"]),
        batch_size=experiment["batch_size"],
        shuffle=train,
        seed=seed,  # the shuffle's
        rand_crop=augment["rand_crop"],  # without it, the centre crop
        rand_mirror=augment["rand_mirror"],
        # Each decoding thread draws crops from its own generator, and records go to whichever thread
        # is free: one thread makes the draws reproducible. (seed_aug would too, but it reseeds by
        # position in the batch, so every batch of an epoch would get the same crops.)
        preprocess_threads=experiment["loader_threads"],
    )
    if data.mean:
        options["mean_img"] = data.mean
    return mx.io.ImageRecordIter(**options)


# ---------------------------------------------------------------- training


def evaluate(module: mx.mod.Module, batches, metric: mx.metric.EvalMetric) -> int:
    """Update `metric` over `batches` (forward only); return the sample count. Padding that
    completes the last batch is left out."""
    metric.reset()
    samples = 0
    for batch in batches:
        module.forward(batch, is_train=False)
        real = batch.data[0].shape[0] - batch.pad
        metric.update([batch.label[0][:real]], [module.get_outputs()[0][:real]])
        samples += real
    return samples


def metric_values(metric: mx.metric.CompositeEvalMetric, prefix: str) -> dict[str, float]:
    names = {"accuracy": "accuracy", "cross-entropy": "cross_entropy", f"top_k_accuracy_{TOP_K}": f"top{TOP_K}_accuracy"}
    return {f"{prefix}_{names[name]}": float(value) for name, value in zip(*metric.get())}


def batch_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean cross-entropy of a batch, unclipped (MXNet's metric adds 1e-12 and hides an infinite
    loss): inf when the true class gets probability 0, nan when the outputs are nan."""
    with np.errstate(divide="ignore"):
        return float(-np.log(probabilities[np.arange(len(labels)), labels.astype(np.int64)]).mean())


def train_epoch(module, batches, metric, epoch: int, lr: float, disp_batches: int) -> int:
    """One pass over the training data; returns the sample count. Stops on a NaN/inf loss."""
    metric.reset()
    last_report = time.time()
    samples = reported_samples = 0
    for number, batch in enumerate(batches, start=1):
        module.forward_backward(batch)
        module.update()
        real = batch.data[0].shape[0] - batch.pad
        labels, probabilities = batch.label[0][:real], module.get_outputs()[0][:real]
        metric.update([labels], [probabilities])
        samples += real
        loss = batch_loss(labels.asnumpy(), probabilities.asnumpy())
        if not math.isfinite(loss):
            raise TrainingError(f"loss is {loss} at epoch {epoch}, batch {number}, learning rate {lr:g}: "
                                "training diverged (lower the learning rate?)")
        if number % disp_batches == 0:
            now = time.time()
            log.info("epoch %d batch %d: %.1f samples/s, %s", epoch, number,
                     (samples - reported_samples) / (now - last_report),
                     ", ".join(f"{n} {v:.4f}" for n, v in zip(*metric.get())))
            last_report, reported_samples = now, samples
    return samples


def git_revision(folder: Path) -> str:
    try:
        revision = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                                  text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return revision + ("-dirty" if dirty else "")


def write_metrics(path: Path, rows: list[dict], columns: list[str]) -> None:
    with atomic_path(path) as partial, open(partial, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@dataclass(frozen=True)
class Outputs:
    metrics: Path
    symbol: Path
    params: Path
    numbered_params: Path  # the final params again, as mx.model.load_checkpoint(prefix, epoch) names them
    run: Path
    checkpoints: Path


def train(name: str, experiment: dict, data: Data, outputs: Outputs, gpus: int, gpu_ids: list[int],
          lock_dir: str, init_symbol: str | None = None, init_params: str | None = None) -> None:
    started = time.time()
    num_classes = NUM_CLASSES[experiment["dataset"]]
    if data.mean:
        check_mean_shape(data.mean, experiment["data_shape"])
    symbol, arg_params, aux_params, init_description = initial_model(experiment, num_classes, init_symbol,
                                                                     init_params)
    if gpus != experiment["gpus"]:
        log.warning("!!! %s asks for %d GPUs but this run grants %d (snakemake --resources gpu=...): "
                    "training on %d devices", name, experiment["gpus"], gpus, gpus)
    contexts, lease, device_description = devices.training_devices(gpus, gpu_ids, lock_dir, log)
    with lease or contextlib.nullcontext():
        checkpoints = Checkpoints(outputs.checkpoints, fingerprint(experiment, num_classes))
        outputs.checkpoints.mkdir(parents=True, exist_ok=True)
        begin, rows = checkpoints.latest()
        module = mx.mod.Module(symbol, context=contexts,
                               fixed_param_names=frozen_parameters(symbol.list_arguments(),
                                                                   experiment["init"].get("freeze", [])))
        batch_size, data_shape = experiment["batch_size"], tuple(experiment["data_shape"])
        module.bind(data_shapes=[("data", (batch_size, *data_shape))], label_shapes=[("softmax_label", (batch_size,))])
        mx.random.seed(experiment["seed"])
        np.random.seed(experiment["seed"])
        if begin:
            log.info("resuming %s after epoch %d from %s", name, begin, outputs.checkpoints)
            resumed_arg, resumed_aux = load_params(checkpoints.params_path(begin))
            module.init_params(arg_params=resumed_arg, aux_params=resumed_aux)
        else:
            log.info("%s starts from %s", name, init_description)
            # fit.py's initializer; pretrained parameters are kept, the rest (a new fc) initialised
            module.init_params(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2),
                               arg_params=arg_params, aux_params=aux_params,
                               allow_missing=arg_params is not None, allow_extra=arg_params is not None)
            save_params(checkpoints.params_path(0), *module.get_params())
        # fit.py's kvstore for GPUs; "local" aggregates on the CPU for CPU contexts
        module.init_optimizer(kvstore="device" if devices.cuda_available() else "local",
                              optimizer=experiment["optimizer"], optimizer_params=experiment["optimizer_params"])
        if begin:
            updater_of(module).set_states(checkpoints.states_path(begin).read_bytes())
        metric = make_metric(num_classes)
        base_lr = experiment["optimizer_params"].get("learning_rate", 0.01)  # MXNet optimizers' default
        for epoch in range(begin, experiment["num_epochs"]):
            lr = learning_rate(base_lr, experiment["lr_schedule"], epoch)
            updater_of(module).optimizer.set_learning_rate(lr)
            mx.random.seed(epoch_seed(experiment["seed"], epoch))
            epoch_start = time.time()  # the epoch's loader start-up counts too
            batches = record_iter(data, experiment, train=True, seed=epoch_seed(experiment["seed"], epoch))
            samples = train_epoch(module, batches, metric, epoch + 1, lr, experiment["disp_batches"])
            seconds = time.time() - epoch_start
            shown_lr = "" if experiment["optimizer"] in WITHOUT_LEARNING_RATE else lr
            row = {"epoch": epoch + 1, "lr": shown_lr, **metric_values(metric, "train")}
            # MXNet's oneDNN BatchNorm updates its moving statistics in the backward pass without
            # declaring them as outputs to the engine, so reading them now could race the last batch's
            # update (it did, for bn0, whose backward runs last). Wait for every pending operation.
            mx.nd.waitall()
            # Each device updates its own BatchNorm moving statistics; get_params averages them. Setting
            # the average back makes validation, the checkpoint and a resumed run see the same model.
            module.set_params(*module.get_params())
            # A fresh loader, never reset(): in MXNet 1.9.1 a reset ImageRecordIter whose last batch was
            # partial starts the next pass shifted, and a reset during its first prefetch is racy.
            evaluate(module, record_iter(data, experiment, train=False, seed=0), metric)
            row |= metric_values(metric, "val") | {"seconds": round(seconds, 3),
                                                    "samples_per_second": round(samples / seconds, 1)}
            rows.append(row)
            log.info("epoch %d done: %s", epoch + 1, ", ".join(f"{k} {v:.4g}" for k, v in row.items()
                                                             if k != "epoch" and v != ""))
            checkpoints.save(epoch + 1, module, rows)
        final_arg, final_aux = module.get_params()
    write_outputs(name, experiment, outputs, symbol, final_arg, final_aux, rows, num_classes,
                  {"description": device_description, "contexts": [str(c) for c in contexts],
                   "gpu_ids": lease.ids if lease else []},
                  {"initialised_from": init_description, "resumed_after_epoch": begin,
                   "wall_seconds": round(time.time() - started, 3),
                   "training_seconds": round(sum(r["seconds"] for r in rows), 3)})


def write_outputs(name, experiment, outputs: Outputs, symbol, arg, aux, rows, num_classes, device_info, timing):
    write_metrics(outputs.metrics, rows, metric_columns(num_classes))
    with atomic_path(outputs.symbol) as partial:
        symbol.save(str(partial))
    save_params(outputs.params, arg, aux)
    outputs.numbered_params.unlink(missing_ok=True)
    os.link(outputs.params, outputs.numbered_params)
    record = {
        "experiment": name, "config": experiment, "num_classes": num_classes, "devices": device_info,
        **timing,
        "final": rows[-1] if rows else None,
        "versions": {"python": platform.python_version(), "mxnet": mx.__version__, "numpy": np.__version__},
        "git_revision": git_revision(Path(__file__).resolve().parent),
        "host": platform.node(),
    }
    with atomic_path(outputs.run) as partial:
        partial.write_text(json.dumps(record, indent=2) + "\n")


def _main(args: argparse.Namespace) -> None:
    experiment = json.loads(args.experiment_json)
    folder = Path(args.out_dir)
    train(
        args.name, experiment,
        Data(args.train_rec, args.train_idx, args.val_rec, args.val_idx, args.mean),
        Outputs(folder / "metrics.csv", folder / "model-symbol.json", folder / "model-final.params",
                folder / f"model-{experiment['num_epochs']:04d}.params", folder / "run.json",
                Path(args.checkpoint_dir)),
        gpus=args.gpus, gpu_ids=json.loads(args.gpu_ids), lock_dir=args.lock_dir,
        init_symbol=args.init_symbol, init_params=args.init_params,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="experiment name")
    parser.add_argument("--experiment-json", required=True, help="the experiment's resolved config")
    parser.add_argument("--train-rec", required=True)
    parser.add_argument("--train-idx", required=True)
    parser.add_argument("--val-rec", required=True)
    parser.add_argument("--val-idx", required=True)
    parser.add_argument("--mean", help="mean image (.bin) to subtract")
    parser.add_argument("--init-symbol", help="symbol .json of the model to start from")
    parser.add_argument("--init-params", help=".params of the model to start from")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--gpus", type=int, required=True, help="devices granted to this job")
    parser.add_argument("--gpu-ids", default="[]", help="JSON list of the machine's GPU ids")
    parser.add_argument("--lock-dir", required=True, help="where GPU lock files live")
    return run(_main, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
