"""Train one run with MXNet's Module API, in the manner of MXNet's
example/image-classification/common/fit.py: ImageRecordIter on the packed .rec/.idx (random crop and
mirror for training, centre crop for validation, mean image subtracted), data-parallel over N
devices, Xavier initialisation, one epoch loop. Progress is logged in fit.py's formats
(`Epoch[0] Batch [20]\tSpeed: ... samples/sec\taccuracy=...`, `Epoch[0] Train-accuracy=...`,
`Epoch[0] Time cost=...`, `Epoch[0] Validation-accuracy=...`, epochs counted from 0 as MXNet
does), so tools/parse_log.py reads the log; metrics.csv (epochs counted from 1) is the data.

Exact resume (checkpoints.py): each epoch builds its loader afresh with a shuffle seed and seeds
the random operators (e.g. RReLU slopes) from (seed, epoch), one decoding thread makes the crops
reproducible, and the learning rate is a function of the epoch, so a run resumed after its last
checkpoint repeats exactly what an uninterrupted one does.

Distributed (an experiment with `distributed`, in a worker started by launcher.py): the module
trains through the job's kvstore; each worker reads its own part of the training .rec
(ImageRecordIter's num_parts/part_index) for the same number of batches, so the global batch is
batch_size x workers; rank 0 alone validates on the whole test set and writes checkpoints, metrics
and the final model, and every worker resumes from the same checkpoint.
"""

import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import mxnet as mx
import numpy as np

from . import devices, networks
from .archive import NUM_CLASSES
from .atomic import atomic_path
from .augment import MemoryBatches
from .checkpoints import Checkpoints, current_optimizer, fingerprint, load_params, save_params
from .config_checks import in_memory as augments_in_memory
from .errors import InputError, TrainingError
from .job import TrainingJob
from .layout import PackedDataset
from .lookahead import Lookahead
from .metrics import COLUMN_OF_MXNET_METRIC, TOP_K, reports_top_k, write_metrics
from .models import InitialModel, check_mean_shape, frozen_parameters, initial_model, initializer
from .precision import Precision, choose_precision
from .provenance import provenance
from .ranks import join_kvstore
from .records import record_keys
from .schema import training_settings
from .stopping import StopConditions
from .whitening import STEM_SIZE, load_filters

log = logging.getLogger(__name__)

WHITENING_WEIGHT, WHITENING_BIAS = f"{networks.WHITENING_LAYER}_weight", f"{networks.WHITENING_LAYER}_bias"
# MXNet 1.x's AdaDelta takes no learning rate: its lr column stays empty
WITHOUT_LEARNING_RATE = {"adadelta"}
DEFAULT_LEARNING_RATE = 0.01  # MXNet optimizers' default


def learning_rate(base_lr: float, schedule: dict, epoch: float, num_epochs: int) -> float:
    """Learning rate at `epoch`, counted from 0, a fraction inside an epoch: fixed; multiplied by
    `factor` at every boundary of `step_epochs` (an interval, or a list of epochs) that has been
    passed; one cycle, linearly up from 0 over `warmup_epochs` and down to 0 at `num_epochs`; or
    piecewise linear between `points` of (fraction of the training, factor)."""
    kind = schedule["type"]
    if kind == "fixed":
        return base_lr
    if kind == "piecewise_linear":
        fractions, factors = zip(*schedule["points"], strict=True)
        return base_lr * float(np.interp(epoch / num_epochs, fractions, factors))
    if kind == "one_cycle":
        warmup = schedule["warmup_epochs"]
        if epoch < warmup:
            return base_lr * epoch / warmup
        return base_lr * max(0.0, (num_epochs - epoch) / (num_epochs - warmup))
    steps, whole_epochs = schedule["step_epochs"], math.floor(epoch)
    passed = whole_epochs // steps if isinstance(steps, int) else sum(whole_epochs >= step for step in steps)
    return base_lr * schedule["factor"] ** passed


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed for each epoch (fits the C int ImageRecordIter takes)."""
    return (seed * 1_000_003 + epoch) % (2**31 - 1)


def make_metric(num_classes: int) -> mx.metric.CompositeEvalMetric:
    metric = mx.metric.CompositeEvalMetric()
    metric.add(mx.metric.Accuracy())
    metric.add(mx.metric.CrossEntropy())
    if reports_top_k(num_classes):
        metric.add(mx.metric.TopKAccuracy(top_k=TOP_K))
    return metric


def metric_row(metric: mx.metric.EvalMetric, prefix: str) -> dict[str, float]:
    """The metric's values as metrics.csv columns: {prefix}_accuracy, ..."""
    return {
        f"{prefix}_{COLUMN_OF_MXNET_METRIC[name]}": float(value) for name, value in metric.get_name_value()
    }


