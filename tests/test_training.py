"""Training through the real `snakemake` CLI on CPU with generated data: learning, schedules,
optimizers, data parallelism, fine-tuning, exact resume after SIGKILL, GPU leases, bad configs."""

import hashlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mxnet as mx
import numpy as np
import psutil
import pytest
from conftest import (
    read_metrics,
    run_snakemake,
    snakemake_command,
    snakemake_environment,
    synthetic_config,
    tiny_experiment,
    without_timing,
)

from cifar_repro import checkpoints, layout, models, networks, training
from cifar_repro.errors import InputError
from cifar_repro.precision import AMX_ISA, EMULATION_VARIABLE, effective_isa, this_cpu
from cifar_repro.schema import with_defaults

SIZES = {"cifar10": (30, 10)}  # 300 training, 100 test images
experiment = tiny_experiment


@pytest.fixture(scope="module")
def pretrained(archives, http_base_url):
    """A small 100-class model, served over HTTP like the model zoo's: its config entry and params."""
    folder = next(iter(archives.values()))[0].parent
    symbol = networks.resnet_cifar(100, 8)
    module = mx.mod.Module(symbol, context=mx.cpu())
    module.bind(data_shapes=[("data", (1, 3, 28, 28))], label_shapes=[("softmax_label", (1,))])
    mx.random.seed(11)
    module.init_params(mx.init.Xavier())
    arg, aux = module.get_params()
    symbol.save(str(folder / "tiny-symbol.json"))
    checkpoints.save_params(folder / "tiny-0000.params", arg, aux)
    md5 = {
        name: hashlib.md5((folder / name).read_bytes()).hexdigest()
        for name in ("tiny-symbol.json", "tiny-0000.params")
    }
    entry = {
        "symbol": {"url": f"{http_base_url}/tiny-symbol.json", "md5": md5["tiny-symbol.json"]},
        "params": {"url": f"{http_base_url}/tiny-0000.params", "md5": md5["tiny-0000.params"]},
    }
    return entry, arg, aux


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, pretrained):
    """One workdir with every experiment of this module configured (the data chain runs once)."""
    folder = tmp_path_factory.mktemp("training")
    config = synthetic_config(
        SIZES,
        gpu_lock_dir=str(folder / "locks"),
        pretrained_models={"tiny": pretrained[0]},
        experiments=EXPERIMENTS,
    )
    (folder / "config").mkdir()
    (folder / "config" / "config.yaml").write_text(json.dumps(config))
    return folder


EXPERIMENTS = {
    "learn": experiment(),
    "steps": experiment(
        lr_schedule={"type": "factor", "factor": 0.5, "step_epochs": 1},
        optimizer_params={"learning_rate": 0.1, "momentum": 0.9},
    ),
    "adadelta": experiment(
        optimizer="adadelta", optimizer_params={"rho": 0.9, "epsilon": 1e-5}, num_epochs=2
    ),
    "parallel": experiment(gpus=2, num_epochs=1),
    "finetune": experiment(
        init={"type": "pretrained", "model": "tiny"},
        num_epochs=1,
        optimizer_params={"learning_rate": 0.05, "momentum": 0.0, "wd": 0.0},
    ),
    "diverge": experiment(optimizer_params={"learning_rate": 1e12, "momentum": 0.9}),
    "learn_auto": experiment(precision="auto"),
    # 8 epochs at a decaying rate, so that the validation accuracy of so small a net settles
    "settled": experiment(num_epochs=8, lr_schedule={"type": "factor", "factor": 0.7, "step_epochs": 1}),
    "settled_bf16": experiment(
        num_epochs=8, lr_schedule={"type": "factor", "factor": 0.7, "step_epochs": 1}, precision="bf16"
    ),
    # the per-batch one-cycle rate, padded crops, label smoothing and test-time flip and shift resume
    # exactly too
    "uninterrupted": experiment(
        gpus=2,
        batch_size=10,
        num_epochs=4,
        disp_batches=1,
        lr_schedule={"type": "one_cycle", "warmup_epochs": 1},
        augment={"rand_crop": True, "rand_mirror": True, "pad": 2},
        label_smoothing=0.1,
        test_time_flip=True,
        test_time_shift=1,
    ),
    "quick": {
        key: value
        for key, value in experiment(
            network="quick",
            data_shape=[3, 32, 32],
            batch_size=30,
            optimizer="nag",
            optimizer_params={"learning_rate": 0.2, "momentum": 0.9, "wd": 0.0005},
            lr_schedule={"type": "one_cycle", "warmup_epochs": 1},
            label_smoothing=0.2,
            augment={"rand_crop": True, "rand_mirror": True, "pad": 2},
            mean_image=True,
            test_time_flip=True,
            test_time_shift=1,
        ).items()
        if key != "num_layers"  # the quick net comes in one depth
    },
}


