"""The demo through a real (local, single-node) Slurm cluster and the Slurm profile: `make
test-cluster` starts the cluster (tests/cluster/local_slurm.sh) and sets SLURM_CONF."""

import itertools
import json
import os
import re
import subprocess
import time
from datetime import datetime

import pytest
import yaml
from conftest import BIN, REPO, SNAKEFILE, demo_workdir, read_metrics, without_timing

from cifar_repro import layout, slurm_job

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif("SLURM_CONF" not in os.environ, reason="no local Slurm: run `make test-cluster`"),
]

DEMO = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
OUT = DEMO["output_dir"]
# every training run of the demo: each seed of an experiment with seeds
RUNS = {
    run: spec
    for name, experiment in DEMO["experiments"].items()
    for run, spec in layout.experiment_runs(name, experiment).items()
}
# The options that fit the workflow to the test cluster (local_slurm.sh): its node has 8 CPUs, 4 fake
# GPUs and 20 GB, so jobs are sized to run side by side there, and the plugin checks job states with
# squeue every 2 s rather than sacct every 40 s. Paths are relative to the repository.
CLUSTER_OPTIONS = [
    str(REPO / word) if word.startswith("workflow/") else word
    for word in (REPO / "tests" / "cluster" / "snakemake_options.txt").read_text().split()
]


def snakemake_invocation(workdir, *args):
    """The real snakemake CLI in `workdir` and its environment (the test cluster's SLURM_CONF)."""
    command = [str(BIN / "snakemake"), "--snakefile", str(SNAKEFILE), "--directory", str(workdir), *args]
    environment = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(workdir),
        "SLURM_CONF": os.environ["SLURM_CONF"],
    }
    return {"args": command, "env": environment, "cwd": workdir}


def snakemake(workdir, *args, timeout=1500):
    return subprocess.run(
        **snakemake_invocation(workdir, *args), capture_output=True, text=True, timeout=timeout
    )


DEMO_RUN = ("--configfile", "config/demo.yaml", "--replace-workflow-config")


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    workdir = demo_workdir(tmp_path_factory.mktemp("slurm"))
    result = snakemake(workdir, "all", "report", *DEMO_RUN, *CLUSTER_OPTIONS)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, result


def run_record(workdir, name):
    return json.loads((workdir / layout.run_files(OUT, name).run).read_text())


def log_span(workdir, name):
    """First and last time stamp of a training job's log."""
    lines = (workdir / layout.training_log(OUT, name)).read_text().splitlines()
    return tuple(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in (lines[0], lines[-1]))


def test_every_training_job_ran_as_its_own_slurm_job_on_the_gpus_it_was_given(cluster_run):
    workdir, _ = cluster_run
    records = {name: run_record(workdir, name) for name in RUNS}
    job_ids = [record["devices"]["slurm_job_id"] for record in records.values()]
    assert len(set(job_ids)) == len(records), job_ids
    for name, record in records.items():
        devices = record["devices"]
        assert devices["assignment"] == "slurm" and devices["cpu_stand_in"], name
        assert len(devices["gpu_ids"]) == RUNS[name].get("gpus", 1), name  # a worker's own, if distributed


def test_jobs_that_ran_at_the_same_time_had_disjoint_gpus(cluster_run):
    workdir, _ = cluster_run
    spans = {name: log_span(workdir, name) for name in RUNS}
    overlapping = [
        (a, b)
        for a, b in itertools.combinations(spans, 2)
        if spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]
    ]
    assert overlapping, f"no two training jobs ran at the same time: {spans}"
    for a, b in overlapping:
        gpus_a, gpus_b = (set(run_record(workdir, name)["devices"]["gpu_ids"]) for name in (a, b))
        assert not gpus_a & gpus_b, (a, b, gpus_a, gpus_b)


def test_the_data_chain_of_a_dataset_is_one_slurm_job(cluster_run):
    workdir, result = cluster_run
    submitted = [line for line in result.stderr.splitlines() if "has been submitted with SLURM jobid" in line]
    # per dataset one group job, and one job per experiment; nothing else goes to Slurm
    assert len(submitted) == len(DEMO["datasets"]) + len(RUNS), submitted