def record_iter(
    data: PackedDataset, experiment: dict, train: bool, seed: int, part: tuple[int, int] = (0, 1)
) -> mx.io.ImageRecordIter:
    """The training split (shuffled, augmented; `part` = (index, count) of it), or the whole test
    split (centre crops)."""
    augment = experiment["augment"] if train else {"rand_crop": False, "rand_mirror": False, "pad": 0}
    options = dict(
        path_imgrec=data.train_rec if train else data.val_rec,
        path_imgidx=data.train_idx if train else data.val_idx,
        data_shape=tuple(experiment["data_shape"]),
        batch_size=experiment["batch_size"],
        shuffle=train,
        seed=seed,  # the shuffle's
        rand_crop=augment["rand_crop"],  # without it, the centre crop
        rand_mirror=augment["rand_mirror"],
        pad=augment["pad"],
        fill_value=127,  # mid-grey, near the images' mean (MXNet's default is white)
        # Each decoding thread draws crops from its own generator, and records go to whichever thread
        # is free: one thread makes the draws reproducible. (seed_aug would too, but it reseeds by
        # position in the batch, so every batch of an epoch would get the same crops.)
        preprocess_threads=experiment["loader_threads"],
        part_index=part[0],
        num_parts=part[1],
    )
    if data.mean:
        options["mean_img"] = data.mean
    return mx.io.ImageRecordIter(**options)


def test_time_views(images: mx.nd.NDArray, flip: bool, shift: int) -> list[mx.nd.NDArray]:
    """The images; with `shift`, also shifted by that many pixels down-right and up-left (the border
    reflected in); with `flip`, also the mirror image of each of those."""
    views = [images]
    if shift:
        height, width = images.shape[2:]
        padded = mx.nd.pad(images, mode="reflect", pad_width=(0, 0, 0, 0, shift, shift, shift, shift))
        views += [padded[:, :, :height, :width], padded[:, :, 2 * shift :, 2 * shift :]]
    if flip:
        views += [mx.nd.flip(view, axis=3) for view in views]
    return views


def view_weights(flip: bool, shift: int, weighting: str) -> list[float] | None:
    """The weight of each of test_time_views (None: their plain mean). half_shifted: the image and its
    mirror share one half, the shifted views the other."""
    if weighting == "uniform" or not shift:
        return None
    unshifted, shifted = (2, 4) if flip else (1, 2)
    weights = [0.5 / unshifted] + [0.5 / shifted] * 2
    return weights * 2 if flip else weights


def evaluate(
    module: mx.mod.Module,
    batches,
    metric: mx.metric.EvalMetric,
    flip: bool = False,
    shift: int = 0,
    weighting: str = "uniform",
) -> None:
    """Update `metric` over `batches` (forward only), leaving out the padding of the last batch;
    with `flip` or `shift`, on the mean of the outputs for each image's test_time_views, weighted as
    `weighting` says."""
    metric.reset()
    weights = view_weights(flip, shift, weighting)
    for batch in batches:
        views = test_time_views(batch.data[0], flip, shift)
        probabilities = 0
        for number, view in enumerate(views):
            module.forward(mx.io.DataBatch([view], batch.label, pad=batch.pad), is_train=False)
            # a sum, not +=: the next forward pass overwrites the outputs
            outputs = module.get_outputs()[0]
            probabilities = probabilities + (outputs if weights is None else outputs * weights[number])
        real = batch.data[0].shape[0] - batch.pad
        mean = probabilities[:real] / len(views) if weights is None else probabilities[:real]
        metric.update([batch.label[0][:real]], [mean])