# airbench's recipe, every part of it at once
AIRBENCH = experiment(
    network="airbench",
    widths=[16, 32, 32],
    data_shape=[3, 32, 32],
    batch_size=20,
    num_epochs=4,
    disp_batches=1,
    optimizer="nag",
    optimizer_params={"learning_rate": 0.2, "momentum": 0.85, "wd": 0.001},
    param_multipliers=[{"match": "_beta$", "lr_mult": 8, "wd_mult": 0.125}],
    lr_schedule={"type": "piecewise_linear", "points": [[0, 0.2], [0.25, 1], [1, 0.07]]},
    lookahead={"start_epoch": 1, "every_steps": 3},
    whitening={"bias_epochs": 2},
    init={
        "type": "scratch",
        "dirac": True,
        "xavier": {"rnd_type": "uniform", "factor_type": "in", "magnitude": 1},
    },
    augment={"translate": 2, "alternating_flip": True},
    label_smoothing=0.2,
    mean_image=True,
    test_time_flip=True,
    test_time_shift=1,
    test_time_weighting="half_shifted",
)
del AIRBENCH["num_layers"]
EXPERIMENTS["airbench"] = AIRBENCH
EXPERIMENTS["uninterrupted_bf16"] = EXPERIMENTS["uninterrupted"] | {"precision": "bf16"}
# bf16 runs on oneDNN's emulation where this machine has no AMX (the bf16 path, not its speed)
BF16_ANYWHERE = {EMULATION_VARIABLE: "1"}
HAS_AMX = effective_isa(this_cpu().flags, AMX_ISA) == AMX_ISA


def build(workdir, *targets, extra=(), environment=None):
    result = run_snakemake(workdir, *extra, *targets, environment=environment)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def outputs(workdir, name):
    return workdir / layout.run_dir("results", name)


@pytest.mark.workflow
def test_learns_and_writes_every_output(workdir):
    build(workdir, "results/experiments/learn/run.json", "results/experiments/learn/model-0003.params")
    folder = outputs(workdir, "learn")
    rows = read_metrics(folder / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == [
        "epoch",
        "lr",
        "train_accuracy",
        "train_cross_entropy",
        "val_accuracy",
        "val_cross_entropy",
        "seconds",
        "samples_per_second",
    ]
    assert float(rows[-1]["val_accuracy"]) > 0.3  # chance is 0.1
    assert float(rows[-1]["train_cross_entropy"]) < float(rows[0]["train_cross_entropy"])
    symbol, arg, aux = mx.model.load_checkpoint(str(folder / "model"), 3)  # the numbered link
    assert symbol.infer_shape(data=(1, 3, 28, 28))[1][0] == (1, 10)
    final_arg, _ = checkpoints.load_params(folder / "model-final.params")
    assert set(arg) == set(final_arg) and all(
        np.array_equal(arg[k].asnumpy(), final_arg[k].asnumpy()) for k in arg
    )
    run = json.loads((folder / "run.json").read_text())
    assert run["config"] == json.loads(json.dumps(run["config"])) and run["config"]["num_epochs"] == 3
    assert run["versions"]["mxnet"] == "1.9.1" and run["git_revision"]
    assert run["devices"]["contexts"] == ["cpu(0)"] and run["wall_seconds"] > 0
    log = (folder / "train.log").read_text()  # MXNet's formats, epochs counted from 0 as MXNet does
    assert re.search(
        r"Epoch\[0\] Batch \[5\]\tSpeed: [\d.]+ samples/sec\taccuracy=[\d.]+\tcross-entropy=", log
    )
    assert "Epoch[2] Time cost=" in log and "Update[0]: Change learning rate to 5.00000e-02" in log
    assert (workdir / "results" / "checkpoints" / "learn" / "progress.json").exists()


@pytest.mark.workflow
def test_factor_schedule_sets_each_epochs_learning_rate(workdir):
    build(workdir, "results/experiments/steps/metrics.csv")
    rows = read_metrics(outputs(workdir, "steps") / "metrics.csv")
    assert [float(r["lr"]) for r in rows] == [0.1, 0.05, 0.025]


@pytest.mark.workflow
def test_quick_recipe_trains_with_a_one_cycle_rate(workdir):
    build(workdir, "results/experiments/quick/metrics.csv")
    rows = read_metrics(outputs(workdir, "quick") / "metrics.csv")
    # each epoch's first batch (of 10): up over the first epoch, then down to 0 at the end of the third
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.2 * 0.05, 0.2 * 0.975, 0.2 * 0.475])
    assert float(rows[-1]["val_accuracy"]) > 0.3  # chance is 0.1
    symbol = mx.sym.load(str(outputs(workdir, "quick") / "model-symbol.json"))
    softmax = next(node for node in json.loads(symbol.tojson())["nodes"] if node["name"] == "softmax")
    assert float(softmax["attrs"]["smooth_alpha"]) == 0.2