def test_metrics_equal_a_local_run_with_the_same_seed(cluster_run, tmp_path):
    workdir, _ = cluster_run
    name = "cifar10_scratch/seed1"
    local = demo_workdir(tmp_path)
    result = snakemake(local, *DEMO_RUN, "--cores", "2", layout.run_files(OUT, name).metrics)
    assert result.returncode == 0, result.stderr[-3000:]

    metrics = layout.run_files(OUT, name).metrics
    assert without_timing(read_metrics(workdir / metrics)) == without_timing(read_metrics(local / metrics))


def test_the_report_builds(cluster_run):
    workdir, _ = cluster_run
    assert "summary.csv" in (workdir / OUT / "report.html").read_text()


def with_experiment(workdir, name, **changes):
    """The demo config of `workdir` with one more experiment, a copy of cifar10_scratch with one seed."""
    config = yaml.safe_load((workdir / "config" / "demo.yaml").read_text())
    scratch = {
        key: value for key, value in config["experiments"]["cifar10_scratch"].items() if key != "seeds"
    }
    config["experiments"][name] = scratch | changes
    (workdir / "config" / "demo.yaml").write_text(yaml.safe_dump(config))
    return layout.run_files(OUT, name).metrics


def test_a_partition_that_does_not_exist_fails_at_once_naming_it(cluster_run):
    workdir, _ = cluster_run
    target = with_experiment(workdir, "elsewhere", seed=5)
    wrong = ["--default-resources", "slurm_partition=nonexistent", "runtime=30", "mem_mb=2000"]
    result = snakemake(workdir, target, *DEMO_RUN, *CLUSTER_OPTIONS, *wrong, timeout=300)
    assert result.returncode != 0
    assert "invalid partition specified: nonexistent" in result.stderr, result.stderr[-3000:]
    assert "rule train" in result.stderr and "run=elsewhere" in result.stderr


def test_more_gpus_than_any_node_has_is_refused_naming_the_rule_and_run(cluster_run):
    workdir, _ = cluster_run
    target = with_experiment(workdir, "eight_gpus", gpus=8)
    result = snakemake(workdir, target, *DEMO_RUN, *CLUSTER_OPTIONS, timeout=300)
    assert result.returncode != 0
    assert "Requested node configuration is not available" in result.stderr, result.stderr[-3000:]
    assert "rule train" in result.stderr and "run=eight_gpus" in result.stderr