def batch_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean cross-entropy of a batch, unclipped (MXNet's metric adds 1e-12 and hides an infinite
    loss): inf when the true class gets probability 0, nan when the outputs are nan."""
    with np.errstate(divide="ignore"):
        return float(-np.log(probabilities[np.arange(len(labels)), labels.astype(np.int64)]).mean())


def log_metric(epoch: int, split: str, metric: mx.metric.EvalMetric) -> None:
    for name, value in metric.get_name_value():
        log.info("Epoch[%d] %s-%s=%f", epoch, split, name, value)


def train_epoch(
    module,
    batches,
    metric,
    epoch: int,
    lr_of_batch: Callable[[int], float],
    disp_batches: int,
    after_update: Callable[[int], None] | None = None,
) -> int:
    """One pass over the training data (`epoch` counted from 0), at the learning rate
    `lr_of_batch(number)` for batch `number` (from 1), calling `after_update(number)` after each
    update; returns the sample count. Stops on a NaN/inf loss."""
    metric.reset()
    last_report = time.time()
    samples = reported_samples = 0
    optimizer = current_optimizer(module)
    for number, batch in enumerate(batches, start=1):
        lr = lr_of_batch(number)
        optimizer.set_learning_rate(lr)
        module.forward_backward(batch)
        module.update()
        if after_update:
            after_update(number)
        real = batch.data[0].shape[0] - batch.pad
        labels, probabilities = batch.label[0][:real], module.get_outputs()[0][:real]
        metric.update([labels], [probabilities])
        samples += real
        loss = batch_loss(labels.asnumpy(), probabilities.asnumpy())
        if not math.isfinite(loss):
            raise TrainingError(
                f"loss is {loss} at epoch {epoch + 1}, batch {number}, learning rate {lr:g}: "
                "training diverged (lower the learning rate?)"
            )
        if number % disp_batches == 0:
            now = time.time()
            speed = (samples - reported_samples) / (now - last_report)
            values = "".join(f"\t{name}={value:f}" for name, value in metric.get_name_value())
            log.info("Epoch[%d] Batch [%d]\tSpeed: %.2f samples/sec%s", epoch, number, speed, values)
            last_report, reported_samples = now, samples
    return samples


def batches_per_epoch(data: PackedDataset, experiment: dict, workers: int) -> int:
    """Batches every worker trains per epoch. One process: every image, the last batch padded
    (ImageRecordIter's round_batch). Several: full batches of the smallest part, so that all of
    them push the same number of times (a worker waiting for one more push would wait forever)."""
    images = len(record_keys(data.train_idx))
    if workers == 1:
        return math.ceil(images / experiment["batch_size"])
    batches = images // workers // experiment["batch_size"]
    if batches == 0:
        raise InputError(
            f"{data.train_idx}: {images} training images give none of {workers} workers a full "
            f"batch of {experiment['batch_size']}"
        )
    return batches


@dataclass
class Session:
    """A run in training: what each step of the loop reads and updates."""

    job: TrainingJob
    start: InitialModel
    assigned: devices.Assignment
    precision: Precision
    checkpoints: Checkpoints
    module: mx.mod.Module
    kvstore: mx.kvstore.KVStore | None  # a distributed job's; None in a single process
    epoch_batches: int
    begin: int  # epochs done before this attempt (a resumed run's)
    rows: list[dict]  # metrics.csv so far
    metric: mx.metric.CompositeEvalMetric
    in_memory: MemoryBatches | None  # the training split, for augmentation ImageRecordIter cannot do
    lookahead: Lookahead | None

    @property
    def rank(self) -> int:
        return self.kvstore.rank if self.kvstore else 0

    @property
    def workers(self) -> int:
        return self.kvstore.num_workers if self.kvstore else 1

    @property
    def lead(self) -> bool:
        """Whether this process validates and writes: a single process, or rank 0."""
        return self.rank == 0


def set_up(
    job: TrainingJob, start: InitialModel, assigned: devices.Assignment, precision: Precision
) -> Session:
    """Bind the module on the assigned devices, in its precision; initialise it (or resume it from
    the last checkpoint) and its optimizer; in a distributed job, join the kvstore first."""
    experiment = job.experiment
    checkpoints = checkpoints_of(job)
    begin, rows = checkpoints.latest()  # before joining: rank 0 cannot move on until all have
    kvstore = None
    if job.distributed:
        kvstore = join_kvstore(job.distributed["kvstore"], checkpoints.run_log, job.distributed_dir)
        # in this worker's own log, which it has only now that it knows its rank
        log.info(
            "worker rank %d trains on GPU ids %s: %s", kvstore.rank, assigned.gpu_ids, assigned.description
        )
    epoch_batches = batches_per_epoch(job.data, experiment, kvstore.num_workers if kvstore else 1)
    frozen = frozen_parameters(start.symbol.list_arguments(), experiment["init"].get("freeze", []))
    if job.whitening:
        frozen.append(WHITENING_WEIGHT)
    symbol = networks.in_bfloat16(start.symbol) if precision.used == "bf16" else start.symbol
    module = mx.mod.Module(symbol, context=assigned.contexts, fixed_param_names=frozen)
    batch_size, data_shape = experiment["batch_size"], tuple(experiment["data_shape"])
    module.bind(
        data_shapes=[("data", (batch_size, *data_shape))], label_shapes=[("softmax_label", (batch_size,))]
    )
    mx.random.seed(experiment["seed"])
    np.random.seed(experiment["seed"])
    if begin:
        log.info("resuming %s after epoch %d from %s", job.run, begin, job.checkpoint_dir)
        resumed_arg, resumed_aux = load_params(checkpoints.params_path(begin))
        module.init_params(arg_params=resumed_arg, aux_params=resumed_aux)
    else:
        log.info("%s starts from %s", job.run, start.description)
        # pretrained parameters (and whitening filters) are kept, the rest (a new fc) initialised.
        # Every worker draws the same values: the same seed, on the CPU.
        given = start.arg_params
        if job.whitening:
            filters = load_filters(job.whitening, data_shape[0], STEM_SIZE)
            given = (given or {}) | {WHITENING_WEIGHT: mx.nd.array(filters)}
        module.init_params(
            initializer(experiment["init"]),
            arg_params=given, aux_params=start.aux_params,
            allow_missing=given is not None, allow_extra=start.arg_params is not None,
        )  # fmt: skip
        if not kvstore or kvstore.rank == 0:
            save_params(checkpoints.params_path(0), *module.get_params())
    # fit.py's kvstore for GPUs; "local" aggregates on the CPU for CPU contexts
    local_kvstore = "local" if assigned.contexts[0].device_type == "cpu" else "device"
    module.init_optimizer(
        kvstore=kvstore or local_kvstore,
        optimizer=experiment["optimizer"],
        optimizer_params=experiment["optimizer_params"],
    )
    if begin:
        checkpoints.restore(begin, module)
    metric = make_metric(num_classes_of(job))
    in_memory = None
    if augments_in_memory(experiment["augment"]):
        mean = mx.nd.load(job.data.mean)["mean_img"].asnumpy() if job.data.mean else None
        part = (kvstore.rank, kvstore.num_workers) if kvstore else (0, 1)
        in_memory = MemoryBatches(job.data, experiment, experiment["seed"], part, mean)
    lookahead = None
    if "lookahead" in experiment:
        lookahead = Lookahead(experiment["lookahead"], epoch_batches, experiment["num_epochs"])
        lookahead.resume(module, begin)
    return Session(
        job, start, assigned, precision, checkpoints, module, kvstore, epoch_batches, begin, rows, metric,
        in_memory, lookahead,
    )  # fmt: skip


def set_multipliers(
    optimizer: mx.optimizer.Optimizer, experiment: dict, names: list[str], epoch: int
) -> None:
    """The experiment's per-parameter learning-rate and weight-decay factors (the first matching
    rule of `param_multipliers`), and the whitening stem's bias frozen after its epochs (lr 0)."""
    lr_mult, wd_mult = {}, {}
    for name in names:
        rule = next(
            (rule for rule in experiment["param_multipliers"] if re.search(rule["match"], name)), None
        )
        if rule:
            lr_mult[name], wd_mult[name] = rule["lr_mult"], rule["wd_mult"]
    whitening = experiment.get("whitening")
    if whitening and epoch >= whitening["bias_epochs"]:
        lr_mult[WHITENING_BIAS] = 0.0
    optimizer.set_lr_mult(lr_mult)
    optimizer.set_wd_mult(wd_mult)