@pytest.mark.workflow
def test_padded_crops_show_the_grey_border(workdir):
    build(workdir, "results/cifar10/rec/train.idx")
    data = layout.packed_dataset(workdir / "results", "cifar10")

    def first_batch(pad: int) -> np.ndarray:
        settings = with_defaults(
            experiment(data_shape=[3, 32, 32], augment={"rand_crop": True, "rand_mirror": False, "pad": pad})
        )
        return next(iter(training.record_iter(data, settings, train=True, seed=1))).data[0].asnumpy()

    def grey_edges(images: np.ndarray) -> int:
        """Image edges (rows or columns at the border) that are entirely the padding's grey."""
        edges = [images[:, :, 0, :], images[:, :, -1, :], images[:, :, :, 0], images[:, :, :, -1]]
        return sum(int((edge == 127).all(axis=(1, 2)).sum()) for edge in edges)

    assert grey_edges(first_batch(pad=4)) > 0
    assert grey_edges(first_batch(pad=0)) == 0


@pytest.mark.workflow
def test_mxnet_parse_log_reads_the_training_log_as_metrics_csv(workdir):
    build(workdir, "results/experiments/steps/metrics.csv")
    parse_log = Path(mx.__file__).parent / "tools" / "parse_log.py"  # the wheel's own log parser
    folder = outputs(workdir, "steps")
    parsed = subprocess.run(
        [sys.executable, str(parse_log), str(folder / "train.log"), "--format", "none",
         "--metric-names", "accuracy", "cross-entropy"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert parsed[0].split("\t") == [
        "epoch",
        "train-accuracy",
        "train-cross-entropy",
        "val-accuracy",
        "val-cross-entropy",
        "time",
    ]
    for line, row in zip(parsed[1:], read_metrics(folder / "metrics.csv"), strict=True):
        epoch, *values, seconds = line.split("\t")
        assert int(epoch) == int(row["epoch"])
        columns = ["train_accuracy", "train_cross_entropy", "val_accuracy", "val_cross_entropy"]
        assert [float(v) for v in values] == pytest.approx([float(row[c]) for c in columns], abs=1e-6)
        assert float(seconds) == pytest.approx(float(row["seconds"]), abs=0.06)


@pytest.mark.workflow
def test_adadelta_trains_and_has_no_learning_rate(workdir):
    build(workdir, "results/experiments/adadelta/metrics.csv")
    rows = read_metrics(outputs(workdir, "adadelta") / "metrics.csv")
    assert len(rows) == 2 and all(r["lr"] == "" for r in rows)
    assert all(np.isfinite(float(r["train_cross_entropy"])) for r in rows)


@pytest.mark.workflow
def test_two_devices_train_data_parallel_on_leased_ids(workdir):
    config = json.loads((workdir / "config" / "config.yaml").read_text())
    config["gpu_ids"] = [7, 8]
    (workdir / "config" / "config.yaml").write_text(json.dumps(config))
    try:
        build(workdir, "results/experiments/parallel/run.json")
    finally:
        config.pop("gpu_ids")
        (workdir / "config" / "config.yaml").write_text(json.dumps(config))
    devices = json.loads((outputs(workdir, "parallel") / "run.json").read_text())["devices"]
    assert devices["contexts"] == ["cpu(0)", "cpu(1)"] and devices["gpu_ids"] == ["7", "8"]
    assert devices["assignment"] == "lease" and devices["cpu_stand_in"]


@pytest.mark.workflow
def test_fine_tuning_keeps_pretrained_parameters_and_replaces_fc(workdir, pretrained):
    _, pretrained_arg, pretrained_aux = pretrained
    build(workdir, "results/experiments/finetune/metrics.csv")
    start_arg, start_aux = checkpoints.load_params(
        workdir / "results" / "checkpoints" / "finetune" / "model-0000.params"
    )
    kept = set(pretrained_arg) - {"fc1_weight", "fc1_bias"}
    assert set(start_arg) == kept | {"fc_weight", "fc_bias"}
    for name in kept:
        np.testing.assert_array_equal(start_arg[name].asnumpy(), pretrained_arg[name].asnumpy(), err_msg=name)
    for name, value in pretrained_aux.items():
        np.testing.assert_array_equal(start_aux[name].asnumpy(), value.asnumpy(), err_msg=name)
    assert start_arg["fc_weight"].shape == (10, 64)
    symbol = mx.sym.load(str(outputs(workdir, "finetune") / "model-symbol.json"))
    assert symbol.infer_shape(data=(1, 3, 28, 28))[1][0] == (1, 10)


@pytest.mark.workflow
def test_a_diverging_run_stops_with_epoch_batch_and_learning_rate(workdir):
    result = run_snakemake(workdir, "results/experiments/diverge/metrics.csv")
    assert result.returncode != 0
    assert re.search(
        r"loss is (nan|inf) at epoch 1, batch \d+, learning rate 1e\+12: training diverged", result.stderr
    )
    assert not (outputs(workdir, "diverge") / "metrics.csv").exists()
    log = (outputs(workdir, "diverge") / "train.log").read_text().splitlines()
    assert re.search(r"ERROR train failed: loss is (nan|inf) at epoch 1, batch \d+", log[-1])
    assert any(line.startswith("Traceback") for line in log)  # the traceback too, above the last line


@pytest.mark.workflow
@pytest.mark.parametrize(
    "reference, environment, stop",
    [
        ("uninterrupted", {}, signal.SIGKILL),
        ("uninterrupted_bf16", BF16_ANYWHERE, signal.SIGKILL),
        ("uninterrupted", {}, signal.SIGTERM),
        pytest.param(
            "airbench",
            {},
            signal.SIGKILL,
            marks=pytest.mark.xfail(
                strict=True,
                reason="known defect (issue 20): a resumed airbench run differs from an uninterrupted "
                "one in the 6th digit from its first resumed epoch; cause not found yet",
            ),
        ),
    ],
    # airbench: lookahead, alternating flip and translation too
    ids=["fp32", "bf16", "fp32-sigterm", "airbench"],
)
def test_resume_after_a_kill_equals_an_uninterrupted_run(workdir, tmp_path, reference, environment, stop):
    """SIGKILL: snakemake and the training job die mid-epoch. SIGTERM, to the training job alone
    (Slurm's time limit, scancel, preemption): it stops at the next batch, saying so."""
    build(workdir, f"results/experiments/{reference}/metrics.csv", environment=environment)
    config = json.loads((workdir / "config" / "config.yaml").read_text())
    config["experiments"] = {"interrupted": EXPERIMENTS[reference]}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(json.dumps(config))
    target = "results/experiments/interrupted/metrics.csv"
    log = outputs(tmp_path, "interrupted") / "train.log"
    running = subprocess.Popen(
        snakemake_command(tmp_path, target),
        env=snakemake_environment(tmp_path) | environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=tmp_path,
    )
    deadline = time.time() + 300
    while not (log.exists() and "Epoch[1] Batch [3]" in log.read_text()):
        assert running.poll() is None and time.time() < deadline, "training never reached epoch 2"
        time.sleep(0.02)
    if stop == signal.SIGKILL:
        os.killpg(running.pid, signal.SIGKILL)
    else:
        trainer = next(
            child for child in psutil.Process(running.pid).children(recursive=True)
            if any(word.endswith("train.py") for word in child.cmdline())
        )  # fmt: skip
        trainer.send_signal(stop)
        assert running.wait(60) != 0
        assert "train stopped to resume: SIGTERM during epoch 2" in log.read_text().splitlines()[-1]
    running.wait()
    progress = json.loads(
        (tmp_path / "results" / "checkpoints" / "interrupted" / "progress.json").read_text()
    )
    assert progress["epoch"] == 1, "the kill was meant to land in epoch 2"
    assert not (outputs(tmp_path, "interrupted") / "metrics.csv").exists()

    assert run_snakemake(tmp_path, "--unlock").returncode == 0
    build(tmp_path, target, environment=environment)
    assert "resuming interrupted after epoch 1" in log.read_text()
    # the rule's log holds every epoch once, each attempt's own log is kept
    validations = re.findall(r"Epoch\[(\d+)\] Validation-accuracy", log.read_text())
    assert validations == ["0", "1", "2", "3"], validations
    attempts = tmp_path / "results" / "checkpoints" / "interrupted" / "attempts"
    assert sorted(path.name for path in attempts.glob("*.log")) == ["01.log", "02.log"]
    resumed, uninterrupted = (
        read_metrics(outputs(d, n) / "metrics.csv")
        for d, n in ((tmp_path, "interrupted"), (workdir, reference))
    )
    assert [r["epoch"] for r in resumed] == ["1", "2", "3", "4"]
    assert without_timing(resumed) == without_timing(uninterrupted), (
        f"resumed:\n{resumed}\nuninterrupted:\n{uninterrupted}"
    )
    resumed_arg, _ = checkpoints.load_params(outputs(tmp_path, "interrupted") / "model-final.params")
    reference_arg, _ = checkpoints.load_params(outputs(workdir, reference) / "model-final.params")
    for name, value in reference_arg.items():
        np.testing.assert_array_equal(resumed_arg[name].asnumpy(), value.asnumpy(), err_msg=name)


@pytest.mark.workflow
def test_a_second_trainer_of_a_run_is_refused_naming_the_first(workdir, tmp_path):
    # two snakemake processes without their lock, as after a dead head process and --unlock
    config = json.loads((workdir / "config" / "config.yaml").read_text())
    config["experiments"] = {"contested": EXPERIMENTS["uninterrupted"]}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(json.dumps(config))
    target = "results/experiments/contested/metrics.csv"
    log = outputs(tmp_path, "contested") / "train.log"
    first = subprocess.Popen(
        snakemake_command(tmp_path, "--nolock", target), env=snakemake_environment(tmp_path),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
    )  # fmt: skip
    deadline = time.time() + 300
    while not (log.exists() and "Epoch[0] Batch [1]" in log.read_text()):
        assert first.poll() is None and time.time() < deadline, "the first trainer never started"
        time.sleep(0.05)
    trainer = next(
        child for child in psutil.Process(first.pid).children(recursive=True)
        if any(word.endswith("train.py") for word in child.cmdline())
    )  # fmt: skip
    second = run_snakemake(tmp_path, "--nolock", target)
    assert second.returncode != 0
    assert f"contested is being trained by pid {trainer.pid} on {socket.gethostname()}" in second.stderr
    # the first trains on to the end; the second's Snakemake deleted the rule's log before its job,
    # and the first links it again from the run's log beside the checkpoints
    assert first.wait(300) == 0
    for kept in (log, tmp_path / "results" / "checkpoints" / "contested" / "attempts" / "01.log"):
        assert re.findall(r"Epoch\[(\d+)\] Validation-accuracy", kept.read_text()) == ["0", "1", "2", "3"]
    assert len(read_metrics(outputs(tmp_path, "contested") / "metrics.csv")) == 4


@pytest.mark.workflow
def test_airbench_recipe_learns_on_its_whitening_filters_kept_frozen(workdir):
    filters = workdir / layout.whitening_filters("results", "cifar10", 2)
    build(workdir, "results/experiments/airbench/metrics.csv")
    rows = read_metrics(outputs(workdir, "airbench") / "metrics.csv")
    assert float(rows[-1]["val_accuracy"]) > 0.3  # chance is 0.1
    # each epoch's first batch (of 15): piecewise linear from 0.2x up to 1x at 25 % of the training,
    # then down to 0.07x at its end
    assert [float(row["lr"]) for row in rows] == pytest.approx(
        [0.045333, 0.197933, 0.135933, 0.073933], abs=1e-6
    )
    final, _ = checkpoints.load_params(outputs(workdir, "airbench") / "model-final.params")
    np.testing.assert_array_equal(final["whiten_weight"].asnumpy(), np.load(filters))
    assert [final[f"block{b}_conv2_weight"].shape[0] for b in (1, 2, 3)] == AIRBENCH["widths"]
    log = (outputs(workdir, "airbench") / "train.log").read_text()
    assert "airbench starts from random (Xavier uniform, in, 1, dirac)" in log
    # the stem's bias trains (for its first 2 epochs: test_recipe.py checks the freeze)
    start, _ = checkpoints.load_params(
        workdir / layout.checkpoint_dir("results", "airbench") / "model-0000.params"
    )
    assert not np.array_equal(start["whiten_bias"].asnumpy(), final["whiten_bias"].asnumpy())
    # a declared artefact: rebuilt, byte-identical
    made = filters.read_bytes()
    filters.unlink()
    build(workdir, str(filters.relative_to(workdir)))
    assert filters.read_bytes() == made


@pytest.mark.workflow
def test_auto_precision_says_what_it_chose_and_without_amx_trains_as_fp32_does(workdir):
    build(workdir, "results/experiments/learn/metrics.csv", "results/experiments/learn_auto/metrics.csv")
    record = json.loads((outputs(workdir, "learn_auto") / "run.json").read_text())["precision"]
    assert record["asked"] == "auto"
    assert json.loads((outputs(workdir, "learn") / "run.json").read_text())["precision"]["used"] == "fp32"
    if HAS_AMX:
        assert (record["used"], record["isa"]) == ("bf16", AMX_ISA)
        return
    assert record["used"] == "fp32" and record["reason"].startswith("auto chose fp32 on ")
    assert "auto chose fp32" in (outputs(workdir, "learn_auto") / "train.log").read_text()
    learn, auto = (read_metrics(outputs(workdir, name) / "metrics.csv") for name in ("learn", "learn_auto"))
    assert without_timing(learn) == without_timing(auto)


@pytest.mark.workflow
@pytest.mark.skipif(HAS_AMX, reason="this machine has AMX: a bf16 run trains")
def test_bf16_without_amx_stops_before_training_naming_the_cpu_and_the_fix(workdir):
    result = run_snakemake(workdir, "results/experiments/settled_bf16/metrics.csv")
    assert result.returncode != 0
    assert f"train failed: precision bf16: this CPU ({this_cpu().model}) has no AMX" in result.stderr
    assert "Set the experiment's precision to fp32, or to auto" in result.stderr
    assert not (outputs(workdir, "settled_bf16") / "metrics.csv").exists()


@pytest.mark.workflow
def test_a_bf16_run_learns_about_as_well_as_fp32_and_records_its_precision(workdir):
    build(workdir, "results/experiments/settled/metrics.csv")
    build(workdir, "results/experiments/settled_bf16/metrics.csv", environment=BF16_ANYWHERE)
    record = json.loads((outputs(workdir, "settled_bf16") / "run.json").read_text())["precision"]
    assert (record["asked"], record["used"]) == ("bf16", "bf16")
    assert record["isa"] == (AMX_ISA if HAS_AMX else effective_isa(this_cpu().flags, None))
    fp32, bf16 = (read_metrics(outputs(workdir, run) / "metrics.csv") for run in ("settled", "settled_bf16"))
    assert float(bf16[-1]["val_accuracy"]) > 0.3  # chance is 0.1
    assert float(bf16[-1]["val_accuracy"]) == pytest.approx(float(fp32[-1]["val_accuracy"]), abs=0.1)
    assert without_timing(bf16) != without_timing(fp32)  # it did compute in bf16
    final, _ = checkpoints.load_params(outputs(workdir, "settled_bf16") / "model-final.params")
    assert {value.dtype for value in final.values()} == {np.float32}


@pytest.mark.workflow
def test_concurrent_jobs_never_share_a_gpu_id(tmp_path):
    names = ["first", "second", "third"]
    config = synthetic_config(
        SIZES,
        gpu_ids=[5],
        gpu_lock_dir=str(tmp_path / "locks"),
        experiments={n: experiment(num_epochs=1, seed=i) for i, n in enumerate(names)},
    )
    result = run_snakemake(
        tmp_path, "--cores", "6", *[f"results/experiments/{n}/run.json" for n in names], config=config
    )
    assert result.returncode == 0, result.stderr[-3000:]
    spans = []
    for name in names:
        assert json.loads((outputs(tmp_path, name) / "run.json").read_text())["devices"]["gpu_ids"] == ["5"]
        stamps = [
            line[:23]
            for line in (outputs(tmp_path, name) / "train.log").read_text().splitlines()
            if "Epoch[0] Batch [" in line or "Epoch[0] Validation-accuracy" in line
        ]
        spans.append((stamps[0], stamps[-1]))
    spans.sort()
    assert all(earlier[1] < later[0] for earlier, later in itertools.pairwise(spans)), spans


@pytest.mark.workflow
def test_a_gpu_experiment_does_not_silently_train_on_the_cpu(tmp_path):
    config = synthetic_config(SIZES, allow_cpu_fallback=False, experiments={"gpu": experiment(num_epochs=1)})
    result = run_snakemake(tmp_path, "results/experiments/gpu/metrics.csv", config=config)
    assert result.returncode != 0
    assert "train failed: the experiment asks for 1 GPU, but MXNet is built without CUDA" in result.stderr
    assert not (outputs(tmp_path, "gpu") / "metrics.csv").exists()


BAD_EXPERIMENTS = [
    ({"network": "vgg"}, "'vgg' is not one of ['resnext', 'inception_rrelu', 'resnet', 'quick', 'airbench']"),
    ({"num_layers": 9}, "9 is not one of [8, 14, 20, 26, 32, 44, 56, 110]"),
    ({"data_shape": [3, 40, 40]}, "40 is greater than the maximum of 32"),
    ({"lr_schedule": {"type": "factor", "factor": 0.9}}, "'step_epochs' is a required property"),
    ({"optimizer": "lbfgs"}, "'lbfgs' is not one of"),
    ({"lr_schedule": {"type": "one_cycle"}}, "'warmup_epochs' is a required property"),
    (
        {"lr_schedule": {"type": "one_cycle", "warmup_epochs": 3}},
        "experiments.bad.lr_schedule.warmup_epochs: 3 leaves none of the 3 epochs",
    ),
    ({"label_smoothing": 1}, "1 is greater than or equal to the maximum of 1"),
    ({"test_time_shift": 9}, "9 is greater than the maximum of 8"),
    ({"learning_rate": 0.1}, "Additional properties are not allowed ('learning_rate' was unexpected)"),
    (
        {"init": {"type": "pretrained", "model": "nope"}},
        "experiments.bad.init.model: 'nope' is not in pretrained_models",
    ),
    (
        {"init": {"type": "experiment", "experiment": "other"}},
        "experiments.bad.init.experiment: 'other' trains on cifar100",
    ),
]


@pytest.mark.workflow
@pytest.mark.parametrize("change, message", BAD_EXPERIMENTS)
def test_bad_experiment_configs_fail_at_validation(tmp_path, change, message):
    config = synthetic_config(
        SIZES, experiments={"bad": experiment(**change), "other": experiment(dataset="cifar100")}
    )
    result = run_snakemake(tmp_path, "--dry-run", config=config)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_learning_rate_schedules():
    factor_every_2 = {"type": "factor", "factor": 0.5, "step_epochs": 2}
    assert [training.learning_rate(0.4, factor_every_2, e, 5) for e in range(5)] == [0.4, 0.4, 0.2, 0.2, 0.1]
    at_epochs = {"type": "factor", "factor": 0.1, "step_epochs": [2, 3]}
    rates = [training.learning_rate(1.0, at_epochs, e, 4) for e in range(4)]
    assert rates == pytest.approx([1, 1, 0.1, 0.01])
    # inside an epoch, a stepped rate keeps the epoch's value
    assert training.learning_rate(1.0, at_epochs, 2.99, 4) == pytest.approx(0.1)
    assert training.learning_rate(0.05, {"type": "fixed"}, 299, 300) == 0.05


def test_one_cycle_rises_over_the_warmup_then_falls_to_zero_at_the_end():
    one_cycle = {"type": "one_cycle", "warmup_epochs": 2}
    rates = [training.learning_rate(0.2, one_cycle, epoch, 10) for epoch in (0, 1, 2, 6, 9.5, 10)]
    assert rates == pytest.approx([0, 0.1, 0.2, 0.1, 0.0125, 0])


def test_test_time_views_are_the_image_its_shifts_and_their_mirrors():
    images = mx.nd.random.uniform(0, 1, (2, 3, 5, 6))
    reflected = np.pad(images.asnumpy(), ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    shifted = [reflected[:, :, :5, :6], reflected[:, :, 4:, 4:]]  # down-right, up-left by 2 pixels
    views = [view.asnumpy() for view in training.test_time_views(images, flip=True, shift=2)]
    expected = [images.asnumpy(), *shifted]
    expected += [view[:, :, :, ::-1] for view in expected]
    assert len(views) == 6
    for view, wanted in zip(views, expected, strict=True):
        np.testing.assert_array_equal(view, wanted)
    assert len(training.test_time_views(images, flip=False, shift=0)) == 1


@pytest.mark.parametrize("flip, shift", [(True, 0), (False, 1), (True, 1)])
def test_test_time_augmentation_scores_the_mean_output_of_the_views(flip, shift):
    module = mx.mod.Module(networks.resnet_cifar(10, 8), context=mx.cpu())
    module.bind(
        data_shapes=[("data", (4, 3, 8, 8))], label_shapes=[("softmax_label", (4,))], for_training=False
    )
    mx.random.seed(0)
    module.init_params(mx.init.Xavier())
    images, labels = mx.nd.random.uniform(0, 1, (4, 3, 8, 8)), mx.nd.array([0, 1, 2, 3])

    def probabilities(data):
        module.forward(mx.io.DataBatch([data], [labels]), is_train=False)
        return module.get_outputs()[0].asnumpy()

    views = training.test_time_views(images, flip, shift)
    mean = np.mean([probabilities(view) for view in views], axis=0)
    expected = -np.log(mean[np.arange(4), labels.asnumpy().astype(int)]).mean()
    scores = {}
    for augmented in (False, True):
        metric = mx.metric.CrossEntropy()
        batches = mx.io.NDArrayIter(images, labels, batch_size=4)
        training.evaluate(module, batches, metric, flip=flip and augmented, shift=shift * augmented)
        scores[augmented] = metric.get()[1]
    assert scores[True] == pytest.approx(expected, rel=1e-5)
    assert scores[False] != pytest.approx(expected, rel=1e-3)


def test_a_mean_image_of_another_shape_is_refused(tmp_path):
    mean = tmp_path / "mean_32x32.bin"
    mx.nd.save(str(mean), {"mean_img": mx.nd.zeros((3, 32, 32))})
    with pytest.raises(
        InputError, match=r"mean image has shape \(3, 32, 32\), but data_shape is \(3, 28, 28\)"
    ):
        models.check_mean_shape(str(mean), (3, 28, 28))
    models.check_mean_shape(str(mean), [3, 32, 32])


def test_frozen_layers_select_their_parameters():
    names = ["conv0_weight", "bn0_gamma", "stage1_unit1_conv1_weight", "fc_weight"]
    assert models.frozen_parameters(names, ["conv0", "bn0"]) == ["conv0_weight", "bn0_gamma"]