def test_a_distributed_experiment_runs_its_workers_and_server_as_srun_steps_of_one_job(cluster_run):
    workdir, _ = cluster_run
    name = "cifar10_srun"
    distributed = {"workers": 2, "servers": 1, "kvstore": "dist_sync", "launcher": "slurm", "nodes": 1}
    target = with_experiment(workdir, name, batch_size=16, gpus=1, num_epochs=2, distributed=distributed)
    result = snakemake(workdir, target, *DEMO_RUN, *CLUSTER_OPTIONS, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    submitted = [line for line in result.stderr.splitlines() if "has been submitted with SLURM jobid" in line]
    assert len(submitted) == 1, submitted  # one allocation for the scheduler, servers and workers
    record = run_record(workdir, name)
    assert record["distributed"]["global_batch_size"] == 32
    job = record["devices"]["slurm_job_id"]
    rank_0 = (workdir / layout.training_log(OUT, name)).read_text()
    rank_1 = (workdir / layout.checkpoint_dir(OUT, name) / "distributed" / "worker-1.log").read_text()
    # each worker an srun task of its own step in the job, with its own one of the job's 2 GPUs
    assert re.search(rf"worker rank 0 of 2 \(launcher task \d\) on \S+, Slurm step {job}\.\d+", rank_0)
    assert re.search(rf"worker rank 1 of 2 \(launcher task \d\) on \S+, Slurm step {job}\.\d+", rank_1)
    gpus = [re.search(r"trains on GPU ids \['(\d+)'\]", text) for text in (rank_0, rank_1)]
    assert all(gpus) and gpus[0].group(1) != gpus[1].group(1), (rank_0[-2000:], rank_1[-2000:])


# ---------------------------------------------------------------- long runs across jobs

# A run of 60 demo epochs (about 2 minutes alone on the test node): through the partition `short`,
# whose MaxTime is a minute (local_slurm.sh), it takes 3 or 4 jobs (a minute less a job's start-up
# and its margin before the limit each).
LONG_RUN = {"seed": 1, "num_epochs": 60}
SHORT_PARTITION = [
    "--config", "max_job_minutes=1",
    # replaces snakemake_options.txt's --set-resources: its values again, and the partition
    "--set-resources", "train:cpus_per_task=2", "train:mem_mb=2000", "train:slurm_partition=short",
]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(cluster_run):
    """cluster_run's workdir with LONG_RUN trained in one go, on this machine without Slurm: the run
    that every run interrupted and resumed must equal."""
    workdir, _ = cluster_run
    target = with_experiment(workdir, "uninterrupted", **LONG_RUN)
    result = snakemake(workdir, *DEMO_RUN, "--cores", "2", target)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def submitted_jobs(head_output, name):
    """The Slurm job ids the head submitted for run `name`, in order."""
    return re.findall(rf"submitted with SLURM jobid (\d+) \(log: \S+/rule_train/{name}/", head_output)


def attempt_logs(workdir, name):
    """Each attempt's own log of run `name`, in order."""
    folder = workdir / layout.checkpoint_dir(OUT, name) / "attempts"
    return [path.read_text() for path in sorted(folder.glob("*.log"))]


def assert_equals_uninterrupted(workdir, name):
    """Metrics (timing aside) and final parameters equal the uninterrupted run's, and the rule's log
    holds every epoch once."""
    files, reference = layout.run_files(OUT, name), layout.run_files(OUT, "uninterrupted")
    assert without_timing(read_metrics(workdir / files.metrics)) == without_timing(
        read_metrics(workdir / reference.metrics)
    )
    assert (workdir / files.params).read_bytes() == (workdir / reference.params).read_bytes()
    epochs = re.findall(
        r"Epoch\[(\d+)\] Validation-accuracy", (workdir / layout.training_log(OUT, name)).read_text()
    )
    assert epochs == [str(epoch) for epoch in range(LONG_RUN["num_epochs"])]


def test_a_run_three_times_the_partitions_time_limit_completes_unattended_over_several_jobs(uninterrupted):
    workdir, name = uninterrupted, "over_jobs"
    target = with_experiment(workdir, name, **LONG_RUN)
    result = snakemake(workdir, target, *DEMO_RUN, *CLUSTER_OPTIONS, *SHORT_PARTITION, timeout=1200)
    assert result.returncode == 0, result.stderr[-5000:]
    assert "runtime=1," in result.stderr  # each job asked for the cap, not the run's 288 minutes
    jobs = submitted_jobs(result.stderr, name)
    attempts = attempt_logs(workdir, name)
    assert len(jobs) >= 3 and len(attempts) == len(jobs), (jobs, len(attempts))
    for attempt in attempts[:-1]:  # each job stopped itself at a checkpoint before its limit
        assert re.search(
            r"train stopped to resume: stopped after epoch \d+ of 60: the Slurm job's time limit", attempt
        )
        assert "SIGTERM" not in attempt and "Traceback" not in attempt
    assert_equals_uninterrupted(workdir, name)


def current_job(workdir, name):
    """The Slurm job id of the run's latest attempt, once it has trained into its epoch 5."""
    logs = attempt_logs(workdir, name)
    if not logs or "Epoch[4] Batch [20]" not in logs[-1]:
        return None
    return re.search(r"Slurm job (\d+) ends at", logs[-1]).group(1)


def run_until(head, condition, what, timeout=600):
    deadline = time.time() + timeout
    while (value := condition()) is None:
        assert head.poll() is None, f"the head ended before {what}: {head.returncode}"
        assert time.time() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)
    return value


def start_head(workdir, *targets):
    """The Slurm profile's head process in the background, its output in a file."""
    output = workdir / f"head-{time.time_ns()}.log"
    with open(output, "w") as stream:  # the child keeps its own descriptor
        invocation = snakemake_invocation(workdir, *targets, *DEMO_RUN, *CLUSTER_OPTIONS)
        head = subprocess.Popen(**invocation, stdout=stream, stderr=subprocess.STDOUT)
    return head, output