def run_epoch(session: Session, epoch: int, stop: StopConditions) -> dict:
    """Train one epoch (counted from 0) at the schedule's rates, with the epoch's seeds, unless `stop`
    says to stop between two batches; return its metrics.csv row so far (validation comes later)."""
    experiment, module = session.job.experiment, session.module
    base_lr = experiment["optimizer_params"].get("learning_rate", DEFAULT_LEARNING_RATE)
    num_epochs, schedule = experiment["num_epochs"], experiment["lr_schedule"]

    def lr_of_batch(number: int) -> float:
        # at the middle of the batch, as a fraction of the epoch (a one-cycle rate moves with it)
        return learning_rate(base_lr, schedule, epoch + (number - 0.5) / session.epoch_batches, num_epochs)

    lr = lr_of_batch(1)  # the epoch's rate in the log and metrics.csv
    has_lr = experiment["optimizer"] not in WITHOUT_LEARNING_RATE
    optimizer = current_optimizer(module)
    if has_lr and (epoch == session.begin or lr != optimizer.lr):  # lr_scheduler's message
        log.info("Update[%d]: Change learning rate to %0.5e", optimizer.num_update, lr)
    if experiment["param_multipliers"] or "whitening" in experiment:
        set_multipliers(optimizer, experiment, module._param_names, epoch)  # noqa: SLF001
    mx.random.seed(epoch_seed(experiment["seed"], epoch))
    tic = time.time()  # the epoch's loader start-up counts too
    seed = epoch_seed(experiment["seed"], epoch)
    if session.in_memory:
        batches = session.in_memory.epoch(epoch, seed, session.epoch_batches if session.kvstore else None)
    else:
        batches = record_iter(
            session.job.data, experiment, train=True, seed=seed, part=(session.rank, session.workers)
        )
        if session.kvstore:
            batches = mx.io.ResizeIter(batches, session.epoch_batches)
    lookahead = session.lookahead

    def after_update(number: int) -> None:
        if lookahead:
            lookahead.after_update(module, epoch, number)
        stop.check_batch(epoch)

    samples = session.workers * train_epoch(
        module, batches, session.metric, epoch, lr_of_batch, experiment["disp_batches"], after_update
    )
    if lookahead:
        lookahead.end_epoch(module)
    seconds = time.time() - tic
    log_metric(epoch, "Train", session.metric)
    log.info("Epoch[%d] Time cost=%.3f", epoch, seconds)
    return {
        "epoch": epoch + 1,
        "lr": lr if has_lr else "",
        **metric_row(session.metric, "train"),
        "seconds": round(seconds, 3),
        "samples_per_second": round(samples / seconds, 1),
    }


