"""Distributed training through MXNet's own tracker and parameter servers (kvstore dist_sync), on CPU
over loopback, through the real `snakemake` CLI: two workers and a server train on disjoint halves
of the data and match a single process with the same global batch, a killed worker stops the whole
job with one line and a rerun resumes to the metrics of an uninterrupted run, and two jobs run at
once on one machine."""

import copy
import inspect
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import dmlc_tracker.slurm
import dmlc_tracker.tracker
import mxnet as mx
import numpy as np
import psutil
import pytest
from conftest import (
    BIN,
    read_metrics,
    run_snakemake,
    snakemake_command,
    snakemake_environment,
    synthetic_config,
    tiny_experiment,
    without_timing,
)

from cifar_repro import checkpoints, launcher, layout, training
from cifar_repro.errors import InputError
from cifar_repro.schema import with_defaults

SIZES = {"cifar10": (61, 50)}  # 610 training images (305 per worker), 500 test images
DISTRIBUTED = {"workers": 2, "servers": 1, "kvstore": "dist_sync", "launcher": "local"}
# 10 epochs and a decaying rate, so that a single process and the distributed job both settle (on
# fewer, the validation accuracy of so small a net swings by 10 points from epoch to epoch)
EXPERIMENT = tiny_experiment(
    num_epochs=10,
    optimizer_params={"learning_rate": 0.1, "momentum": 0.9, "wd": 0.0001},
    lr_schedule={"type": "factor", "factor": 0.7, "step_epochs": 1},
    disp_batches=2,
    gpus=0,
    distributed=DISTRIBUTED,
)


def write_config(folder, experiments):
    config = synthetic_config(SIZES, gpu_lock_dir=str(folder / "locks"), experiments=experiments)
    (folder / "config").mkdir(exist_ok=True)
    (folder / "config" / "config.yaml").write_text(json.dumps(config))


def metrics_rows(folder, name):
    return read_metrics(folder / layout.run_files("results", name).metrics)


def log_span(folder, name):
    """The first and last time stamp of a training job's log, in seconds."""
    lines = (folder / layout.training_log("results", name)).read_text().splitlines()
    return tuple(time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) for line in (lines[0], lines[-1]))