@pytest.fixture(scope="module")
def interrupted_runs(uninterrupted):
    """Two runs through the Slurm profile in one head, one job sent SIGTERM mid-epoch (scancel
    --signal=TERM, as at a time limit or on preemption) and one requeued by the scheduler (scontrol
    requeue); the head's output."""
    workdir = uninterrupted
    targets = [with_experiment(workdir, name, **LONG_RUN) for name in ("sigterm", "requeued")]
    head, output = start_head(workdir, *targets)
    try:
        signalled = run_until(head, lambda: current_job(workdir, "sigterm"), "epoch 5 of sigterm")
        subprocess.run(["scancel", "--signal=TERM", signalled], check=True)
        requeued = run_until(head, lambda: current_job(workdir, "requeued"), "epoch 5 of requeued")
        subprocess.run(["scontrol", "requeue", requeued], check=True)
        assert head.wait(900) == 0, output.read_text()[-5000:]
    finally:
        head.kill()
    return workdir, output.read_text(), {"sigterm": signalled, "requeued": requeued}


def test_a_job_sent_sigterm_mid_epoch_resumes_in_a_new_job_and_ends_identical(interrupted_runs):
    workdir, head_output, signalled = interrupted_runs
    jobs = submitted_jobs(head_output, "sigterm")
    assert len(jobs) == 2 and jobs[0] == signalled["sigterm"], jobs  # Snakemake's retry, a new job
    first, second = attempt_logs(workdir, "sigterm")
    assert "SIGTERM received: stopping at the next batch" in first
    assert re.search(r"train stopped to resume: SIGTERM during epoch \d+: that epoch is dropped", first)
    assert re.search(r"resuming sigterm after epoch \d+", second)
    assert_equals_uninterrupted(workdir, "sigterm")


def test_a_job_requeued_by_slurm_resumes_under_the_same_job_id_and_ends_identical(interrupted_runs):
    workdir, head_output, signalled = interrupted_runs
    # Slurm owns the requeue (the plugin sees the job as still running): no retry, no second copy
    assert submitted_jobs(head_output, "requeued") == [signalled["requeued"]]
    first, second = attempt_logs(workdir, "requeued")
    assert re.search(rf"Slurm job {signalled['requeued']} ends at", second)
    assert re.search(r"resuming requeued after epoch \d+", second)
    assert run_record(workdir, "requeued")["devices"]["slurm_job_id"] == signalled["requeued"]
    assert_equals_uninterrupted(workdir, "requeued")


def test_after_the_head_dies_a_second_trainer_is_refused_naming_the_job_and_the_run_then_completes(
    uninterrupted,
):
    workdir, name = uninterrupted, "orphaned"
    target = with_experiment(workdir, name, **LONG_RUN)
    head, _ = start_head(workdir, target)
    job = run_until(head, lambda: current_job(workdir, name), f"epoch 5 of {name}")
    head.kill()  # the head dies (kill -9, a reboot); its Slurm job trains on
    head.wait()
    assert slurm_job.job_state(job) == "RUNNING"
    assert snakemake(workdir, "--unlock", *DEMO_RUN).returncode == 0
    second = snakemake(workdir, *DEMO_RUN, "--cores", "2", target)  # a trainer outside Slurm, at once
    assert second.returncode != 0
    assert re.search(
        rf"{name} is being trained by pid \d+ on \S+, Slurm job {job} \(to stop it: scancel {job}\)",
        second.stderr,
    ), second.stderr[-3000:]
    deadline = time.time() + 600
    while slurm_job.job_state(job) not in {slurm_job.ENDED, "COMPLETED"}:
        assert time.time() < deadline, f"Slurm job {job} did not end"
        time.sleep(1)
    # the same command again: the orphaned job's run is complete in its checkpoints
    result = snakemake(workdir, target, *DEMO_RUN, *CLUSTER_OPTIONS, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    assert_equals_uninterrupted(workdir, name)