def validate_and_checkpoint(session: Session, epoch: int, row: dict) -> None:
    """Validate the epoch's model on the whole test split, then save the checkpoint with its row."""
    experiment, module = session.job.experiment, session.module
    # Each device updates its own BatchNorm moving statistics; get_params averages them. Setting the
    # average back makes validation, the checkpoint and a resumed run see the same model.
    module.set_params(*module.get_params())
    # A fresh loader, never reset(): in MXNet 1.9.1 a reset ImageRecordIter whose last batch was
    # partial starts the next pass shifted, and a reset during its first prefetch is racy.
    test_batches = record_iter(session.job.data, experiment, train=False, seed=0)
    evaluate(
        module, test_batches, session.metric, experiment["test_time_flip"], experiment["test_time_shift"],
        experiment["test_time_weighting"],
    )  # fmt: skip
    log_metric(epoch, "Validation", session.metric)
    session.rows.append(row | metric_row(session.metric, "val"))
    session.checkpoints.save(epoch + 1, module, session.rows)
    log.info('Saved checkpoint to "%s"', session.checkpoints.params_path(epoch + 1))


def write_outputs(session: Session, final_params: tuple[dict, dict], started: float) -> None:
    """The run's declared outputs: metrics.csv, the final model and run.json."""
    job, rows = session.job, session.rows
    write_metrics(job.outputs.metrics, rows, num_classes_of(job))
    with atomic_path(job.outputs.symbol) as partial:
        session.start.symbol.save(str(partial))
    save_params(job.outputs.params, *final_params)
    record = {
        "experiment": job.run,  # the run's name (the key predates runs of several seeds)
        "config": job.experiment,
        "num_classes": num_classes_of(job),
        "devices": session.assigned.record(),
        "precision": session.precision.record(),
        "initialised_from": session.start.description,
        "resumed_after_epoch": session.begin,
        "wall_seconds": round(time.time() - started, 3),
        "training_seconds": round(sum(r["seconds"] for r in rows), 3),
        "final": rows[-1] if rows else None,
        **provenance(),
    }
    if session.kvstore:
        record["distributed"] = {
            **job.distributed,
            "global_batch_size": job.experiment["batch_size"] * session.workers,
            "batches_per_epoch": session.epoch_batches,
        }
    with atomic_path(job.outputs.run) as partial:
        partial.write_text(json.dumps(record, indent=2) + "\n")
    log.info("%s: %d epochs, outputs %s", job.run, len(rows), ", ".join(asdict(job.outputs).values()))