def job_processes():
    """Live processes of any distributed job (scheduler, servers, workers)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if "cifar_repro.worker" in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


def test_the_wheels_tracker_still_needs_the_python_3_9_patch():
    # When this fails, mxnet's dmlc_tracker no longer calls Thread.isAlive: drop the patch.
    assert ".isAlive()" in inspect.getsource(dmlc_tracker.tracker.PSTracker)
    launcher.patch_tracker_for_python_3_9()
    assert threading.Thread.isAlive is threading.Thread.is_alive


def test_tracker_options_keep_a_local_job_on_loopback():
    options = launcher.tracker_options(DISTRIBUTED, "CMD")
    assert options[-1] == "CMD"
    assert options[options.index("--host-ip") + 1] == "127.0.0.1"
    assert options[options.index("--num-workers") + 1] == "2"
    slurm = launcher.tracker_options({**DISTRIBUTED, "launcher": "slurm", "nodes": 1}, "CMD")
    assert "--host-ip" not in slurm
    assert slurm[slurm.index("--slurm-worker-nodes") + 1] == "1"


def test_the_slurm_launcher_outside_an_allocation_is_refused():
    with pytest.raises(InputError, match="inside a Slurm allocation"):
        launcher.check_launcher({**DISTRIBUTED, "launcher": "slurm"}, environ={})
    launcher.check_launcher({**DISTRIBUTED, "launcher": "slurm"}, environ={"SLURM_JOB_ID": "7"})


def test_the_wheels_slurm_launcher_still_passes_an_option_srun_dropped():
    # When this fails, dmlc_tracker/slurm.py runs on current Slurm: use it instead of srun_submit.
    assert "srun --share" in inspect.getsource(dmlc_tracker.slurm)


def test_each_worker_reads_a_disjoint_part_of_the_training_records(tmp_path):
    records = 300
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    writer = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "w")
    image = np.zeros((32, 32, 3), np.uint8)
    for key in range(records):  # each record's label is its key
        writer.write_idx(key, mx.recordio.pack_img(mx.recordio.IRHeader(0, float(key), key, 0), image))
    writer.close()
    data = layout.PackedDataset(str(rec), str(idx), str(rec), str(idx))
    spec = with_defaults(EXPERIMENT)  # one loader thread
    seen = []
    for rank in range(2):
        labels = []
        for batch in training.record_iter(data, spec, train=True, seed=5, part=(rank, 2)):
            labels += batch.label[0].asnumpy()[: spec["batch_size"] - batch.pad].astype(int).tolist()
        seen.append(labels)
    assert len(seen[0]) == len(set(seen[0])) == records // 2 == len(seen[1]) == len(set(seen[1]))
    assert not set(seen[0]) & set(seen[1]) and set(seen[0]) | set(seen[1]) == set(range(records))


def test_a_failure_is_described_by_role_rank_and_status(tmp_path):
    (tmp_path / "task-1").write_text("0\n")
    killed = RuntimeError(
        "Get nonzero return code=-9 on ['env', 'python'] {'DMLC_ROLE': 'worker', 'DMLC_TASK_ID': '1'}"
    )
    assert launcher.describe_failure(killed, tmp_path) == (
        "worker rank 0 (launcher task 1) was killed by SIGKILL"
    )
    server = RuntimeError("Get nonzero return code=3 on ['x'] {'DMLC_ROLE': 'server', 'DMLC_TASK_ID': '2'}")
    assert launcher.describe_failure(server, tmp_path) == "server (launcher task 2) exited with status 3"
    ssh = subprocess.CalledProcessError(
        137, "ssh -o StrictHostKeyChecking=no node2 -p 22 'export DMLC_ROLE=worker; cd /x; python'"
    )
    assert launcher.describe_failure(ssh, tmp_path) == "worker on node2 (ssh) was killed by SIGKILL"
    mpi = subprocess.CalledProcessError(1, "mpirun -n 2 -x DMLC_ROLE=server python")
    assert launcher.describe_failure(mpi, tmp_path).startswith("the servers' mpirun exited with status 1")
    step = launcher.StepFailed("worker", 137, ["srun: error: node7: task 1: Killed"])
    assert launcher.describe_failure(step, tmp_path) == "worker rank 0 (srun task 1): Killed"
    servers = launcher.StepFailed("server", 1, [])
    assert launcher.describe_failure(servers, tmp_path) == "the servers' srun step exited with status 1"


@pytest.mark.workflow
@pytest.mark.parametrize(
    "change, message",
    [
        ({"workers": 0}, "workers"),
        ({"kvstore": "dist"}, "kvstore"),
        ({"launcher": "ssh"}, "hosts"),
        ({"launcher": "mpi", "hosts": "/nonexistent/hosts"}, "is not a file"),
    ],
)
def test_bad_distributed_configs_fail_at_validation(tmp_path, change, message):
    write_config(tmp_path, {"dist": {**EXPERIMENT, "distributed": {**DISTRIBUTED, **change}}})
    result = run_snakemake(tmp_path, "-n")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


@pytest.mark.workflow
def test_dist_async_needs_a_fixed_learning_rate(tmp_path):
    spec = copy.deepcopy(EXPERIMENT)
    spec["distributed"]["kvstore"] = "dist_async"
    write_config(tmp_path, {"dist": spec})
    result = run_snakemake(tmp_path, "-n")
    assert result.returncode != 0 and "'fixed' was expected" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def two_jobs_at_once(tmp_path_factory):
    """Two distributed jobs of the same experiment trained at the same time (the second for 2 epochs),
    then a single process with the same global batch (2 workers x 20 against 40 over 2 contexts:
    BatchNorm sees 20 images either way)."""
    folder = tmp_path_factory.mktemp("distributed")
    single = {key: value for key, value in EXPERIMENT.items() if key != "distributed"} | {
        "batch_size": 40,
        "gpus": 2,
    }
    # the twin: the same job, stopped after 2 epochs (it only needs to overlap with the first)
    write_config(folder, {"dist": EXPERIMENT, "twin": EXPERIMENT | {"num_epochs": 2}, "single": single})
    targets = [layout.run_files("results", name).metrics for name in ("dist", "twin")]
    result = run_snakemake(folder, *targets, "--cores", "4")  # room for both jobs at once
    assert result.returncode == 0, result.stderr[-4000:]
    result = run_snakemake(folder, layout.run_files("results", "single").metrics)
    assert result.returncode == 0, result.stderr[-4000:]
    return folder


@pytest.mark.workflow
def test_two_workers_and_a_server_train_like_one_process_and_rank_0_validates_the_whole_test_set(
    two_jobs_at_once,
):
    folder = two_jobs_at_once
    rows = metrics_rows(folder, "dist")
    # the same global batch and seed: within 2 points of one process
    final_single = float(metrics_rows(folder, "single")[-1]["val_accuracy"])
    assert float(rows[-1]["val_accuracy"]) == pytest.approx(final_single, abs=0.02)
    assert float(rows[-1]["val_accuracy"]) > 0.5  # both learned: 10 classes
    # the learning rate counts epochs as a single process does
    assert [float(row["lr"]) for row in rows] == [
        training.learning_rate(0.1, EXPERIMENT["lr_schedule"], epoch, EXPERIMENT["num_epochs"])
        for epoch in range(EXPERIMENT["num_epochs"])
    ]
    files = layout.run_files("results", "dist")
    run = json.loads((folder / files.run).read_text())
    # 610 images, 305 per worker: 15 full batches of 20 each
    assert run["distributed"]["global_batch_size"] == 40
    assert run["distributed"]["batches_per_epoch"] == 15
    log = (folder / layout.training_log("results", "dist")).read_text()
    assert "worker rank 0 of 2" in log and "Epoch[9] Validation-accuracy=" in log
    assert "Epoch[0] Batch [14]" in log and "Epoch[0] Batch [16]" not in log  # not rank 0's partial 16th
    run_dir = folder / layout.checkpoint_dir("results", "dist") / "distributed"
    assert "worker rank 1 of 2" in (run_dir / "worker-1.log").read_text()
    # rank 0's last validation is the final model's accuracy over the whole test set
    symbol = mx.sym.load(str(folder / files.symbol))
    arg, aux = checkpoints.load_params(folder / files.params)
    module = mx.mod.Module(symbol, context=mx.cpu())
    module.bind(
        data_shapes=[("data", (20, 3, 28, 28))], label_shapes=[("softmax_label", (20,))], for_training=False
    )
    module.set_params(arg, aux)
    data = layout.packed_dataset(folder / "results", "cifar10")
    metric = training.make_metric(10)
    training.evaluate(module, training.record_iter(data, run["config"], train=False, seed=0), metric)
    accuracy = dict(metric.get_name_value())["accuracy"]
    assert float(rows[-1]["val_accuracy"]) == pytest.approx(accuracy, abs=1e-6)
    assert metric.metrics[0].num_inst == 500  # every test image
    assert not job_processes()


@pytest.mark.workflow
def test_two_distributed_jobs_at_once_take_different_ports_and_train_alike(two_jobs_at_once):
    folder = two_jobs_at_once
    (dist_start, dist_end), (twin_start, twin_end) = (log_span(folder, name) for name in ("dist", "twin"))
    assert dist_start < twin_end and twin_start < dist_end  # they overlapped
    logs = [(folder / layout.training_log("results", name)).read_text() for name in ("dist", "twin")]
    ports = [re.search(r"scheduler listens on port (\d+)", log) for log in logs]
    assert all(ports) and ports[0].group(1) != ports[1].group(1)
    # the same experiment: the same metrics as far as the twin went, the server summing the two
    # workers' gradients in whichever order they come (a + b == b + a in floating point)
    assert without_timing(metrics_rows(folder, "dist"))[:2] == without_timing(metrics_rows(folder, "twin"))


def kill_a_worker_mid_training(folder, name, environment=None) -> tuple[str, float]:
    """Train `name` and SIGKILL one of its workers in epoch 2: (the job's log's last line, seconds
    from the kill until snakemake ended, having failed)."""
    log = folder / layout.training_log("results", name)
    running = subprocess.Popen(
        snakemake_command(folder, layout.run_files("results", name).metrics),
        env=snakemake_environment(folder) | (environment or {}),
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 300
    while not (log.exists() and "Epoch[1] Batch [2]" in log.read_text()):
        assert running.poll() is None and time.time() < deadline, "training never reached epoch 2"
        time.sleep(0.05)
    victim = next(p for p in job_processes() if p.environ().get("DMLC_ROLE") == "worker")
    killed_at = time.time()
    os.kill(victim.pid, signal.SIGKILL)
    running.communicate(timeout=120)
    assert running.returncode != 0
    return log.read_text().strip().splitlines()[-1], time.time() - killed_at


@pytest.mark.workflow
def test_a_killed_worker_stops_the_job_with_one_line_and_a_rerun_resumes(tmp_path):
    four_epochs = {**EXPERIMENT, "num_epochs": 4}
    write_config(tmp_path, {"dist": four_epochs, "uninterrupted": four_epochs})
    last_line, seconds = kill_a_worker_mid_training(tmp_path, "dist")
    assert seconds < 30 + 10  # the job's processes stopped, snakemake noticed
    assert re.search(
        r"distributed training failed: worker rank \d \(launcher task \d\) was killed by SIGKILL", last_line
    )
    assert not job_processes()
    progress = json.loads((tmp_path / layout.checkpoint_dir("results", "dist") / "progress.json").read_text())
    assert progress["epoch"] == 1

    assert run_snakemake(tmp_path, "--unlock").returncode == 0
    result = run_snakemake(tmp_path, layout.run_files("results", "dist").metrics)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resuming dist after epoch 1" in (tmp_path / layout.training_log("results", "dist")).read_text()
    assert [row["epoch"] for row in metrics_rows(tmp_path, "dist")] == ["1", "2", "3", "4"]
    # Bit-identical to a run never stopped: every rank resumes from the same parameters and optimizer
    # state, and the one server sums two workers' gradients, which is exact in either order.
    result = run_snakemake(tmp_path, layout.run_files("results", "uninterrupted").metrics)
    assert result.returncode == 0, result.stderr[-4000:]
    assert without_timing(metrics_rows(tmp_path, "dist")) == without_timing(
        metrics_rows(tmp_path, "uninterrupted")
    )


# ---------------------------------------------------------------- the ssh launcher

# tests/cluster/local_sshd.sh's folder: an sshd on 127.0.0.1 and a bin/ssh that reaches it
SSH = os.environ.get("CIFAR_REPRO_SSH")
with_sshd = pytest.mark.skipif(SSH is None, reason="no local sshd: run `make test-cluster`")


def over_ssh(folder, **changes) -> tuple[dict, dict]:
    """(the experiment on "two hosts" over ssh, the environment that reaches them): both hosts
    are this machine's sshd."""
    hosts = folder / "hosts"
    port = Path(SSH, "port").read_text().strip()
    hosts.write_text(f"127.0.0.1:{port}\n127.0.0.1:{port}\n")
    spec = {**EXPERIMENT, **changes, "distributed": {**DISTRIBUTED, "launcher": "ssh", "hosts": str(hosts)}}
    return spec, {"PATH": f"{SSH}/bin:{BIN}:/usr/bin:/bin"}


