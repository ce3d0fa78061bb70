"""The demo through a real (local, single-node) Slurm cluster and the Slurm profile: `make
test-cluster` starts the cluster (tests/cluster/local_slurm.sh) and sets SLURM_CONF."""

import itertools
import json
import os
import re
import subprocess
from datetime import datetime

import pytest
import yaml
from conftest import BIN, REPO, SNAKEFILE, demo_workdir, read_metrics, without_timing

from cifar_repro import layout

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


def snakemake(workdir, *args, timeout=1500):
    command = [str(BIN / "snakemake"), "--snakefile", str(SNAKEFILE), "--directory", str(workdir), *args]
    environment = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(workdir),
        "SLURM_CONF": os.environ["SLURM_CONF"],
    }
    return subprocess.run(
        command, capture_output=True, text=True, env=environment, cwd=workdir, timeout=timeout
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