def num_classes_of(job: TrainingJob) -> int:
    return NUM_CLASSES[job.experiment["dataset"]]


def checkpoints_of(job: TrainingJob) -> Checkpoints:
    """The run's checkpoints, of its settings; each keeps the rule's log as it was then."""
    settings = training_settings(job.experiment)
    return Checkpoints(Path(job.checkpoint_dir), fingerprint(settings, num_classes_of(job)))


def train(job: TrainingJob, stop: StopConditions | None = None) -> None:
    """Train `job` in this process: a single-process job, or one worker of a distributed job (in a
    process its launcher started; run.run_training decides which). `stop`: when to stop early, at a
    checkpoint (a time limit, SIGTERM); by default never."""
    stop = stop or StopConditions()
    started = time.time()
    if job.distributed and "DMLC_ROLE" not in os.environ:
        raise TrainingError(
            f"{job.run} is a distributed job: its workers are started by its launcher (run_training)"
        )
    experiment = job.experiment
    if job.data.mean:
        check_mean_shape(job.data.mean, experiment["data_shape"])
    start = initial_model(experiment, num_classes_of(job), job.init_symbol, job.init_params)
    granted = job.granted
    if granted.gpus != experiment["gpus"]:
        log.warning(
            "!!! %s asks for %d GPUs but this run grants %d (snakemake --resources gpu=...): "
            "training on %d devices",
            job.run, experiment["gpus"], granted.gpus, granted.gpus,
        )  # fmt: skip
    environ = devices.share_of_worker(os.environ, granted.gpus) if job.distributed else os.environ
    assigned = granted.assign(environ)
    with assigned.lease or contextlib.nullcontext():
        on_gpus = None if assigned.contexts[0].device_type == "cpu" else assigned.description
        precision = choose_precision(experiment["precision"], on_gpus)  # before oneDNN's first kernel
        log.info("%s trains in %s: %s", job.run, precision.used, precision.reason)
        session = set_up(job, start, assigned, precision)
        stop.check_start(session.begin, max((row["seconds"] for row in session.rows), default=None))
        slowest = 0.0
        for epoch in range(session.begin, experiment["num_epochs"]):
            tic = time.time()
            row = run_epoch(session, epoch, stop)
            # MXNet's oneDNN BatchNorm updates its moving statistics in the backward pass without
            # declaring them as outputs to the engine, so reading them now could race the last
            # batch's update (it did, for bn0, whose backward runs last). Wait for every pending
            # operation.
            mx.nd.waitall()
            if session.lead:
                validate_and_checkpoint(session, epoch, row)
                slowest = max(slowest, time.time() - tic)
                stop.check_epoch_end(epoch + 1, experiment["num_epochs"], slowest)
        final_params = session.module.get_params()
    if not session.lead:
        log.info("%s: worker rank %d done; rank 0 writes the outputs", job.run, session.rank)
        return
    write_outputs(session, final_params, started)