@pytest.mark.cluster
@with_sshd
def test_the_ssh_launcher_trains_on_two_hosts_as_the_local_one_does(tmp_path):
    spec, environment = over_ssh(tmp_path, num_epochs=2)
    write_config(tmp_path, {"over_ssh": spec, "on_loopback": {**EXPERIMENT, "num_epochs": 2}})
    targets = [layout.run_files("results", name).metrics for name in ("over_ssh", "on_loopback")]
    result = run_snakemake(tmp_path, *targets, environment=environment)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "dmlc_tracker --cluster ssh" in (tmp_path / layout.training_log("results", "over_ssh")).read_text()
    assert without_timing(metrics_rows(tmp_path, "over_ssh")) == without_timing(
        metrics_rows(tmp_path, "on_loopback")
    )


@pytest.mark.cluster
@with_sshd
def test_a_worker_killed_on_an_ssh_host_stops_the_whole_job(tmp_path):
    spec, environment = over_ssh(tmp_path, num_epochs=4)
    write_config(tmp_path, {"over_ssh": spec})
    last_line, seconds = kill_a_worker_mid_training(tmp_path, "over_ssh", environment)
    assert seconds < 30 + 10
    assert (
        "distributed training failed: worker on 127.0.0.1 (ssh) was killed or lost its connection"
        in last_line
    )
    # the processes the ssh sessions started end with their sessions: none waits in ps-lite forever
    deadline = time.time() + 30
    while job_processes() and time.time() < deadline:
        time.sleep(0.5)
    assert not job_processes()
